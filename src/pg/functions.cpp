// SQL-callable functions: score evaluation for the views, explain, rule checks, cache invalidation,
// and the event trigger that removes leadscore's triggers before DROP EXTENSION.
#include "state.h"

#include <cmath>
#include <cstring>

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
	ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
	                errmsg("permission denied for lead %s of model \"%s\"", key_text(model.key, key),
	                       model.spec.name.c_str()),
	                errdetail("Role \"%s\" does not see that lead in the model's lead table.",
	                          GetUserNameFromId(GetUserId(), false))));
}

// Brings a state to as_of: a lead with events later than as_of is scored from its events up to as_of
// (read as the extension's owner, once the caller is known to see the lead: `visibility` is its cache).
static void state_at(const Cache *cache, const CachedModel &model, Batch *batch, Datum key, TimestampTz as_of,
                     core::LeadState *state, void **visibility, MemoryContext cxt)
{
	if (core::valid_at(*state, as_of))
		return;
	if (!may_read(visibility, cxt, cache, model.spec.id, key, GetUserId()))
		refuse_lead(model, key);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
	rebuild_events(cache, model, batch, key, as_of, state, nullptr);
	SPI_finish();
}

extern "C" {

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);
void _PG_init(void)
{
	init_cache();
	define_direct_state_access();
}

