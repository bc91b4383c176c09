// Full recompute of a model from its tracked tables: the reference the live state must equal.
#include "state.h"

extern "C" {
#include "catalog/pg_inherits.h"
#include "optimizer/plancat.h"
}

namespace leadscore::pg {

// The times of a row's matches of rules capped per period, kept per lead until finish_caps: a recompute
// holds 8 bytes per matching event of such rules (plus a small header per lead) in memory at once.
static void collect_caps(const TrackedTable &table, Leads *leads, int lead, TupleTableSlot *slot)
{
	std::optional<core::Micros> at;
	(void) event_time(table, slot, &at);
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	ls_cpp([&] {
		if (batch->lead_caps.size() <= (size_t) lead) {
			size_t from = batch->lead_caps.size();
			batch->lead_caps.resize(leads->n);
			for (size_t i = from; i < batch->lead_caps.size(); i++)
				batch->lead_caps[i].start(spec);
		}
		// batch->matched: the row's matches, as apply_row left them.
		batch->lead_caps[lead].add(spec, at, batch->matched);
	});
}

// Once every row is applied (each state's ref final): the capped rules' counts and weights.
static void finish_caps(Leads *leads)
{
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	ls_cpp([&] {
		for (size_t i = 0; i < batch->lead_caps.size(); i++)
			batch->lead_caps[i].finish(spec, batch->states[i]);
		batch->lead_caps.clear();
		batch->lead_caps.shrink_to_fit();
	});
}

struct TableScan {
	const TrackedTable *table;
	Leads *leads;
	TupleTableSlot *slot;
	ExprContext *econtext;
	bool caps;    // the table has rules capped per period
	int64 *rows;  // rows read so far, over all the model's tables
	bool verbose; // a large recompute: progress NOTICEs
};

// The planner's estimate of a tracked table's rows (of its leaf partitions, for a partitioned table).
static double estimate_rows(Oid relid)
{
	List *rels = get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE
	                 ? find_all_inheritors(relid, AccessShareLock, nullptr)
	                 : list_make1_oid(relid);
	double total = 0;
	ListCell *lc;
	foreach (lc, rels) {
		if (get_rel_relkind(lfirst_oid(lc)) != RELKIND_RELATION)
			continue;
		Relation rel = table_open(lfirst_oid(lc), AccessShareLock);
		BlockNumber pages;
		double tuples, allvisfrac;
		estimate_rel_size(rel, nullptr, &pages, &tuples, &allvisfrac);
		total += Max(tuples, 0);
		table_close(rel, AccessShareLock);
	}
	return total;
}

static void scan_row(HeapTuple tuple, void *arg)
{
	TableScan *scan = static_cast<TableScan *>(arg);
	ExecStoreHeapTuple(tuple, scan->slot, false);
	int lead = row_lead(*scan->table, scan->leads, scan->slot);
	if (lead >= 0) {
		apply_row(*scan->table, scan->leads, lead, scan->slot, scan->econtext, 1);
		if (scan->caps)
			collect_caps(*scan->table, scan->leads, lead, scan->slot);
	}
	ExecClearTuple(scan->slot);
	if (++*scan->rows % kProgressEvery == 0 && scan->verbose)
		ereport(NOTICE, (errmsg("model \"%s\": " INT64_FORMAT " rows read", scan->leads->model->spec.name.c_str(),
		                        *scan->rows)));
}

static void scan_table(const TrackedTable &table, Leads *leads, int64 *rows, bool verbose, Datum keys)
{
	bool caps = false;
	for (const CompiledRule &rule : table.rules)
		caps = caps || (!table.is_lead && leads->model->spec.event_rules[rule.index].capped_per_period());
	// Distributed with Citus, its rows are on the shards: read there, per node in a shard scope (below).
	if (!scope_active())
		refuse_citus_table(table.relid, "tracked table");
	Relation rel = table_open(table.relid, AccessShareLock);
	TableScan scan{&table,
	               leads,
	               MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple),
	               CreateStandaloneExprContext(),
	               caps,
	               rows,
	               verbose};
	// A fresh snapshot, taken after the model lock, sees what committed while we waited.
	if (keys)
		scan_rows(scan_source(table), table.relid, scan_row, &scan,
		          psprintf("t.%s = ANY ($1)", quote_identifier(table.key_column.c_str())),
		          get_array_type(key_type(leads->model->key).type), keys);
	else
		scan_rows(scan_source(table), table.relid, scan_row, &scan);
	FreeExprContext(scan.econtext, true);
	ExecDropSingleTupleTableSlot(scan.slot);
	table_close(rel, AccessShareLock);
}

