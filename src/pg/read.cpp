// The read API's row functions: a lead's score at any instant (leadscore._eval, behind the views and
// scores_at) and its explanation line by line (leadscore.explain). The hottest leads are in hot.cpp, the
// readers' permission checks in visibility.cpp.
#include "state.h"
#include "../core/explain.h"

using namespace leadscore;
using namespace leadscore::pg;

// Per call site of _eval: the C++ scratch (owned by fn_mcxt) and the result's tuple descriptor.
struct EvalSite {
	Batch *batch;
	TupleDesc desc;
	void *visibility; // may_read's cache
};

static EvalSite *eval_site(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra)
		return static_cast<EvalSite *>(fcinfo->flinfo->fn_extra);
	MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	EvalSite *site = static_cast<EvalSite *>(palloc0(sizeof(EvalSite)));
	TupleDesc desc;
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "leadscore: _eval must return a composite type");
	site->desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	site->batch = ls_owned<Batch>(fcinfo->flinfo->fn_mcxt);
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = site;
	return site;
}

static Datum text_or_null(const std::optional<std::string> &s, bool *isnull)
{
	*isnull = !s.has_value();
	return s ? CStringGetTextDatum(s->c_str()) : (Datum) 0;
}

static void refuse_lead(const CachedModel &model, Datum key)
{
	ereport(ERROR,
	        (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
	         errmsg("permission denied for lead %s of model \"%s\"", key_text(model.key, key), model.spec.name.c_str()),
	         errdetail("Role \"%s\" does not see that lead in the model's lead table.",
	                   GetUserNameFromId(GetUserId(), false))));
}

// Brings a state to as_of: a lead with events later than as_of is scored from its events up to as_of,
// and under stage hysteresis given the stage it had then (held_stage). Read as the extension's owner, once
// the caller is known to see the lead (`visibility` is its cache).
static void state_at(const Cache *cache, const CachedModel &model, Batch *batch, Datum key, TimestampTz as_of,
                     core::LeadState *state, const RowExtras &extras, void **visibility, MemoryContext cxt)
{
	bool rebuild = !core::valid_at(*state, as_of), history = stage_needs_history(model.spec, extras, as_of);
	if (!rebuild && !history)
		return;
	if (!may_read(visibility, cxt, cache, model.spec.id, key, GetUserId()))
		refuse_lead(model, key);
	spi_connect();
	// On Citus, in the query on a shard of the state table: the lead's events in its node's shards.
	bool scoped = scope_enter_key(model.key, key);
	PG_TRY();
	{
		if (rebuild)
			rebuild_events(cache, model, batch, key, as_of, state, nullptr);
		held_stage(cache, model, batch, key, state, extras, as_of);
	}
	PG_FINALLY();
	{
		if (scoped)
			scope_leave();
	}
	PG_END_TRY();
	SPI_finish();
}

extern "C" {

LS_FUNCTION(leadscore_eval);
Datum leadscore_eval(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(1);
	EvalSite *site = eval_site(fcinfo);
	Batch *batch = site->batch;
	const Cache *cache = get_cache();
	Datum key;
	RowExtras extras;
	const CachedModel *model = state_from_row(cache, row, &batch->scratch, &key, &extras);
	if (!model)
		PG_RETURN_NULL();
	state_at(cache, *model, batch, key, as_of, &batch->scratch, extras, &site->visibility, fcinfo->flinfo->fn_mcxt);
	core::ScoreResult *result = nullptr;
	ls_cpp([&] {
		batch->result = core::evaluate(model->spec, batch->scratch, as_of);
		result = &batch->result;
	});
	Datum values[6];
	bool nulls[6] = {};
	values[0] = Float8GetDatum(result->score);
	values[1] = Float8GetDatum(result->fit);
	values[2] = Float8GetDatum(result->engagement);
	values[3] = text_or_null(result->stage, &nulls[3]);
	values[4] = text_or_null(result->grade, &nulls[4]);
	nulls[5] = !batch->scratch.last_activity.has_value();
	values[5] = nulls[5] ? (Datum) 0 : TimestampTzGetDatum(*batch->scratch.last_activity);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(site->desc, values, nulls)));
}

} // extern "C"