LS_FUNCTION(leadscore_eval);
Datum leadscore_eval(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(1);
	EvalSite *site = eval_site(fcinfo);
	Batch *batch = site->batch;
	const Cache *cache = get_cache();
	Datum key;
	const CachedModel *model = state_from_row(cache, row, &batch->scratch, &key);
	if (!model)
		PG_RETURN_NULL();
	state_at(cache, *model, batch, key, as_of, &batch->scratch, &site->visibility, fcinfo->flinfo->fn_mcxt);
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
	Oid input, ioparam;
	getTypeInputInfo(key_type(model->key).type, &input, &ioparam);
	Datum key = OidInputFunctionCall(input, lead_text, ioparam, -1);
	void *visibility = nullptr;
	if (!may_read(&visibility, CurrentMemoryContext, cache, model->spec.id, key, GetUserId()))
		refuse_lead(*model, key);

	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	int lead = lead_index(&leads, key);
	Batch *batch = leads.batch;
	// The state row is read as the extension's owner: the caller sees the lead.
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
	read_states(&leads, ReadMode::Unlocked);
	SPI_finish();
	end_as_role(&saved);
	// A key the model has never seen (a typo, a lead of another model): an error, not lines of zeros.
	if (batch->states[lead].empty())
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
		                errmsg("model \"%s\" has no lead %s", name, key_text(model->key, key)),
		                errhint("A lead is scored once it is in the model's lead table or one of its events is.")));
	state_at(cache, *model, batch, leads.keys[lead], as_of, &batch->states[lead], &visibility, CurrentMemoryContext);
	ls_cpp([&] { batch->result = core::evaluate(model->spec, batch->states[lead], as_of, true); });

	const core::ModelSpec &spec = model->spec;
	const core::ScoreResult &result = batch->result;
	// The engagement reset in force at as_of (1.2), first: a line of kind 'reset' that names its time and
	// scores nothing itself (events before it count in no rule).
	if (batch->states[lead].reset_at) {
		Datum values[9];
		bool nulls[9] = {false, false, true, false, false, false, false, false, false};
		values[0] = CStringGetTextDatum(psprintf("(reset at %s)", timestamptz_to_str(*batch->states[lead].reset_at)));
		values[1] = CStringGetTextDatum("reset");
		values[3] = Int64GetDatum(0);
		for (int c = 4; c < 9; c++)
			values[c] = Float8GetDatum(0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (const core::RuleResult &r : result.rules) {
		Datum values[9];
		bool nulls[9] = {};
		if (r.is_inactivity) {
			// An inactivity step: a line of kind 'inactivity', 1 hit while it applies.
			const core::InactivityStep &step = spec.inactivity[r.index];
			values[0] = CStringGetTextDatum(step.name.c_str());
			values[1] = CStringGetTextDatum("inactivity");
			nulls[2] = true;
			values[4] = Float8GetDatum(step.points);
		} else {
			const core::RuleSpec &rule = r.is_event ? spec.event_rules[r.index] : spec.lead_rules[r.index];
			values[0] = CStringGetTextDatum(rule.name.c_str());
			values[1] = CStringGetTextDatum(r.is_event ? "engagement" : "fit");
			nulls[2] = rule.category < 0;
			values[2] = nulls[2] ? (Datum) 0 : CStringGetTextDatum(spec.categories[rule.category].name.c_str());
			values[4] = Float8GetDatum(rule.points);
		}
		values[3] = Int64GetDatum(r.hits);
		values[5] = Float8GetDatum(r.raw);
		values[6] = Float8GetDatum(r.decayed);
		values[7] = Float8GetDatum(r.capped);
		values[8] = Float8GetDatum(r.weighted);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	// The floor or ceiling, when it binds, is a line of its own so that the lines sum to the score.
	double unclamped = result.total;
	if (result.score != unclamped) {
		Datum values[9];
		bool nulls[9] = {false, false, true, false, true, true, true, true, false};
		values[0] = CStringGetTextDatum(result.score > unclamped ? "(floor)" : "(ceiling)");
		values[1] = CStringGetTextDatum("limit");
		values[3] = Int64GetDatum(1);
		values[8] = Float8GetDatum(result.score - unclamped);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

LS_FUNCTION(leadscore_invalidate);
Datum leadscore_invalidate(PG_FUNCTION_ARGS)
{
	invalidate_cache();
	PG_RETURN_VOID();
}

// Reloads the configuration now, which checks every model (ModelSpec::validate): a configuration that
// cannot score is refused when it is written, not when the next event arrives.
LS_FUNCTION(leadscore_validate);
Datum leadscore_validate(PG_FUNCTION_ARGS)
{
	invalidate_cache();
	(void) get_cache();
	PG_RETURN_VOID();
}

static void refuse_rule(int code, const char *rule, const char *model, const char *what, const char *hint)
{
	ereport(ERROR, (errcode(code), errmsg("rule \"%s\" of model \"%s\": %s", rule, model, what),
	                hint ? errhint("%s", hint) : 0));
}

// The predictor of a rule: the rule is on the lead table, the trained model exists and its latest version
// reads columns the lead table has. Needs an SPI connection.
static void check_predictor(const char *name, const char *model, const char *role, Oid source, const char *predictor)
{
	if (strcmp(role, "lead") != 0)
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "a predictor applies to the lead table only",
		            "A trained model predicts from the lead's row: put the rule on the model's lead table.");
	Oid argtypes[1] = {TEXTOID};
	Datum args[1] = {CStringGetTextDatum(predictor)};
	if (SPI_execute_with_args("SELECT f FROM leadscore.predictive_models m, unnest(m.features) f WHERE m.name = $1",
	                          1, argtypes, args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read trained models");
	if (SPI_processed == 0)
		refuse_rule(ERRCODE_UNDEFINED_OBJECT, name, model,
		            psprintf("predictive model \"%s\" does not exist", predictor),
		            "Train it first with leadscore.train.");
	for (uint64 i = 0; i < SPI_processed; i++) {
		char *feature = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		if (get_attnum(source, feature) == InvalidAttrNumber)
			refuse_rule(ERRCODE_UNDEFINED_COLUMN, name, model,
			            psprintf("predictive model \"%s\" reads column \"%s\", which table %s does not have",
			                     predictor, feature,
			                     DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)))),
			            nullptr);
	}
}

// BEFORE INSERT OR UPDATE on leadscore.rule: a bad rule is refused when it is written.
LS_FUNCTION(leadscore_check_rule);
Datum leadscore_check_rule(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "leadscore._check_rule() must be called as a trigger");
	TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
	HeapTuple row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	TupleDesc desc = RelationGetDescr(td->tg_relation);
	bool isnull;
	auto column = [&](const char *col) { return SPI_getbinval(row, desc, SPI_fnumber(desc, col), &isnull); };

	// A NULL in a NOT NULL column: let the constraint, checked after this trigger, say so.
	for (const char *col : {"model", "name", "source", "condition", "points", "once_per_lead"}) {
		(void) column(col);
		if (isnull)
			return PointerGetDatum(row);
	}
	char *model = TextDatumGetCString(column("model"));
	char *name = TextDatumGetCString(column("name"));
	Oid source = DatumGetObjectId(column("source"));
	char *condition = TextDatumGetCString(column("condition"));
	double points = DatumGetFloat8(column("points"));
	Datum cap_datum = column("cap");
	bool has_cap = !isnull;
	bool once = DatumGetBool(column("once_per_lead"));

	if (!std::isfinite(points))
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "points must be finite", nullptr);
	if (has_cap && !(DatumGetFloat8(cap_datum) > 0 && std::isfinite(DatumGetFloat8(cap_datum))))
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "cap must be positive and finite",
		            "A cap bounds the size of the rule's total, for negative points too: -20 capped at 40 "
		            "contributes at least -40.");

	// leadscore's own tables are read as their owner, names resolved in pg_catalog alone: the writer may
	// edit rules without reading the rest of the configuration. An error restores both.
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
	Datum category = column("category");
	bool has_category = !isnull;
	Oid argtypes[3] = {TEXTOID, OIDOID, TEXTOID};
	Datum args[3] = {CStringGetTextDatum(model), ObjectIdGetDatum(source), category};
	if (SPI_execute_with_args("SELECT (SELECT role FROM leadscore.tracked_table WHERE model = $1 AND relid = $2), "
	                          "EXISTS (SELECT FROM leadscore.model WHERE name = $1), "
	                          "EXISTS (SELECT FROM leadscore.category WHERE model = $1 AND name = $3), "
	                          "(SELECT time_column IS NOT NULL FROM leadscore.tracked_table WHERE model = $1 AND relid = $2)",
	                          3, argtypes, args, has_category ? nullptr : "  n", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read tracked tables");
	char *role = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	bool model_exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!model_exists)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
		                errmsg("rule \"%s\": model \"%s\" does not exist", name, model)));
	if (!role)
		refuse_rule(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, name, model,
		            psprintf("table %s is not tracked by the model", DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)))),
		            "Track it first with leadscore.track_leads or leadscore.track_events.");
	bool category_exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (has_category && !category_exists)
		refuse_rule(ERRCODE_FOREIGN_KEY_VIOLATION, name, model,
		            psprintf("category \"%s\" does not exist", TextDatumGetCString(category)),
		            "Add it to leadscore.category first.");
	if (once && strcmp(role, "lead") == 0)
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "once_per_lead applies to event rules only",
		            "A rule on the lead table counts once anyway.");
	// A frequency cap per period (1.2): event rules on a table with a time column, not once per lead.
	int max_col = SPI_fnumber(desc, "max_per_period");
	if (max_col > 0) {
		(void) SPI_getbinval(row, desc, max_col, &isnull);
		bool capped = !isnull;
		(void) SPI_getbinval(row, desc, SPI_fnumber(desc, "period"), &isnull);
		capped = capped || !isnull;
		bool timed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull)) && !isnull;
		if (capped && strcmp(role, "lead") == 0)
			refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "a cap per period applies to event rules only",
			            "A rule on the lead table counts once anyway.");
		if (capped && once)
			refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model,
			            "a cap per period and once_per_lead exclude each other",
			            "A once-per-lead rule counts one event in all.");
		if (capped && !timed)
			refuse_rule(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, name, model,
			            psprintf("a cap per period needs a time column, and table %s is tracked without one",
			                     DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)))),
			            "Track the table with its time column (leadscore.track_events).");
	}
	// A predictive rule (1.1): on the lead table, naming a trained model whose features are its columns.
	int predictor_col = SPI_fnumber(desc, "predictor");
	Datum predictor = predictor_col > 0 ? SPI_getbinval(row, desc, predictor_col, &isnull) : (Datum) 0;
	if (predictor_col > 0 && !isnull)
		check_predictor(name, model, role, source, TextDatumGetCString(predictor));
	SPI_finish();
	end_as_role(&saved);

	// The author (1.4): the role that writes the rule, whatever the row says. A superuser's write keeps the
	// author the row names (a restore keeps the dumped authors; disabling another role's rule leaves it that
	// role's), or makes it the superuser's if none. The condition is checked, and will run, with its rights.
	Oid author = GetUserId();
	int author_col = SPI_fnumber(desc, "author");
	if (author_col > 0) {
		Datum given = SPI_getbinval(row, desc, author_col, &isnull);
		bool named = !isnull;
		if (named && superuser())
			author = DatumGetObjectId(given);
		Datum value = ObjectIdGetDatum(author);
		bool null = false;
		row = heap_modify_tuple_by_cols(row, desc, 1, &author_col, &value, &null);
	} else
		author = owner;

	Relation rel = table_open(source, AccessShareLock);
	(void) compile_condition(rel, condition, name, model, author, author_col <= 0);
	table_close(rel, AccessShareLock);
	return PointerGetDatum(row);
}

