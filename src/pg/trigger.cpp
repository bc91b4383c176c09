// The trigger on tracked tables: one call per statement, with all its rows in transition tables.
// A first pass over the rows finds the leads (their states are then locked and read in key order) and,
// for an event table, evaluates its rules into a compact record per row, which a second pass applies to
// the lead's state without reading the rows again. A lead table's rows (fewer, with fit values that may
// be predictions) are read twice instead.
//
// Partitioned tables: leadscore's triggers are on the tracked table and on each of its partitions (a
// statement fires the statement triggers of the table it names alone, never those of the partitions its
// rows are routed to). A statement on a partition is scored as one on the tracked table, its rows read in
// the tracked table's row type (converted when the partition's columns lie otherwise). Rows that leave or
// join the tree without a row trigger (TRUNCATE, DETACH, DROP, ATTACH of a partition) are scored here too,
// as deleted rows once they are gone or inserted rows once they are there (capture_partition_rows,
// score_attached_rows).
#include "drafts.h"
#include "state.h"

extern "C" {
#include "access/tupconvert.h"
#include "utils/snapmgr.h"
#include "catalog/partition.h"
#include "catalog/pg_proc.h"
#include "storage/proc.h"
#include "utils/syscache.h"
}

#include <unordered_map>
#include <unordered_set>