// explain on Citus for a lead whose shard is on another node: a query routed by the lead's key (Citus sends
// it whole to that node) runs explain there, in the lead's scope. As the extension's owner: the caller
// was checked here.
static Datum explain_elsewhere(const Cache *cache, const CachedModel *model, Datum key, const char *lead_text,
                               TimestampTz as_of, ReturnSetInfo *rsinfo)
{
	char *sql = psprintf("SELECT s.model_id, e.* FROM leadscore.state_%s s "
	                     "LEFT JOIN LATERAL leadscore.explain($1, $2, $3) e ON true "
	                     "WHERE s.model_id = $4 AND s.lead = $5",
	                     key_type(model->key).suffix);
	Oid types[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT4OID, key_type(model->key).type};
	Datum args[5] = {CStringGetTextDatum(model->spec.name.c_str()), CStringGetTextDatum(lead_text),
	                 TimestampTzGetDatum(as_of), Int32GetDatum(model->state_id), key};
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	spi_connect();
	if (SPI_execute_with_args(sql, 5, types, args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not explain a lead of model \"%s\"", model->spec.name.c_str());
	if (SPI_processed == 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
		                errmsg("model \"%s\" has no lead %s", model->spec.name.c_str(), key_text(model->key, key)),
		                errhint("A lead is scored once it is in the model's lead table or one of its events is.")));
	for (uint64 r = 0; r < SPI_processed; r++) {
		Datum values[9];
		bool nulls[9];
		for (int c = 0; c < 9; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 2, &nulls[c]);
		if (!nulls[0]) // (a model without rules: no line)
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	end_as_role(&saved);
	return (Datum) 0;
}

extern "C" {

LS_FUNCTION(leadscore_explain);
Datum leadscore_explain(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *lead_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(2);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);

	const Cache *cache = get_cache();
	const CachedModel *model = known_model(cache, name);
	check_read(cache, *model);
	Datum key;
	if (!text_as_key(model->key, PG_GETARG_DATUM(1), &key))
		ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
		                errmsg("model \"%s\": \"%s\" is not a lead key of type %s", name, lead_text,
		                       format_type_be(key_type(model->key).type))));
	void *visibility = nullptr;
	if (!may_read(&visibility, CurrentMemoryContext, cache, model->spec.id, key, GetUserId()))
		refuse_lead(*model, key);

	// On Citus: read in the scope of the lead's shard on the node that holds it (here, or else on that node,
	// where a query routed by the lead's key runs this function).
	bool scoped = false;
	if (!scope_active() && !model->tables.empty() && OidIsValid(citus_state_table(model->key))) {
		spi_connect();
		scoped = scope_enter_key(model->key, key, false);
		SPI_finish();
		if (!scoped)
			return explain_elsewhere(cache, model, key, lead_text, as_of, rsinfo);
	}

	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	int lead = lead_index(&leads, key);
	Batch *batch = leads.batch;
	// The state row is read as the extension's owner: the caller sees the lead.
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	spi_connect();
	read_states(&leads, ReadMode::Unlocked);
	SPI_finish();
	end_as_role(&saved);
	// A key the model has never seen (a typo, a lead of another model): an error, not lines of zeros.
	if (batch->states[lead].empty())
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
		                errmsg("model \"%s\" has no lead %s", name, key_text(model->key, key)),
		                errhint("A lead is scored once it is in the model's lead table or one of its events is.")));
	RowExtras extras{batch->next_change[lead], batch->hot_key[lead], batch->stage_at[lead]};
	state_at(cache, *model, batch, leads.keys[lead], as_of, &batch->states[lead], extras, &visibility,
	         CurrentMemoryContext);
	ls_cpp([&] { batch->result = core::evaluate(model->spec, batch->states[lead], as_of, true); });

	std::vector<core::ExplainLine> *lines = nullptr;
	ls_cpp([&] {
		lines = new std::vector<core::ExplainLine>(
			core::explain_lines(model->spec, batch->states[lead], batch->result));
	});
	register_delete(
		CurrentMemoryContext, [](void *p) { delete static_cast<std::vector<core::ExplainLine> *>(p); }, lines);
	for (const core::ExplainLine &line : *lines) {
		Datum values[9];
		bool nulls[9] = {};
		const std::optional<double> parts[4] = {line.points, line.raw, line.decayed, line.capped};
		values[0] = CStringGetTextDatum(line.reset_at ? psprintf("(reset at %s)", timestamptz_to_str(*line.reset_at))
		                                              : line.name.c_str());
		values[1] = CStringGetTextDatum(line.kind.c_str());
		values[2] = text_or_null(line.category, &nulls[2]);
		values[3] = Int64GetDatum(line.hits);
		for (int c = 0; c < 4; c++) {
			nulls[4 + c] = !parts[c].has_value();
			values[4 + c] = parts[c] ? Float8GetDatum(*parts[c]) : (Datum) 0;
		}
		values[8] = Float8GetDatum(line.weighted);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (scoped)
		scope_leave(); // (an error leaves it with the transaction)
	return (Datum) 0;
}

} // extern "C"
