// Engagement resets (1.2): the reset in force for a lead at a time, read from the history tables
// (leadscore.engagement_reset_<key>), and their trigger, which rebuilds the lead's state when a reset is
// recorded, changed or deleted.
#include "drafts.h"
#include "state.h"

namespace leadscore::pg {

// Per key kind: the prepared look-up, re-prepared if the table is re-created (extension dropped and created).
struct ResetPlan {
	Oid relid;
	SPIPlanPtr plan;
};
static ResetPlan reset_plans[kKeyKinds];

std::optional<core::Micros> reset_in_force(const CachedModel &model, Datum key, std::optional<core::Micros> at)
{
	if (!state_features(model.key).engagement_resets)
		return std::nullopt; // a 1.1 schema: no resets
	const KeyType &kt = key_type(model.key);
	char relname[NAMEDATALEN];
	snprintf(relname, sizeof(relname), "engagement_reset_%s", kt.suffix);
	Oid relid = get_relname_relid(relname, get_namespace_oid("leadscore", false));
	if (!OidIsValid(relid))
		return std::nullopt;
	// On Citus (leadscore.distribute() done), in a shard scope: the shard of the lead's node.
	if (scope_active() && citus_table(relid))
		relid = scoped_relid(relid);
	ResetPlan *p = &reset_plans[static_cast<int>(model.key)];
	if (p->relid != relid) {
		if (p->plan)
			SPI_freeplan(p->plan);
		p->plan = nullptr;
		p->relid = InvalidOid;
		char *sql = psprintf("SELECT max(reset_at) FROM %s WHERE model_id = $1 AND lead = $2 "
		                     "AND ($3 IS NULL OR reset_at <= $3)",
		                     quote_qualified_identifier("leadscore", get_rel_name(relid)));
		Oid types[3] = {INT4OID, kt.type, TIMESTAMPTZOID};
		SPIPlanPtr plan = SPI_prepare_cursor(sql, 3, types, CURSOR_OPT_GENERIC_PLAN);
		if (!plan)
			elog(ERROR, "leadscore: could not prepare \"%s\"", sql);
		SPI_keepplan(plan);
		p->plan = plan;
		p->relid = relid;
	}
	Datum args[3] = {Int32GetDatum(model.spec.id), key, at ? TimestampTzGetDatum(*at) : (Datum) 0};
	char nulls[3] = {' ', ' ', at ? ' ' : 'n'};
	// Not read-only: the trigger of the history table must see the row its statement just wrote.
	if (SPI_execute_plan(p->plan, args, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the engagement resets of a lead");
	bool isnull;
	Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	std::optional<core::Micros> found;
	if (!isnull)
		found = DatumGetTimestampTz(d);
	SPI_freetuptable(SPI_tuptable);
	return found;
}

// Rebuilds the state of one lead of one model from its events under its latest reset, recording a stage
// change as a row change would (after the changes time caused before now). Needs an SPI connection.
static void rebuild_after_reset(int model_id, Datum key, Oid key_typid, TimestampTz now)
{
	// A model that is not live (pg_restore loads the history before the CRM's triggers exist, and ends with
	// leadscore.recompute) or gone has nothing to rebuild.
	Oid types[1] = {INT4OID};
	Datum args[1] = {Int32GetDatum(model_id)};
	if (SPI_execute_with_args("SELECT leadscore._is_live(m.name) FROM leadscore.model m WHERE m.id = $1", 1, types,
	                          args, nullptr, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the model of an engagement reset");
	bool isnull;
	if (SPI_processed == 0 || !DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return;

	// As the triggers of tracked tables: the model's lock shared, then the configuration as it is now.
	const Cache *cache = get_cache();
	lock_model(model_id, false);
	AcceptInvalidationMessages();
	cache = get_cache();
	const CachedModel *model = cache->model_by_id(model_id);
	if (!model || model->lead_table < 0)
		return;
	if (key_type(model->key).type != key_typid)
		ereport(ERROR,
		        (errcode(ERRCODE_DATATYPE_MISMATCH),
		         errmsg("model \"%s\" has lead keys of type %s: its resets go into leadscore.engagement_reset_%s",
		                model->spec.name.c_str(), format_type_be(key_type(model->key).type),
		                key_type(model->key).suffix),
		         errhint("Use leadscore.reset(model, lead, at, reason).")));

	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	int lead = lead_index(&leads, key);
	Batch *batch = leads.batch;
	read_states(&leads, ReadMode::LockOne);
	now = statement_instant(&leads, now);
	catch_up(&leads, now);
	std::optional<core::Micros> reset = reset_in_force(*model, leads.keys[lead], std::nullopt);
	ls_cpp([&] { batch->states[lead].reset_at = reset; });
	rebuild_events(cache, *model, batch, leads.keys[lead], std::nullopt, &batch->states[lead], nullptr);
	// Every event table was read as the statement left it: the triggers of its changes yet to fire (a WITH
	// query that also writes events) leave the lead's rows out.
	for (int t : model->tables)
		if (!cache->tables[t].is_lead)
			note_rebuilt(*model, cache->tables[t], leads.keys[lead], true);
	write_states(&leads, now, false);
	note_touched(&leads);
}

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

LS_FUNCTION(leadscore_reset_changed);
Datum leadscore_reset_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("leadscore._reset_changed() must be called as a trigger")));
	TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("leadscore._reset_changed() must be an AFTER ... FOR EACH ROW trigger")));
	TupleDesc desc = RelationGetDescr(td->tg_relation);
	int model_col = SPI_fnumber(desc, "model_id"), lead_col = SPI_fnumber(desc, "lead"),
		at_col = SPI_fnumber(desc, "reset_at");
	if (model_col <= 0 || lead_col <= 0 || at_col <= 0)
		elog(ERROR, "leadscore._reset_changed() is for the tables leadscore.engagement_reset_*");
	Oid key_typid = SPI_gettypeid(desc, lead_col);
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	spi_connect();
	// On Citus, the trigger fires on a shard of the table on the node that holds the lead: its state is in
	// the co-located shards (the shard's scope, left with the transaction if an error comes first).
	bool scoped = scope_enter(RelationGetRelid(td->tg_relation));
	HeapTuple rows[2] = {nullptr, nullptr};
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
		rows[0] = td->tg_trigtuple;
		rows[1] = td->tg_newtuple;
	} else
		rows[0] = td->tg_trigtuple;
	bool written = !TRIGGER_FIRED_BY_DELETE(td->tg_event);
	for (HeapTuple row : rows) {
		if (!row)
			continue;
		bool isnull;
		int model_id = DatumGetInt32(SPI_getbinval(row, desc, model_col, &isnull));
		Datum key = SPI_getbinval(row, desc, lead_col, &isnull);
		TimestampTz at = DatumGetTimestampTz(SPI_getbinval(row, desc, at_col, &isnull));
		// The new row (of an insert, or of an update): no reset in the future.
		if (written && row == (rows[1] ? rows[1] : rows[0]) && at > now) {
			char *when = pstrdup(timestamptz_to_str(at)), *txn = pstrdup(timestamptz_to_str(now));
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("a reset cannot be in the future"),
			                errdetail("%s is later than the transaction's time, %s.", when, txn)));
		}
		rebuild_after_reset(model_id, key, key_typid, now);
	}
	if (scoped)
		scope_leave();
	SPI_finish();
	return PointerGetDatum(NULL);
}

} // extern "C"