namespace leadscore::pg {

// The rows of a statement (a transition table, or a partition's rows), read in the tracked table's row type.
struct Rows {
	Tuplestorestate *store; // NULL: none
	TupleTableSlot *in;     // of the store's row type
	AttrMap *map;           // NULL: the row types agree, `in` is read as it is
	TupleTableSlot *out;    // of the tracked table's row type (virtual), when converted
};

static void rows_rescan(Rows *rows)
{
	tuplestore_rescan(rows->store);
}

// The next row, or NULL. Valid until the next call.
static TupleTableSlot *next_row(Rows *rows)
{
	if (!tuplestore_gettupleslot(rows->store, true, false, rows->in))
		return nullptr;
	return rows->map ? execute_attr_map_slot(rows->map, rows->in, rows->out) : rows->in;
}

// -- The triggers of one statement -----------------------------------------------------------------
// A statement's AFTER ... FOR EACH STATEMENT triggers all fire once it has written every row, one per
// action and table: INSERT ... ON CONFLICT DO UPDATE fires the UPDATE's then the INSERT's, MERGE its
// DELETE's, UPDATE's and INSERT's, a WITH query those of each of its statements. A lead rebuilt from a
// tracked table by one of them (rebuild_events: a capped rule's period, its latest event gone back ...)
// read that table as the whole statement left it, the rows of the triggers yet to fire included: those
// must not count them a second time. A rebuild of the table's rules (the usual one) keeps the lead's event
// count by deltas: the later triggers still count those rows as events, for no rule; a rebuild of the
// whole engagement (a reset's) counted them as events too: the later triggers leave them out. The leads so
// rebuilt are kept, for the transaction, with the statement's command id (the command id of the active
// snapshot, the statement's own while its triggers fire: each statement of a transaction has its own).
static LocalTransactionId rebuilt_xact = InvalidLocalTransactionId;
static std::unordered_map<std::string, bool> *rebuilt = nullptr; // statement, model, table, lead -> whole
static std::unordered_set<CommandId> *rebuilt_in = nullptr;      // the statements of those entries

// The statement whose triggers are firing, or InvalidCommandId (none known: nothing is kept). Not on a Citus
// shard: Citus's local execution runs several shard statements of one query in this backend under the
// query's snapshot, so that a command id no longer names one statement there (the randomized test on the
// cluster found it: a DELETE's and an INSERT's shard statements taken for one).
static CommandId firing_statement()
{
	if (!ActiveSnapshotSet() || scope_active())
		return InvalidCommandId;
	if (rebuilt_xact != MyProc->lxid) {
		if (rebuilt) { // noexcept
			rebuilt->clear();
			rebuilt_in->clear();
		}
		rebuilt_xact = MyProc->lxid;
	}
	return GetActiveSnapshot()->curcid;
}

// Pure C++: built and used inside ls_cpp alone, so that no PostgreSQL error passes a live string.
static std::string rebuilt_entry(CommandId statement, int model_id, Oid relid, const char *key)
{
	return std::to_string(statement) + ' ' + std::to_string(model_id) + ' ' + std::to_string(relid) + ' ' + key;
}

void note_rebuilt(const CachedModel &model, const TrackedTable &table, Datum key, bool whole)
{
	CommandId statement = firing_statement();
	if (statement == InvalidCommandId)
		return;
	const char *text = key_text(model.key, key);
	ls_cpp([&] {
		if (!rebuilt) {
			rebuilt = new std::unordered_map<std::string, bool>();
			rebuilt_in = new std::unordered_set<CommandId>();
		}
		bool &was_whole = (*rebuilt)[rebuilt_entry(statement, model.spec.id, table.relid, text)];
		was_whole = was_whole || whole;
		rebuilt_in->insert(statement);
	});
}

// The statement whose triggers are firing when an earlier one of them rebuilt a lead from `table` (else
// InvalidCommandId): one look-up per trigger, the rows' own only then.
static CommandId statement_with_rebuilds(const TrackedTable &table)
{
	if (!rebuilt || rebuilt->empty() || table.is_lead)
		return InvalidCommandId;
	CommandId statement = firing_statement();
	bool any = false;
	if (statement != InvalidCommandId)
		ls_cpp([&] { any = rebuilt_in->count(statement) > 0; });
	return any ? statement : InvalidCommandId;
}

// row_lead for a row of `statement`: -1 for none (or a row a whole rebuild counted), the lead's index for a
// row to apply, -2 - the index for a row to count as an event of no rule (its rules were re-read).
static int statement_row_lead(const TrackedTable &table, Leads *leads, TupleTableSlot *slot, CommandId statement)
{
	int lead = row_lead(table, leads, slot);
	if (statement == InvalidCommandId || lead < 0)
		return lead;
	const char *text = key_text(leads->model->key, leads->keys[lead]);
	int found = 0; // 0 no, 1 its rules, 2 all of it
	ls_cpp([&] {
		auto it = rebuilt->find(rebuilt_entry(statement, leads->model->spec.id, table.relid, text));
		found = it == rebuilt->end() ? 0 : it->second ? 2 : 1;
	});
	return found == 0 ? lead : found == 2 ? -1 : -2 - lead;
}

// A row of an event table counted as one more (sign +1) or one fewer event of its lead, for no rule.
static void count_row(const TrackedTable &table, Leads *leads, int lead, std::optional<core::Micros> at, int sign)
{
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	ls_cpp([&] {
		batch->matched.assign(spec.event_rules.size(), false);
		if (core::apply_event(spec, batch->states[lead], at, batch->matched, sign))
			batch->rebuild[lead] = 1;
	});
}

static int *find_leads(const TrackedTable &table, Leads *leads, Rows *rows)
{
	if (!rows->store)
		return nullptr;
	int *lead = static_cast<int *>(palloc(sizeof(int) * (tuplestore_tuple_count(rows->store) + 1)));
	int i = 0;
	CommandId statement = statement_with_rebuilds(table);
	rows_rescan(rows);
	while (TupleTableSlot *slot = next_row(rows))
		lead[i++] = statement_row_lead(table, leads, slot, statement);
	return lead;
}

// One row of an event table, as the first pass leaves it: its lead, its time, which of the table's
// rules (bit j: table.rules[j]) its row matches.
struct EventRecord {
	int lead;
	bool timed;
	int64 at;
	uint64 matched;
};
// A table with more rules than bits takes the two passes.
static const size_t kRecordRules = 64;

static EventRecord *record_events(const TrackedTable &table, Leads *leads, Rows *rows, ExprContext *econtext, int64 *n)
{
	*n = 0;
	if (!rows->store)
		return nullptr;
	EventRecord *records = static_cast<EventRecord *>(
		palloc_extended(sizeof(EventRecord) * (tuplestore_tuple_count(rows->store) + 1), MCXT_ALLOC_HUGE));
	Batch *batch = leads->batch;
	CommandId statement = statement_with_rebuilds(table);
	rows_rescan(rows);
	while (TupleTableSlot *slot = next_row(rows)) {
		int lead = statement_row_lead(table, leads, slot, statement);
		if (lead == -1)
			continue;
		bool counted = lead <= -2; // its rules re-read by a rebuild of this statement: an event of no rule
		if (counted)
			lead = -2 - lead;
		std::optional<core::Micros> at;
		(void) event_time(table, slot, &at);
		uint64 bits = 0;
		if (!counted) {
			evaluate_rules(table, *leads->model, batch, slot, econtext);
			for (size_t j = 0; j < table.rules.size(); j++)
				if (batch->matched[table.rules[j].index])
					bits |= UINT64CONST(1) << j;
		}
		records[(*n)++] = EventRecord{lead, at.has_value(), at.value_or(0), bits};
	}
	return records;
}

static void apply_records(const TrackedTable &table, Leads *leads, const EventRecord *records, int64 n, int sign)
{
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	for (int64 i = 0; i < n; i++) {
		const EventRecord &r = records[i];
		ls_cpp([&] {
			batch->matched.assign(spec.event_rules.size(), false);
			for (size_t j = 0; j < table.rules.size(); j++)
				if (r.matched & (UINT64CONST(1) << j))
					batch->matched[table.rules[j].index] = true;
			std::optional<core::Micros> at = r.timed ? std::optional<core::Micros>(r.at) : std::nullopt;
			if (core::apply_event(spec, batch->states[r.lead], at, batch->matched, sign))
				batch->rebuild[r.lead] = 1;
		});
	}
}

static void apply_rows(const TrackedTable &table, Leads *leads, Rows *rows, const int *lead, ExprContext *econtext,
                       int sign)
{
	if (!rows->store)
		return;
	int i = 0;
	rows_rescan(rows);
	while (TupleTableSlot *slot = next_row(rows)) {
		if (lead[i] >= 0)
			apply_row(table, leads, lead[i], slot, econtext, sign);
		else if (lead[i] <= -2) { // see statement_row_lead
			std::optional<core::Micros> at;
			(void) event_time(table, slot, &at);
			count_row(table, leads, -2 - lead[i], at, sign);
		}
		i++;
	}
}

// All the models that track the table score the statement together: their lead states are locked at
// once, in (lead, model) order, then each model applies the rows to its leads. The rows are of row type
// `rows_desc`; `desc` is the tracked table's (they differ for some partitions).
void score_statement(const Cache *cache, const int *tables, int n_tables, TupleDesc desc, TupleDesc rows_desc,
                     Tuplestorestate *old_rows, Tuplestorestate *new_rows, TimestampTz now)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(rows_desc, &TTSOpsMinimalTuple);
	AttrMap *map = rows_desc == desc ? nullptr : build_attrmap_by_name_if_req(rows_desc, desc);
	TupleTableSlot *out = map ? MakeSingleTupleTableSlot(desc, &TTSOpsVirtual) : nullptr;
	Rows olds{old_rows, slot, map, out}, news{new_rows, slot, map, out};
	ExprContext *econtext = CreateStandaloneExprContext();
	Leads **all = static_cast<Leads **>(palloc(sizeof(Leads *) * n_tables));
	int **old_leads = static_cast<int **>(palloc0(sizeof(int *) * n_tables));
	int **new_leads = static_cast<int **>(palloc0(sizeof(int *) * n_tables));
	EventRecord **old_records = static_cast<EventRecord **>(palloc0(sizeof(EventRecord *) * n_tables));
	EventRecord **new_records = static_cast<EventRecord **>(palloc0(sizeof(EventRecord *) * n_tables));
	int64 *n_old = static_cast<int64 *>(palloc0(sizeof(int64) * n_tables));
	int64 *n_new = static_cast<int64 *>(palloc0(sizeof(int64) * n_tables));
	bool *recorded = static_cast<bool *>(palloc0(sizeof(bool) * n_tables));
	int touched = 0;

