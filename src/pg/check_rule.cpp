// Rule validation when a rule is written (the BEFORE trigger on leadscore.rule) and when a model's
// configuration changes (leadscore._validate: ModelSpec::validate on the model reloaded), and the check of
// a condition as its author (_check_condition, for calibrate_rules).
#include "drafts.h"
#include "state.h"
#include "predict/predict.h"

#include <cmath>
#include <cstring>

using namespace leadscore;
using namespace leadscore::pg;

extern "C" {

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
	if (SPI_execute_with_args("SELECT f FROM leadscore.predictive_models m, unnest(m.features) f WHERE m.name = $1", 1,
	                          argtypes, args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read trained models");
	if (SPI_processed == 0)
		refuse_rule(ERRCODE_UNDEFINED_OBJECT, name, model,
		            psprintf("predictive model \"%s\" does not exist", predictor),
		            "Train it first with leadscore.train.");
	for (uint64 i = 0; i < SPI_processed; i++) {
		char *feature = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		if (get_attnum(source, feature) == InvalidAttrNumber)
			refuse_rule(ERRCODE_UNDEFINED_COLUMN, name, model,
			            psprintf("predictive model \"%s\" reads column \"%s\", which table %s does not have", predictor,
			                     feature, DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)))),
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

	// The checks of the row's own values are CHECK constraints of leadscore.rule since 1.6 (checked after
	// this trigger); a schema not yet updated has them here, as it had.
	bool row_checks = !probe_schema().rule_checks;
	if (row_checks && !std::isfinite(points))
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "points must be finite", nullptr);
	if (row_checks && has_cap && !(DatumGetFloat8(cap_datum) > 0 && std::isfinite(DatumGetFloat8(cap_datum))))
		refuse_rule(ERRCODE_INVALID_PARAMETER_VALUE, name, model, "cap must be positive and finite",
		            "A cap bounds the size of the rule's total, for negative points too: -20 capped at 40 "
		            "contributes at least -40.");

	// leadscore's own tables are read as their owner, names resolved in pg_catalog alone: the writer may
	// edit rules without reading the rest of the configuration. An error restores both.
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	spi_connect();
	Datum category = column("category");
	bool has_category = !isnull;
	Oid argtypes[3] = {TEXTOID, OIDOID, TEXTOID};
	Datum args[3] = {CStringGetTextDatum(model), ObjectIdGetDatum(source), category};
	if (SPI_execute_with_args(
			"SELECT (SELECT role FROM leadscore.tracked_table WHERE model = $1 AND relid = $2), "
			"EXISTS (SELECT FROM leadscore.model WHERE name = $1), "
			"EXISTS (SELECT FROM leadscore.category WHERE model = $1 AND name = $3), "
			"(SELECT time_column IS NOT NULL FROM leadscore.tracked_table WHERE model = $1 AND relid = $2)",
			3, argtypes, args, has_category ? nullptr : "  n", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read tracked tables");
	char *role = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	bool model_exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!model_exists)
		ereport(ERROR,
		        (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("rule \"%s\": model \"%s\" does not exist", name, model)));
	if (!role)
		refuse_rule(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, name, model,
		            psprintf("table %s is not tracked by the model",
		                     DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)))),
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
		if (row_checks && capped && once)
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
	// A rule copied by leadscore.draft or leadscore.publish keeps its author, if it repeats a rule of the
	// model copied from word for word.
	int author_col = SPI_fnumber(desc, "author");
	bool copied = false;
	if (copying_from() && author_col > 0) {
		Datum given = SPI_getbinval(row, desc, author_col, &isnull);
		if (!isnull) {
			Oid types[5] = {TEXTOID, TEXTOID, OIDOID, TEXTOID, OIDOID};
			Datum values[5] = {CStringGetTextDatum(copying_from()), CStringGetTextDatum(name), ObjectIdGetDatum(source),
			                   CStringGetTextDatum(condition), given};
			if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM leadscore.rule WHERE model = $1 AND name = $2 "
			                          "AND source = $3 AND condition = $4 AND author = $5)",
			                          5, types, values, nullptr, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "leadscore: could not read the rules copied");
			copied = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
	}
	SPI_finish();
	end_as_role(&saved);

	// The author (1.4): the role that writes the rule, whatever the row says. A superuser's write keeps the
	// author the row names (a restore keeps the dumped authors; disabling another role's rule leaves it that
	// role's), or makes it the superuser's if none. The condition is checked, and will run, with its rights.
	Oid author = GetUserId();
	if (author_col > 0) {
		Datum given = SPI_getbinval(row, desc, author_col, &isnull);
		bool named = !isnull;
		if (named && (superuser() || copied))
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

} // extern "C"
