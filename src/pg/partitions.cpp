// Rows that join or leave a tracked partitioned table without a row trigger: ATTACH PARTITION (scored as
// inserted once they are there), TRUNCATE, DETACH, DROP of a partition (read while they are there, scored
// as deleted once they are gone). Called by the trigger (trigger.cpp) and the DDL event triggers (ddl.cpp);
// scored as a statement on the tracked table (score_statement).
#include "state.h"

extern "C" {
#include "access/tupconvert.h"
#include "storage/proc.h"
}

namespace leadscore::pg {

bool SubxactStamp::current() const
{
	return lxid == MyProc->lxid && subxid == GetCurrentSubTransactionId();
}

void SubxactStamp::set()
{
	lxid = MyProc->lxid;
	subxid = GetCurrentSubTransactionId();
}

// The rows of a leaf partition, in the tracked table's row type (root_desc), appended to store.
struct PartitionRows {
	TupleConversionMap *map; // NULL: the leaf's columns lie as the tracked table's
	Tuplestorestate *store;
};

static void put_partition_row(HeapTuple tuple, void *arg)
{
	PartitionRows *rows = static_cast<PartitionRows *>(arg);
	if (!rows->map) {
		tuplestore_puttuple(rows->store, tuple);
		return;
	}
	HeapTuple converted = execute_attr_map_tuple(tuple, rows->map);
	tuplestore_puttuple(rows->store, converted);
	heap_freetuple(converted);
}

static void read_partition_rows(Oid leaf, TupleDesc root_desc, Tuplestorestate *store)
{
	Relation rel = table_open(leaf, AccessShareLock);
	PartitionRows rows{convert_tuples_by_name(RelationGetDescr(rel), root_desc), store};
	char *from = psprintf("ONLY %s", quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
	                                                            RelationGetRelationName(rel)));
	scan_rows(from, leaf, put_partition_row, &rows);
	table_close(rel, AccessShareLock);
}

// The models of root's tracked tables whose id is not in `skip`: *tables keeps the others.
static void drop_models(const Cache *cache, int *tables, int *n, List *skip)
{
	int kept = 0;
	for (int i = 0; i < *n; i++)
		if (!list_member_int(skip, cache->models[cache->tables[tables[i]].model].spec.id))
			tables[kept++] = tables[i];
	*n = kept;
}

void score_attached_rows(List *leaves)
{
	if (leaves == NIL)
		return;
	const Cache *cache = get_cache();
	int *tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
	int n;
	// The leaves of one attached table: one tracked table above them all.
	Oid root = tracked_root(cache, linitial_oid(leaves), tables, &n);
	if (!OidIsValid(root) || root == linitial_oid(leaves))
		return;
	cache = lock_models(cache, root, &tables, &n);
	Relation root_rel = table_open(root, AccessShareLock);
	// All the rows as one statement: a lead's rebuild (which reads the table as it now is) must not see
	// rows of one leaf before they are applied and count them again when their leaf's turn comes.
	Tuplestorestate *store = tuplestore_begin_heap(false, false, work_mem);
	ListCell *lc;
	foreach (lc, leaves)
		read_partition_rows(lfirst_oid(lc), RelationGetDescr(root_rel), store);
	score_statement(cache, tables, n, RelationGetDescr(root_rel), RelationGetDescr(root_rel), nullptr, store,
	                GetCurrentTransactionStartTimestamp());
	tuplestore_end(store);
	table_close(root_rel, AccessShareLock);
}

// Rows leaving tracked tables without a row trigger, read while they are still there and scored as deleted
// once they are gone, as one statement per tracked table (a lead's rebuild reads the tables as they are:
// it must not find them, and must not miss rows of another leaf still to be applied). Kept for the
// (sub)transaction that captured them, in a child of its memory context. A model recomputed meanwhile
// (a TRUNCATE of another of its tables in the same statement) already has them out: its scoring is
// skipped; a model losing rows of two of its tracked tables at once is recomputed instead.
struct Captured {
	Oid root;
	Tuplestorestate *rows; // in root's row type
};
static List *captured = NIL;   // of Captured *
static List *recomputed = NIL; // model ids recomputed since the rows were captured
static MemoryContext captured_cxt = nullptr;
static SubxactStamp captured_stamp;

static bool captured_valid()
{
	return captured_cxt && captured_stamp.current();
}