// _check_condition(source, condition, rule, model): the condition compiles with the current role as its
// author (calibrate_rules runs conditions as SQL, as its caller).
LS_FUNCTION(leadscore_check_condition);
Datum leadscore_check_condition(PG_FUNCTION_ARGS)
{
	Oid source = PG_GETARG_OID(0);
	char *condition = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char *rule = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char *model = text_to_cstring(PG_GETARG_TEXT_PP(3));
	Relation rel = table_open(source, AccessShareLock);
	(void) compile_condition(rel, condition, rule, model, GetUserId());
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}

// ddl_command_start for DROP EXTENSION: leadscore's triggers on the CRM's tables would otherwise block
// the drop (or go only with CASCADE); remove them first, leaving the tables and their rows untouched.
LS_FUNCTION(leadscore_on_drop_extension);
Datum leadscore_on_drop_extension(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "leadscore._on_drop_extension() must be called as an event trigger");
	EventTriggerData *trigdata = reinterpret_cast<EventTriggerData *>(fcinfo->context);
	if (!IsA(trigdata->parsetree, DropStmt))
		PG_RETURN_VOID();
	DropStmt *stmt = castNode(DropStmt, trigdata->parsetree);
	bool ours = false;
	ListCell *lc;
	foreach (lc, stmt->objects) {
		Node *obj = static_cast<Node *>(lfirst(lc));
		if (IsA(obj, String) && strcmp(strVal(obj), "leadscore") == 0)
			ours = true;
	}
	if (stmt->removeType != OBJECT_EXTENSION || !ours)
		PG_RETURN_VOID();
	// As the caller, names in pg_catalog alone: nothing planted in a schema of its search path runs here.
	RoleSwitch saved;
	as_role(GetUserId(), &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
	if (SPI_execute("SELECT format('DROP TRIGGER IF EXISTS %I ON %s', g.tgname, g.tgrelid::regclass) "
	                "  FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid "
	                " WHERE p.proname = '_track_trigger' AND p.pronamespace = 'leadscore'::regnamespace",
	                true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not list its triggers");
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;
	for (uint64 r = 0; r < n; r++)
		if (SPI_execute(SPI_getvalue(rows->vals[r], rows->tupdesc, 1), false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "leadscore: could not drop a trigger");
	SPI_finish();
	end_as_role(&saved);
	PG_RETURN_VOID();
}

} // extern "C"