	for (int t = 0; t < n_tables; t++) {
		const TrackedTable &table = cache->tables[tables[t]];
		all[t] = static_cast<Leads *>(palloc(sizeof(Leads)));
		leads_init(all[t], cache, &cache->models[table.model], CurrentMemoryContext);
		recorded[t] = !table.is_lead && table.rules.size() <= kRecordRules;
		if (recorded[t]) {
			old_records[t] = record_events(table, all[t], &olds, econtext, &n_old[t]);
			new_records[t] = record_events(table, all[t], &news, econtext, &n_new[t]);
		} else {
			old_leads[t] = find_leads(table, all[t], &olds);
			new_leads[t] = find_leads(table, all[t], &news);
		}
		touched += all[t]->n;
	}
	// The common case, one lead of one model, locks it by key; otherwise one statement locks them all.
	// Otherwise the rows are locked in (lead, model) order: directly when they all exist, else by a
	// statement that creates the missing ones.
	bool one = n_tables == 1 && all[0]->n == 1;
	bool read = false;
	if (!one && touched > 0) {
		read = lock_read_direct(all, n_tables);
		if (!read)
			lock_states(all, n_tables);
	}
	for (int t = 0; t < n_tables; t++) {
		const TrackedTable &table = cache->tables[tables[t]];
		Leads *leads = all[t];
		if (!read)
			read_states(leads, one ? ReadMode::LockOne : ReadMode::Locked);
		TimestampTz at = statement_instant(leads, now);
		// Stage changes time alone caused before this statement are recorded first, at their own time.
		catch_up(leads, at);
		// Old rows first: an updated lead row is cleared, then set again.
		if (recorded[t]) {
			apply_records(table, leads, old_records[t], n_old[t], -1);
			apply_records(table, leads, new_records[t], n_new[t], 1);
		} else {
			apply_rows(table, leads, &olds, old_leads[t], econtext, -1);
			apply_rows(table, leads, &news, new_leads[t], econtext, 1);
		}
		for (int i = 0; i < leads->n; i++)
			if (leads->batch->rebuild[i]) {
				bool whole = rebuild_events(cache, *leads->model, leads->batch, leads->keys[i], std::nullopt,
				                            &leads->batch->states[i], &table);
				note_rebuilt(*leads->model, table, leads->keys[i], whole);
			}
		write_states(leads, at, false);
		note_touched(leads);
	}
	FreeExprContext(econtext, true);
	if (out)
		ExecDropSingleTupleTableSlot(out);
	ExecDropSingleTupleTableSlot(slot);
}

