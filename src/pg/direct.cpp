// Direct access to state rows by their primary key (model_id, lead), without the executor.
//
// A single-row INSERT of an event touches one state row: through SPI that is two statements (SELECT ...
// FOR UPDATE, UPDATE), each with an executor start and end that cost far more than the work itself. Here
// the row is found through the primary key index, locked in its latest version and updated in place, as
// PostgreSQL's logical replication apply does (execReplication.c): same visibility (the latest committed
// version, which is what a lead state must add a change to), same locking, same index upkeep.
//
// A backend also remembers where it last found each lead's row (the root of its HOT chain): the next
// statement on that lead then reads that page and follows the chain, without the index probe. The row
// found must be visible to the same dirty snapshot and carry the same (model_id, lead), else the index
// decides, so a stale entry (a row moved, deleted, a table rewritten) costs one page read, never a wrong row.
#include "state.h"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "storage/bufmgr.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/uuid.h"
}

namespace leadscore::pg {

bool direct_state_access = true;

void define_direct_state_access()
{
	DefineCustomBoolVariable("leadscore.direct_state_access",
	                         "Whether triggers read and write lead states directly through their primary key.",
	                         "Off: by SQL statements on the state tables, as needed when those tables are not "
	                         "local (e.g. distributed by Citus). The scores are the same either way.",
	                         &direct_state_access, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	// Any other leadscore.* setting is a typo: refused, not silently accepted.
	MarkGUCPrefixReserved("leadscore");
}

struct StateTable {
	KeyKind kind;
	MemoryContext cxt; // where it was opened: the executor state lives there too
	Relation rel, index;
	TupleTableSlot *found; // the locked row (a buffer slot of the table)
	TupleTableSlot *write; // a new version to write
	EState *estate;        // created on the first update that must insert index entries
	ResultRelInfo *rri;
	BlockNumber nblocks; // the table's size when first needed (InvalidBlockNumber: not yet)
};

// ------------------------------------------------------------------------------------------------
// Where each lead's row was last found, per backend

struct TidKey {
	Oid relid;
	int32 model_id;
	uint8 lead[UUID_LEN]; // the key's bytes (int4, int8 or uuid), zero-padded
};
struct TidEntry {
	TidKey key;
	ItemPointerData root;
};

static HTAB *tid_cache;
// Bounded: past this many leads the table starts again empty (some 4 MB of memory).
static const long kTidCacheEntries = 65536;
// The page is pruned when its free space falls below this: less often than a read through the index
// does (below the fillfactor's reserve), so that a prune removes several dead versions at once.
static const Size kPruneBelow = BLCKSZ / 10;

// Text keys are not remembered (their bytes are not of fixed size).
static bool tid_key(const StateTable *st, int32 model_id, Datum key, TidKey *out)
{
	memset(out, 0, sizeof(TidKey));
	out->relid = RelationGetRelid(st->rel);
	out->model_id = model_id;
	switch (st->kind) {
	case KeyKind::Int4: {
		int32 v = DatumGetInt32(key);
		memcpy(out->lead, &v, sizeof(v));
		return true;
	}
	case KeyKind::Int8: {
		int64 v = DatumGetInt64(key);
		memcpy(out->lead, &v, sizeof(v));
		return true;
	}
	case KeyKind::Uuid:
		memcpy(out->lead, DatumGetUUIDP(key)->data, UUID_LEN);
		return true;
	default:
		return false;
	}
}

static void tid_remember(const TidKey *key, ItemPointer root)
{
	if (tid_cache && hash_get_num_entries(tid_cache) >= kTidCacheEntries) {
		hash_destroy(tid_cache);
		tid_cache = nullptr;
	}
	if (!tid_cache) {
		HASHCTL ctl;
		ctl.keysize = sizeof(TidKey);
		ctl.entrysize = sizeof(TidEntry);
		ctl.hcxt = TopMemoryContext;
		tid_cache = hash_create("leadscore state row tids", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	TidEntry *entry = static_cast<TidEntry *>(hash_search(tid_cache, key, HASH_ENTER, nullptr));
	entry->root = *root;
}

// Whether tuple is the row of (model_id, key).
static bool same_lead(const StateTable *st, HeapTuple tuple, int32 model_id, Datum key)
{
	TupleDesc desc = RelationGetDescr(st->rel);
	bool isnull;
	Datum model = heap_getattr(tuple, 1, desc, &isnull);
	if (isnull || DatumGetInt32(model) != model_id)
		return false;
	Datum lead = heap_getattr(tuple, 2, desc, &isnull);
	if (isnull)
		return false;
	switch (st->kind) {
	case KeyKind::Int4:
		return DatumGetInt32(lead) == DatumGetInt32(key);
	case KeyKind::Int8:
		return DatumGetInt64(lead) == DatumGetInt64(key);
	case KeyKind::Uuid:
		return memcmp(DatumGetUUIDP(lead)->data, DatumGetUUIDP(key)->data, UUID_LEN) == 0;
	default:
		return false;
	}
}

// The version of the row of (model_id, key) visible to the dirty snapshot in the HOT chain at root, if
// there is one: its tuple id in *member.
static bool fetch_remembered(StateTable *st, ItemPointer root, Snapshot dirty, int32 model_id, Datum key,
                             ItemPointer member)
{
	// The table cannot shrink while we hold our lock (a truncation takes an exclusive one).
	if (st->nblocks == InvalidBlockNumber)
		st->nblocks = RelationGetNumberOfBlocks(st->rel);
	if (ItemPointerGetBlockNumber(root) >= st->nblocks)
		return false;
	Buffer buffer = ReadBuffer(st->rel, ItemPointerGetBlockNumber(root));
	Page page = BufferGetPage(buffer);
	if (PageIsFull(page) || PageGetHeapFreeSpace(page) < kPruneBelow)
		heap_page_prune_opt(st->rel, buffer);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	ItemPointerData tid = *root;
	HeapTupleData tuple;
	bool found = heap_hot_search_buffer(&tid, st->rel, buffer, dirty, &tuple, nullptr, true) &&
	             same_lead(st, &tuple, model_id, key);
	UnlockReleaseBuffer(buffer);
	if (found)
		*member = tid;
	return found;
}

StateTable *state_table_open(KeyKind kind)
{
	Oid relid = state_relid(kind);
	if (!OidIsValid(relid))
		elog(ERROR, "leadscore: table leadscore.state_%s is missing", key_type(kind).suffix);

	StateTable *st = static_cast<StateTable *>(palloc0(sizeof(StateTable)));
	st->kind = kind;
	st->cxt = CurrentMemoryContext;
	st->rel = table_open(relid, RowExclusiveLock);
	Oid pk = RelationGetPrimaryKeyIndex(st->rel);
	if (!OidIsValid(pk))
		elog(ERROR, "leadscore: table %s has no primary key", RelationGetRelationName(st->rel));
	st->index = index_open(pk, RowExclusiveLock);
	if (st->index->rd_index->indnatts != 2)
		elog(ERROR, "leadscore: unexpected primary key on %s", RelationGetRelationName(st->rel));
	st->found = table_slot_create(st->rel, nullptr);
	st->write = MakeSingleTupleTableSlot(RelationGetDescr(st->rel), &TTSOpsHeapTuple);
	st->nblocks = InvalidBlockNumber;
	return st;
}

void state_table_close(StateTable *st)
{
	if (st->estate) {
		ExecCloseIndices(st->rri);
		FreeExecutorState(st->estate);
	}
	ExecDropSingleTupleTableSlot(st->found);
	ExecDropSingleTupleTableSlot(st->write);
	// Locks are kept until the end of the transaction, as the executor does.
	index_close(st->index, NoLock);
	table_close(st->rel, NoLock);
	pfree(st);
}

TupleDesc state_table_desc(StateTable *st)
{
	return RelationGetDescr(st->rel);
}

static RegProcedure equality_proc(KeyKind kind)
{
	switch (kind) {
	case KeyKind::Int4:
		return F_INT4EQ;
	case KeyKind::Int8:
		return F_INT8EQ;
	case KeyKind::Uuid:
		return F_UUID_EQ;
	default:
		return F_TEXTEQ;
	}
}

bool state_row_lock(StateTable *st, int32 model_id, Datum key, ItemPointer tid, HeapTuple *row)
{
	ScanKeyData keys[2];
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(model_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, equality_proc(st->kind), key);
	// The search compares with the index's own collations.
	for (int i = 0; i < 2; i++)
		keys[i].sk_collation = st->index->rd_indcollation[i];

	TidKey place;
	bool remember = tid_key(st, model_id, key, &place);

	// A dirty snapshot sees rows of transactions in progress too: wait for them instead of missing them.
	SnapshotData dirty;
	InitDirtySnapshot(dirty);
	for (;;) {
		ItemPointerData member;
		TidEntry *entry = remember && tid_cache
		                      ? static_cast<TidEntry *>(hash_search(tid_cache, &place, HASH_FIND, nullptr))
		                      : nullptr;
		if (!entry || !fetch_remembered(st, &entry->root, &dirty, model_id, key, &member)) {
			// Through the index; the first entry whose chain holds a visible version (the unique one).
			IndexScanDesc scan = index_beginscan(st->rel, st->index, &dirty, 2, 0);
			index_rescan(scan, keys, 2, nullptr, 0);
			bool found = false;
			ItemPointer next;
			ItemPointerData root;
			while (!found && (next = index_getnext_tid(scan, ForwardScanDirection)) != nullptr) {
				root = *next;
				found = index_fetch_heap(scan, st->found);
			}
			index_endscan(scan);
			if (!found)
				return false;
			member = st->found->tts_tid;
			if (remember)
				tid_remember(&place, &root);
		}
		TransactionId xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (TransactionIdIsValid(xwait)) {
			XactLockTableWait(xwait, nullptr, nullptr, XLTW_None);
			continue;
		}
		TM_FailureData tmfd;
		PushActiveSnapshot(GetLatestSnapshot());
		TM_Result res = table_tuple_lock(st->rel, &member, GetLatestSnapshot(), st->found, GetCurrentCommandId(false),
		                                 LockTupleNoKeyExclusive, LockWaitBlock, 0, &tmfd);
		PopActiveSnapshot();
		switch (res) {
		case TM_Ok:
			break;
		case TM_Updated:
		case TM_Deleted:
			// Changed or removed by a transaction that committed meanwhile: look again.
			continue;
		default:
			elog(ERROR, "leadscore: unexpected result %d locking a lead state", (int) res);
		}
		bool should_free;
		*row = ExecFetchSlotHeapTuple(st->found, false, &should_free);
		Assert(!should_free);
		*tid = st->found->tts_tid;
		return true;
	}
}

void state_row_update(StateTable *st, ItemPointer tid, HeapTuple tuple)
{
	// The slot owns the tuple (and frees it): the table AM then writes it without a copy.
	ExecStoreHeapTuple(tuple, st->write, true);
	bool update_indexes;
	simple_table_tuple_update(st->rel, tid, st->write, GetActiveSnapshot(), &update_indexes);
	if (update_indexes) {
		// The new version starts a chain of its own: remember it.
		bool isnull;
		TidKey key;
		if (tid_key(st, DatumGetInt32(slot_getattr(st->write, 1, &isnull)), slot_getattr(st->write, 2, &isnull), &key))
			tid_remember(&key, &st->write->tts_tid);
		// Not a HOT update: the new version needs its index entries.
		if (!st->estate) {
			// The executor state index upkeep reads: a range table of the one relation (whose
			// updatedCols, empty, tell the index AM that no key changed) and its result relation.
			MemoryContext old = MemoryContextSwitchTo(st->cxt);
			st->estate = CreateExecutorState();
			RangeTblEntry *rte = makeNode(RangeTblEntry);
			rte->rtekind = RTE_RELATION;
			rte->relid = RelationGetRelid(st->rel);
			rte->relkind = st->rel->rd_rel->relkind;
			rte->rellockmode = RowExclusiveLock;
			ExecInitRangeTable(st->estate, list_make1(rte));
			st->rri = makeNode(ResultRelInfo);
			InitResultRelInfo(st->rri, st->rel, 1, nullptr, 0);
			ExecOpenIndices(st->rri, false);
			MemoryContextSwitchTo(old);
		}
		ExecInsertIndexTuples(st->rri, st->write, st->estate, true, false, nullptr, NIL);
		ResetPerTupleExprContext(st->estate);
	}
	ExecClearTuple(st->write);
}

} // namespace leadscore::pg