void forget_captured_rows()
{
	if (captured_valid())
		MemoryContextDelete(captured_cxt);
	// Otherwise its memory went with the transaction, or goes with this one (an aborted subtransaction's).
	captured = NIL;
	recomputed = NIL;
	captured_cxt = nullptr;
}

void captured_model_recomputed(int model_id)
{
	if (!captured_valid())
		return;
	MemoryContext old = MemoryContextSwitchTo(captured_cxt);
	recomputed = list_append_unique_int(recomputed, model_id);
	MemoryContextSwitchTo(old);
}

void capture_partition_rows(Oid leaf)
{
	const Cache *cache = get_cache();
	int *tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
	int n;
	Oid root = tracked_root(cache, leaf, tables, &n);
	if (!OidIsValid(root) || root == leaf)
		return;
	if (!captured_valid()) {
		captured = NIL;
		recomputed = NIL;
		captured_cxt = AllocSetContextCreate(TopTransactionContext, "leadscore rows leaving", ALLOCSET_DEFAULT_SIZES);
		captured_stamp.set();
	}
	Captured *c = nullptr;
	ListCell *lc;
	foreach (lc, captured)
		if (static_cast<Captured *>(lfirst(lc))->root == root)
			c = static_cast<Captured *>(lfirst(lc));
	if (!c) {
		MemoryContext old = MemoryContextSwitchTo(captured_cxt);
		c = static_cast<Captured *>(palloc(sizeof(Captured)));
		c->root = root;
		c->rows = tuplestore_begin_heap(false, false, work_mem);
		captured = lappend(captured, c);
		MemoryContextSwitchTo(old);
	}
	Relation root_rel = table_open(root, AccessShareLock);
	// The temporary files of a store that spills belong to the (sub)transaction, not to the statement or
	// event trigger that fills it. An error restores the owner.
	ResourceOwner owner = CurrentResourceOwner;
	CurrentResourceOwner = CurTransactionResourceOwner;
	read_partition_rows(leaf, RelationGetDescr(root_rel), c->rows);
	CurrentResourceOwner = owner;
	table_close(root_rel, AccessShareLock);
}

void score_captured_rows()
{
	if (!captured_valid()) {
		captured = NIL;
		recomputed = NIL;
		captured_cxt = nullptr;
		return;
	}
	List *all = captured;
	MemoryContext cxt = captured_cxt;
	captured = NIL;
	captured_cxt = nullptr;
	List *skip = list_copy(recomputed);
	recomputed = NIL;
	// A model that loses rows of two tracked tables at once: recomputed (each table's rows scored apart,
	// the rebuild of one would read the other as already without them).
	const Cache *cache = get_cache();
	List *twice = NIL;
	for (const CachedModel &m : cache->models) {
		if (m.draft())
			continue;
		int roots = 0;
		ListCell *lc;
		foreach (lc, all)
			for (int t : m.tables)
				roots += cache->tables[t].relid == static_cast<Captured *>(lfirst(lc))->root ? 1 : 0;
		if (roots > 1 && !list_member_int(skip, m.spec.id))
			twice = lappend(twice, pstrdup(m.spec.name.c_str()));
	}
	ListCell *lc;
	foreach (lc, twice) {
		const CachedModel *m = get_cache()->model_by_name(static_cast<char *>(lfirst(lc)));
		if (m)
			skip = lappend_int(skip, m->spec.id);
		recompute_model(static_cast<char *>(lfirst(lc)));
	}
	foreach (lc, all) {
		Captured *c = static_cast<Captured *>(lfirst(lc));
		cache = get_cache();
		int *tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
		int n = tables_of(cache, c->root, tables);
		drop_models(cache, tables, &n, skip);
		if (n == 0) // the tracked table went too (its tracking with it), or its models were recomputed
			continue;
		cache = lock_models(cache, c->root, &tables, &n);
		drop_models(cache, tables, &n, skip);
		if (n == 0)
			continue;
		Relation root_rel = table_open(c->root, AccessShareLock);
		score_statement(cache, tables, n, RelationGetDescr(root_rel), RelationGetDescr(root_rel), c->rows, nullptr,
		                GetCurrentTransactionStartTimestamp());
		table_close(root_rel, AccessShareLock);
	}
	MemoryContextDelete(cxt);
}

} // namespace leadscore::pg