// The tracked tables of relid, in model id order (the order their locks are taken in). A draft scores
// nothing: its tables are not routed to.
int tables_of(const Cache *cache, Oid relid, int *out)
{
	int n = 0;
	for (size_t m = 0; m < cache->models.size(); m++) {
		if (cache->models[m].draft())
			continue;
		for (int t : cache->models[m].tables)
			if (cache->tables[t].relid == relid)
				out[n++] = t;
	}
	return n;
}

// The table the models track that relid is or is a partition of (at any depth), with its tracked tables in
// *tables (*n of them); InvalidOid if none.
Oid tracked_root(const Cache *cache, Oid relid, int *tables, int *n)
{
	*n = tables_of(cache, relid, tables);
	if (*n > 0)
		return relid;
	if (!get_rel_relispartition(relid))
		return InvalidOid;
	ListCell *lc;
	foreach (lc, get_partition_ancestors(relid)) {
		Oid ancestor = lfirst_oid(lc);
		*n = tables_of(cache, ancestor, tables);
		if (*n > 0)
			return ancestor;
	}
	return InvalidOid;
}

// Configuration changes take the model's lock exclusively: once we hold the locks of root's models shared,
// the cache is reloaded if one committed meanwhile. Returns the cache, root's tracked tables in *tables.
const Cache *lock_models(const Cache *cache, Oid root, int **tables, int *n)
{
	for (int i = 0; i < *n; i++)
		lock_model(cache->models[cache->tables[(*tables)[i]].model].spec.id, false);
	AcceptInvalidationMessages();
	const Cache *now_cache = get_cache();
	if (now_cache != cache) {
		cache = now_cache;
		*tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
		*n = tables_of(cache, root, *tables);
		for (int i = 0; i < *n; i++)
			lock_model(cache->models[cache->tables[(*tables)[i]].model].spec.id, false);
	}
	return cache;
}

// The tracked partitioned tables a TRUNCATE of this (sub)transaction is emptying as a whole, between its
// BEFORE and AFTER triggers: their partitions' rows need not be scored one by one, the AFTER trigger
// recomputes the models. An error in between aborts the (sub)transaction, which the stamp then no longer
// matches.
static List *truncating = NIL; // Oids, in TopTransactionContext
static SubxactStamp truncating_stamp;

static bool is_truncating(Oid root)
{
	return truncating_stamp.current() && list_member_oid(truncating, root);
}

static void set_truncating(Oid root, bool on)
{
	if (!truncating_stamp.current()) {
		truncating = NIL; // its memory went with the transaction, or goes with this one
		truncating_stamp.set();
	}
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	truncating = on ? list_append_unique_oid(truncating, root) : list_delete_oid(truncating, root);
	MemoryContextSwitchTo(old);
}

static void track_statement(FunctionCallInfo fcinfo, TriggerData *td, Oid relid);

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

