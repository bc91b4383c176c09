// Direct access to state rows by their primary key (model_id, lead), without the executor.
//
// A single-row INSERT of an event touches one state row: through SPI that is two statements (SELECT ...
// FOR UPDATE, UPDATE), each with an executor start and end that cost far more than the work itself. Here
// the row is found through the primary key index, locked in its latest version and updated in place, as
// PostgreSQL's logical replication apply does (execReplication.c): same visibility (the latest committed
// version, which is what a lead state must add a change to), same locking, same index upkeep.
#include "state.h"

extern "C" {
#include "access/genam.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "utils/fmgroids.h"
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
}

struct StateTable {
	KeyKind kind;
	MemoryContext cxt;          // where it was opened: the executor state lives there too
	Relation rel, index;
	TupleTableSlot *found;      // the locked row (a buffer slot of the table)
	TupleTableSlot *write;      // a new version to write
	EState *estate;             // created on the first update that must insert index entries
	ResultRelInfo *rri;
};

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

	// A dirty snapshot sees rows of transactions in progress too: wait for them instead of missing them.
	SnapshotData dirty;
	InitDirtySnapshot(dirty);
	for (;;) {
		IndexScanDesc scan = index_beginscan(st->rel, st->index, &dirty, 2, 0);
		index_rescan(scan, keys, 2, nullptr, 0);
		bool found = index_getnext_slot(scan, ForwardScanDirection, st->found);
		index_endscan(scan);
		if (!found)
			return false;
		TransactionId xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (TransactionIdIsValid(xwait)) {
			XactLockTableWait(xwait, nullptr, nullptr, XLTW_None);
			continue;
		}
		TM_FailureData tmfd;
		PushActiveSnapshot(GetLatestSnapshot());
		TM_Result res = table_tuple_lock(st->rel, &st->found->tts_tid, GetLatestSnapshot(), st->found,
		                                 GetCurrentCommandId(false), LockTupleNoKeyExclusive, LockWaitBlock, 0, &tmfd);
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