// Engagement resets (1.2): each lead's latest, in its state before its events are applied (the latest of
// all: a reset is never later than the transaction that recorded it). Those recorded for model_id.
static void read_resets(Leads *leads, int model_id, Datum keys)
{
	const CachedModel *model = leads->model;
	if (!state_features(model->key).engagement_resets)
		return;
	Oid types[2] = {INT4OID, get_array_type(key_type(model->key).type)};
	Datum args[2] = {Int32GetDatum(model_id), keys};
	char *sql = scoped_sql(psprintf("SELECT lead, max(reset_at) FROM leadscore.engagement_reset_%s WHERE model_id = $1 "
	                                "%s GROUP BY lead",
	                                key_type(model->key).suffix, keys ? "AND lead = ANY ($2)" : ""));
	if (SPI_execute_with_args(sql, keys ? 2 : 1, types, args, nullptr, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the engagement resets of model \"%s\"", model->spec.name.c_str());
	SPITupleTable *rows = SPI_tuptable;
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		int lead = lead_index(leads, SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		core::Micros at = DatumGetTimestampTz(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
		Batch *batch = leads->batch;
		ls_cpp([&] { batch->states[lead].reset_at = at; });
	}
}

int64 score_from_scratch(Leads *leads, int resets_of, bool verbose, Datum keys)
{
	read_resets(leads, resets_of, keys);
	int64 rows = 0;
	for (int t : leads->model->tables)
		scan_table(leads->cache->tables[t], leads, &rows, verbose, keys);
	finish_caps(leads);
	return rows;
}

// Needs an SPI connection. Returns the number of leads scored (0 if the model does not exist).
int64 recompute_model(const char *name)
{
	const Cache *cache = get_cache();
	const CachedModel *model = cache->model_by_name(name);
	if (!model || model->draft()) // a draft has no scores (leadscore.preview scores it without writing)
		return 0;
	lock_model(model->spec.id, true);
	AcceptInvalidationMessages();
	cache = get_cache();
	model = cache->model_by_name(name);
	if (!model || model->draft())
		return 0;
	// Rows of partitions read before they left, not yet scored: this recompute sees them gone.
	captured_model_recomputed(model->spec.id);
	// A draft of it that publish_concurrently builds has missed what makes this recompute (a tracked table
	// truncated or retyped...): that publish stops with an error, to be run again.
	if (cache->schema.draft_build) {
		Oid int4 = INT4OID;
		Datum live = Int32GetDatum(model->spec.id);
		if (SPI_execute_with_args("DELETE FROM leadscore.draft_build WHERE model_id = $1", 1, &int4, &live, nullptr,
		                          false, 0) != SPI_OK_DELETE)
			elog(ERROR, "leadscore: could not stop the drafts built of model \"%s\"", name);
	}
	// A model tracking one of leadscore's own tables (rfm_<key>): pg_dump does not dump the triggers of an
	// extension's tables, so a restore leaves them out; the recompute that ends a restore puts them back.
	Oid ours = get_namespace_oid("leadscore", false);
	for (int t : model->tables) {
		Oid relid = cache->tables[t].relid;
		if (get_rel_namespace(relid) != ours || scope_active())
			continue;
		sync_triggers(relid);
	}

	const char *suffix = key_type(model->key).suffix;
	Datum id = Int32GetDatum(model->state_id); // of its state rows
	Oid int4 = INT4OID;
	// The instant the new stages are recorded at: the transaction's, or the latest a stage was recorded at
	// if later (a run or transaction that began after this one recorded it: history stays in order).
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	char *sql;
	if (state_features(model->key).state_stage_at) {
		sql = scoped_sql(psprintf("SELECT max(stage_at) FROM leadscore.state_%s WHERE model_id = $1", suffix));
		if (SPI_execute_with_args(sql, 1, &int4, &id, nullptr, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "leadscore: could not read the stages of model \"%s\"", name);
		bool isnull;
		Datum latest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			now = Max(now, DatumGetTimestampTz(latest));
	}
	// Stage changes that time alone caused so far, under the configuration they happened with (when
	// this recompute follows a configuration change, they were recorded before it).
	(void) advance_stages(now, model->spec.id);

	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);

	// The stage of each lead so far, and when it entered it: its state's, or else the last one its history
	// records (after a restore, the history is there and the state is not), to record what changes.
	sql = psprintf("SELECT lead, stage, %2$s FROM leadscore.state_%1$s WHERE model_id = $1 AND stage IS NOT NULL "
	               "UNION ALL "
	               "SELECT h.lead, h.to_stage, h.changed_at FROM (SELECT DISTINCT ON (lead) lead, to_stage, changed_at "
	               "  FROM leadscore.stage_change_%1$s WHERE model_id = $2 ORDER BY lead, id DESC) h "
	               " WHERE h.to_stage IS NOT NULL AND NOT EXISTS "
	               "  (SELECT FROM leadscore.state_%1$s s WHERE s.model_id = $1 AND s.lead = h.lead)",
	               suffix, state_features(model->key).state_stage_since ? "stage_since" : "NULL::timestamptz");
	sql = scoped_sql(sql); // per node: the scope's shards
	Oid two_int4[2] = {INT4OID, INT4OID};
	Datum ids[2] = {id, Int32GetDatum(model->spec.id)}; // its state rows', its history's
	if (SPI_execute_with_args(sql, 2, two_int4, ids, nullptr, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the stages of model \"%s\"", name);
	SPITupleTable *rows = SPI_tuptable;
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		int lead = lead_index(&leads, SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		char *stage = TextDatumGetCString(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
		Datum since = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &isnull);
		bool since_null = isnull;
		Batch *batch = leads.batch;
		ls_cpp([&] {
			batch->old_stage[lead] = std::string(stage);
			if (!since_null)
				batch->states[lead].stage_since = DatumGetTimestampTz(since);
		});
	}
	sql = scoped_sql(psprintf("DELETE FROM leadscore.state_%s WHERE model_id = $1", suffix));
	if (SPI_execute_with_args(sql, 1, &int4, &id, nullptr, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "leadscore: could not clear the state of model \"%s\"", name);

	// A large recompute says what it reads (an estimate), how far it has got, and what it did: a rule
	// written to a model of millions of leads recomputes it in the writer's statement, and the model's
	// writers wait for that transaction.
	double estimate = 0;
	for (int t : model->tables)
		estimate += estimate_rows(cache->tables[t].relid);
	bool verbose = estimate >= kProgressRows;
	if (verbose)
		ereport(NOTICE, (errmsg("model \"%s\": rescoring from about %.0f rows of %zu tracked tables", name, estimate,
		                        model->tables.size()),
		                 errdetail("Writers to the model's tables wait until this transaction ends.")));
	TimestampTz started = GetCurrentTimestamp();
	int64 rows_read = score_from_scratch(&leads, model->spec.id, verbose);
	write_states(&leads, now, true);

	int64 scored = 0;
	for (int i = 0; i < leads.n; i++)
		scored += leads.batch->states[i].empty() ? 0 : 1;
	if (verbose || rows_read >= kProgressRows) {
		long secs;
		int usecs;
		TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
		ereport(NOTICE, (errmsg("model \"%s\": " INT64_FORMAT " leads rescored from " INT64_FORMAT " rows in %.1f s",
		                        name, scored, rows_read, secs + usecs / 1e6)));
	}
	return scored;
}

// On Citus (leadscore.distribute() done), a model's rows and states are on the nodes that hold its shards:
// each node recomputes the leads of each of its local shards of the state table in that shard's scope, as
// the trigger scores a statement on a shard. Returns the leads scored here.
static int64 recompute_in_scope(void *name)
{
	return recompute_model(static_cast<const char *>(name));
}

static int64 recompute_local(const char *name, Oid state)
{
	int n;
	Oid *shards = local_shards(state, &n);
	int64 scored = 0;
	for (int i = 0; i < n; i++)
		scored += in_shard_scope(shards[i], recompute_in_scope, const_cast<char *>(name));
	return scored;
}

// The state table of a model's key type when Citus distributes it (and the model tracks a table); InvalidOid
// otherwise.
static Oid distributed_state(const CachedModel *model)
{
	return model->tables.empty() ? InvalidOid : citus_state_table(model->key);
}

// From the coordinator: every worker recomputes its shards at once (run_command_on_workers, in parallel),
// each in its own transaction, as does the coordinator for the shards it may hold.
static int64 recompute_cluster(const char *name, Oid state)
{
	if (!citus_coordinator())
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		         errmsg("leadscore: model \"%s\" is distributed with Citus: recompute it on the coordinator", name),
		         errdetail("A recompute there runs on every node at once.")));
	char *command = psprintf("SELECT leadscore._recompute_node(%s)", quote_literal_cstr(name));
	int64 scored = citus_sum_on_workers(command, psprintf("model \"%s\" could not be recomputed", name));
	return scored + recompute_local(name, state);
}

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

LS_FUNCTION(leadscore_recompute);
Datum leadscore_recompute(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	spi_connect();
	const CachedModel *model = known_model(get_cache(), name);
	if (model->draft())
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		         errmsg("model \"%s\" is a draft of model \"%s\": it has no scores", name, model->draft_of.c_str()),
		         errhint(
					 "leadscore.preview(draft) scores it without writing; leadscore.publish(draft) puts it live.")));
	Oid state = scope_active() ? InvalidOid : distributed_state(model);
	int64 scored = OidIsValid(state) ? recompute_cluster(name, state) : recompute_model(name);
	SPI_finish();
	PG_RETURN_INT64(scored);
}

// On a Citus node, from leadscore.recompute on the coordinator: the model's leads in this node's shards.
LS_FUNCTION(leadscore_recompute_node);
Datum leadscore_recompute_node(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	spi_connect();
	Oid state = distributed_state(known_model(get_cache(), name));
	if (!OidIsValid(state))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("leadscore: model \"%s\" is not distributed with Citus on this node", name)));
	int64 scored = recompute_local(name, state);
	SPI_finish();
	PG_RETURN_INT64(scored);
}

} // extern "C"
