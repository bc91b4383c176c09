// The SQL statements on the state tables (see state_row.h): prepared per key kind, as generic plans, and
// prepared again when the table's row type changes.
#include "state_row.h"

namespace leadscore::pg {

enum Stmt { Ensure, Read, Update, Insert, Delete, RecordChange, DueRows, DueRowsOf, kStmts };

struct KindPlans {
	Oid state_relid;
	TupleDesc rowdesc;
	SchemaFeatures schema; // probed from this state table when prepared
	Oid rowtype;           // the state table's row type, and the identifier of its descriptor when
	uint64 rowdesc_id;     // prepared: ALTER EXTENSION UPDATE adding a column makes the plans stale
	SPIPlanPtr plans[kStmts];
};
static KindPlans kind_plans[kKeyKinds];

static KindPlans *plans_for(KeyKind kind)
{
	const KeyType &kt = key_type(kind);
	KindPlans *p = &kind_plans[static_cast<int>(kind)];
	Oid relid = state_relid(kind);
	if (p->state_relid == relid && relid != InvalidOid &&
	    lookup_type_cache(p->rowtype, TYPECACHE_TUPDESC)->tupDesc_identifier == p->rowdesc_id)
		return p;

	for (SPIPlanPtr &plan : p->plans)
		if (plan) {
			SPI_freeplan(plan);
			plan = nullptr;
		}
	if (p->rowdesc)
		FreeTupleDesc(p->rowdesc);
	p->rowdesc = nullptr;
	p->state_relid = InvalidOid;

	Oid key_array = get_array_type(kt.type);
	Oid state_array = get_array_type(get_rel_type_id(relid));
	const char *s = kt.suffix;
	SchemaFeatures schema = probe_schema(kind);
	bool has_next = schema.state_next_change, has_hot = schema.state_hot, has_stage_at = schema.state_stage_at;
	// The update of locked rows sets every column but the key, from rows of the table's own type.
	int natts = schema.state_stage_since ? kStateCols
	            : has_stage_at           ? ColStageAt
	            : has_hot                ? ColHotKey
	            : has_next               ? ColNextChange
	                                     : ColStage;
	StringInfoData update;
	initStringInfo(&update);
	appendStringInfoString(&update, "UPDATE leadscore.state_%s s SET ");
	for (int c = ColHasLead; c <= natts; c++)
		appendStringInfo(&update, "%s%s = u.%s", c > ColHasLead ? ", " : "", kStateColumns[c - 1],
		                 kStateColumns[c - 1]);
	appendStringInfoString(&update, " FROM unnest($1, $2) AS u(t");
	for (int c = ColModel; c <= natts; c++)
		appendStringInfo(&update, ", %s", kStateColumns[c - 1]);
	appendStringInfoString(&update, ") WHERE s.ctid = u.t");
	// A row created for a lead takes the lead's latest engagement reset (1.2): a lead reset while it had no
	// state row (nothing scored) must not count events dated before its reset when they come.
	bool has_resets = has_hot && schema.engagement_resets;
	struct {
		const char *sql;
		int nargs;
		Oid args[6];
	} defs[kStmts] = {
		// Creates missing rows and locks all, of every model the statement scores, in (lead, model) order:
		// statements that touch leads in increasing order cannot deadlock on them.
		// ($1: the models' state_id, $3: their id, which their resets carry.)
		{has_resets
	         ? "INSERT INTO leadscore.state_%1$s AS s (model_id, lead, reset_at) SELECT m, k, (SELECT max(r.reset_at) "
	           "FROM leadscore.engagement_reset_%1$s r WHERE r.model_id = i AND r.lead = k) "
	           "FROM unnest($1, $2, $3) AS u(m, k, i) "
	           "ORDER BY k, m ON CONFLICT (model_id, lead) DO UPDATE SET n_events = s.n_events WHERE false"
	         : "INSERT INTO leadscore.state_%s AS s (model_id, lead) SELECT m, k FROM unnest($1, $2, $3) AS u(m, k, i) "
	           "ORDER BY k, m ON CONFLICT (model_id, lead) DO UPDATE SET n_events = s.n_events WHERE false",
	     3,
	     {INT4ARRAYOID, key_array, INT4ARRAYOID}},
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE model_id = $1 AND lead = ANY($2)", 2, {INT4OID, key_array}},
		// Locked rows, found by their tuple ids (a TID scan per row, no index probe).
		{update.data, 2, {TIDARRAYOID, state_array}},
		{"INSERT INTO leadscore.state_%s SELECT * FROM unnest($1)", 1, {state_array}},
		{"DELETE FROM leadscore.state_%s WHERE model_id = $1 AND lead = ANY($2)", 2, {INT4OID, key_array}},
		// A shard of stage_change_<key> (a shard scope) has no identity of its own: ids from the node's sequence.
		// The changes wait in stage_notice_<key> for leadscore.relay_stage_changes() to notify them on the
		// coordinator (a NOTIFY here would fail the distributed commit).
		{scope_active()
	         ? "WITH c AS (INSERT INTO leadscore.stage_change_%1$s (id, model_id, lead, from_stage, to_stage, score, "
	           "changed_at) SELECT nextval('leadscore.stage_change_%1$s_id_seq'), $1, l, f, t, s, a "
	           "FROM unnest($2, $3, $4, $5, $6) AS u(l, f, t, s, a) RETURNING *), "
	           "n AS (INSERT INTO leadscore.stage_notice_%1$s SELECT * FROM c) SELECT id FROM c"
	         : "INSERT INTO leadscore.stage_change_%s (model_id, lead, from_stage, to_stage, score, changed_at) "
	           "SELECT $1, l, f, t, s, a FROM unnest($2, $3, $4, $5, $6) AS u(l, f, t, s, a) RETURNING id",
	     6,
	     {INT4OID, key_array, TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID}},
		// Rows whose stage time may have changed by now (1.1): taken by one scheduled run, skipped by the others.
		// Each batch goes on from the last time the one before read ($3): the index entries of the rows a run
		// has moved on stay behind until a vacuum, and starting over at each batch would visit them all again.
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE next_change <= $1 AND next_change >= $3 "
	     "ORDER BY next_change LIMIT 1000 FOR UPDATE SKIP LOCKED",
	     3,
	     {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID}},
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE next_change <= $1 AND next_change >= $3 AND model_id = $2 "
	     "ORDER BY next_change LIMIT 1000 FOR UPDATE SKIP LOCKED",
	     3,
	     {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID}},
	};
	for (int i = 0; i < kStmts; i++) {
		if ((i == DueRows || i == DueRowsOf) && !has_next)
			continue;
		char *sql = scoped_sql(psprintf(defs[i].sql, s)); // a shard's own, in a shard scope
		// Generic plans: a custom plan per call would re-plan every statement (the array sizes differ).
		SPIPlanPtr plan = SPI_prepare_cursor(sql, defs[i].nargs, defs[i].args, CURSOR_OPT_GENERIC_PLAN);
		if (!plan)
			elog(ERROR, "leadscore: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		p->plans[i] = plan;
	}
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	p->rowdesc = lookup_rowtype_tupdesc_copy(get_rel_type_id(relid), -1);
	MemoryContextSwitchTo(old);
	p->schema = schema;
	p->rowtype = get_rel_type_id(relid);
	p->rowdesc_id = lookup_type_cache(p->rowtype, TYPECACHE_TUPDESC)->tupDesc_identifier;
	p->state_relid = relid;
	return p;
}