LS_FUNCTION(leadscore_track_trigger);
Datum leadscore_track_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("leadscore._track_trigger() must be called as a trigger")));
	TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
	if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
	    !(TRIGGER_FIRED_AFTER(td->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("leadscore._track_trigger() must be an AFTER ... FOR EACH STATEMENT trigger")));
	Oid relid = RelationGetRelid(td->tg_relation);

	// The trigger works as the extension's owner (the CRM's roles have no right on leadscore's tables)
	// with pg_catalog alone as search path, as a SECURITY DEFINER function with SET search_path would,
	// without the price of a configuration change on every call. An error restores both.
	HeapTuple proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "leadscore: cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	Oid owner = reinterpret_cast<Form_pg_proc>(GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	RoleSwitch saved;
	as_role(owner, &saved);
	track_statement(fcinfo, td, relid);
	end_as_role(&saved);
	return PointerGetDatum(NULL);
}

} // extern "C"

namespace leadscore::pg {

// A statement on a shard of a tracked table, in its shard scope: scored as one on the table (its rows in the
// shard's row type), into the co-located shards of leadscore's tables. TRUNCATE of a shard is refused
// (a recompute runs per node, not yet in a shard scope).
static void track_shard_statement(TriggerData *td, Oid relid, Oid logical)
{
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		ereport(ERROR,
		        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		         errmsg("leadscore: TRUNCATE of the distributed table %s is not supported", get_rel_name(logical)),
		         errhint("DELETE its rows: their scores follow.")));
	const Cache *cache = get_cache();
	int *tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
	int n = tables_of(cache, logical, tables);
	cache = lock_models(cache, logical, &tables, &n);
	Relation root_rel = table_open(logical, AccessShareLock);
	score_statement(cache, tables, n, RelationGetDescr(root_rel), RelationGetDescr(td->tg_relation), td->tg_oldtable,
	                td->tg_newtable, GetCurrentTransactionStartTimestamp());
	table_close(root_rel, AccessShareLock);
}

static void track_statement(FunctionCallInfo fcinfo, TriggerData *td, Oid relid)
{
	spi_connect();
	const Cache *cache = get_cache();
	int *tables = static_cast<int *>(palloc(sizeof(int) * (cache->tables.size() + 1)));
	int n;
	Oid root = tracked_root(cache, relid, tables, &n);
	if (!OidIsValid(root)) {
		// A shard of a tracked table distributed by leadscore.distribute(): scored in its shard scope.
		Oid logical = citus_shard_of(relid);
		if (OidIsValid(logical) && tables_of(cache, logical, tables) > 0 && scope_enter(relid)) {
			PG_TRY();
			{
				track_shard_statement(td, relid, logical);
			}
			PG_FINALLY();
			{
				scope_leave();
			}
			PG_END_TRY();
			SPI_finish();
			return;
		}
		// Another shard (its table distributed by other means): refused. Else a trigger left on a table no
		// model tracks (a restore in progress).
		refuse_citus_shard(relid);
		SPI_finish();
		return;
	}

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)) {
		if (root == relid && TRIGGER_FIRED_BEFORE(td->tg_event))
			set_truncating(root, true);
		else if (root == relid) {
			// The tracked table emptied (with all its partitions): its models recomputed.
			set_truncating(root, false);
			char **models = static_cast<char **>(palloc(sizeof(char *) * (n + 1)));
			for (int i = 0; i < n; i++)
				models[i] = pstrdup(cache->models[cache->tables[tables[i]].model].spec.name.c_str());
			for (int i = 0; i < n; i++)
				recompute_model(models[i]);
		} else if (TRIGGER_FIRED_BEFORE(td->tg_event)) {
			// A partition emptied alone: its rows read while they are there, scored as deleted once gone.
			if (get_rel_relkind(relid) == RELKIND_RELATION && !is_truncating(root))
				capture_partition_rows(relid);
		} else
			score_captured_rows();
		SPI_finish();
		return;
	}

	cache = lock_models(cache, root, &tables, &n);
	TupleDesc rows_desc = RelationGetDescr(td->tg_relation), desc = rows_desc;
	Relation root_rel = nullptr;
	if (root != relid) { // a partition's statement, scored as one on the tracked table
		root_rel = table_open(root, AccessShareLock);
		desc = RelationGetDescr(root_rel);
	}
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	score_statement(cache, tables, n, desc, rows_desc, td->tg_oldtable, td->tg_newtable, now);
	if (root_rel)
		table_close(root_rel, AccessShareLock);
	SPI_finish();
}

} // namespace leadscore::pg