const SchemaFeatures &state_features(KeyKind kind)
{
	return plans_for(kind)->schema;
}

TupleDesc state_rowdesc(KeyKind kind)
{
	return plans_for(kind)->rowdesc;
}

static void exec(KeyKind kind, Stmt stmt, Datum *args, bool read_only, int expected, const char *what)
{
	if (SPI_execute_plan(plans_for(kind)->plans[stmt], args, nullptr, read_only, 0) != expected)
		elog(ERROR, "leadscore: could not %s", what);
}

void sql_ensure_rows(KeyKind kind, Datum *models, Datum *keys, Datum *ids, int n)
{
	const KeyType &kt = key_type(kind);
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(kt.type, &typlen, &byval, &align);
	Datum args[3] = {PointerGetDatum(construct_array(models, n, INT4OID, 4, true, TYPALIGN_INT)),
	                 PointerGetDatum(construct_array(keys, n, kt.type, typlen, byval, align)),
	                 PointerGetDatum(construct_array(ids, n, INT4OID, 4, true, TYPALIGN_INT))};
	exec(kind, Ensure, args, false, SPI_OK_INSERT, "lock lead states");
}

void sql_read_rows(KeyKind kind, int32 model_id, Datum keys, bool read_only)
{
	Datum args[2] = {Int32GetDatum(model_id), keys};
	exec(kind, Read, args, read_only, SPI_OK_SELECT, "read lead states");
}

void sql_update_rows(KeyKind kind, ItemPointer tids, const int *which, HeapTuple *tuples, int n)
{
	Datum *tid_values = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	Datum *rows = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	for (int r = 0; r < n; r++) {
		tid_values[r] = PointerGetDatum(&tids[which ? which[r] : r]);
		rows[r] = HeapTupleGetDatum(tuples[r]);
	}
	Oid rowtype = plans_for(kind)->rowtype;
	Datum args[2] = {make_array(tid_values, nullptr, n, TIDOID), make_array(rows, nullptr, n, rowtype)};
	exec(kind, Update, args, false, SPI_OK_UPDATE, "write lead states");
}

void sql_insert_rows(KeyKind kind, HeapTuple *tuples, int n)
{
	Datum *rows = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	for (int r = 0; r < n; r++)
		rows[r] = HeapTupleGetDatum(tuples[r]);
	Datum arg = make_array(rows, nullptr, n, plans_for(kind)->rowtype);
	exec(kind, Insert, &arg, false, SPI_OK_INSERT, "write lead states");
}

void sql_delete_rows(KeyKind kind, int32 model_id, Datum keys)
{
	Datum args[2] = {Int32GetDatum(model_id), keys};
	exec(kind, Delete, args, false, SPI_OK_DELETE, "delete lead states");
}

void sql_record_changes(KeyKind kind, int32 model_id, Datum leads, Datum from, Datum to, Datum scores, Datum times,
                        int n)
{
	Datum args[6] = {Int32GetDatum(model_id), leads, from, to, scores, times};
	// (In a shard scope, a SELECT over the two inserts.)
	exec(kind, RecordChange, args, false, scope_active() ? SPI_OK_SELECT : SPI_OK_INSERT_RETURNING,
	     "record stage changes");
	if (SPI_processed != (uint64) n)
		elog(ERROR, "leadscore: could not record stage changes");
}

bool sql_due_rows(KeyKind kind, TimestampTz as_of, std::optional<int> only_model, TimestampTz from)
{
	if (!plans_for(kind)->schema.state_next_change)
		return false;
	Datum args[3] = {TimestampTzGetDatum(as_of), Int32GetDatum(only_model.value_or(0)), TimestampTzGetDatum(from)};
	exec(kind, only_model ? DueRowsOf : DueRows, args, false, SPI_OK_SELECT, "read the lead states due");
	return true;
}

} // namespace leadscore::pg
