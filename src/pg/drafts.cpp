// Drafts of models. A draft is a row of leadscore.model that names the live model it is a draft of
// (model.draft_of), with a copy of that model's configuration, edited with plain SQL like any model's. It
// scores nothing: no trigger routes a row to it (tables_of), its edits rescore nothing (_is_live is false),
// it has no states and no history. leadscore.preview scores it from scratch without writing and says how it
// would move the live model's leads between stages; leadscore.publish gives the live model the draft's
// configuration in one rescoring and the draft the configuration the model had.
//
// The copies are statements run as the caller (its privileges on leadscore's configuration tables decide
// what it may copy), while the configuration triggers wait (_publishing: they reload the models and
// rescore nothing); a copied rule keeps its author (check_rule, copying_from).
#include "drafts.h"
#include "state.h"
#include "state_row.h"

extern "C" {
#include "utils/acl.h"
}

namespace leadscore::pg {

static const char *copy_source = nullptr; // the model copied from, while a copy runs
static bool copying = false;              // a copy runs: the configuration triggers rescore nothing

const char *copying_from()
{
	return copying ? copy_source : nullptr;
}

static void run_sql(const char *sql, const char *from, const char *to, int expected)
{
	Oid types[2] = {TEXTOID, TEXTOID};
	Datum args[2] = {CStringGetTextDatum(from), CStringGetTextDatum(to)};
	int rc = SPI_execute_with_args(sql, 2, types, args, nullptr, false, 0);
	if (rc != expected)
		elog(ERROR, "leadscore: could not copy the configuration of model \"%s\" to \"%s\" (%s)", from, to,
		     SPI_result_code_string(rc));
}

// The columns of a configuration table but `skip` (NULL-terminated), quoted and comma-separated: every
// column the schema has, so that a column added by a later version is copied too.
static char *columns_of(const char *table, const char *const *skip)
{
	StringInfoData list;
	initStringInfo(&list);
	Relation rel = table_open(get_relname_relid(table, get_namespace_oid("leadscore", false)), AccessShareLock);
	TupleDesc desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++) {
		Form_pg_attribute att = TupleDescAttr(desc, i);
		if (att->attisdropped)
			continue;
		bool skipped = false;
		for (const char *const *s = skip; *s; s++)
			skipped = skipped || strcmp(NameStr(att->attname), *s) == 0;
		if (!skipped)
			appendStringInfo(&list, "%s%s", list.len > 0 ? ", " : "", quote_identifier(NameStr(att->attname)));
	}
	table_close(rel, AccessShareLock);
	return list.data;
}

// Replaces model to's configuration with a copy of model from's: the model's own columns (but its name,
// id and draft_of), categories, rules, stages, grade bands and inactivity steps; tracked tables too when
// asked (a new draft has none). Runs with copying set; needs an SPI connection.
static void copy_config(const char *from, const char *to, bool tracked)
{
	static const char *const model_skip[] = {"name", "id", "draft_of", nullptr};
	static const char *const row_skip[] = {"model", nullptr};
	// Rules first (they name categories and tracked tables), categories last.
	static const char *const children[] = {"rule", "stage", "grade_band", "inactivity_rule", "category"};
	for (const char *table : children)
		run_sql(psprintf("DELETE FROM leadscore.%s WHERE model = $2", table), from, to, SPI_OK_DELETE);
	char *cols = columns_of("model", model_skip);
	run_sql(psprintf("UPDATE leadscore.model t SET (%1$s) = (SELECT %1$s FROM leadscore.model f WHERE f.name = $1) "
	                 " WHERE t.name = $2",
	                 cols),
	        from, to, SPI_OK_UPDATE);
	static const char *const inserts[] = {"tracked_table", "category",   "rule",
	                                      "stage",         "grade_band", "inactivity_rule"};
	for (const char *table : inserts) {
		if (strcmp(table, "tracked_table") == 0 && !tracked)
			continue;
		cols = columns_of(table, row_skip);
		run_sql(
			psprintf("INSERT INTO leadscore.%1$s (model, %2$s) SELECT $2, %2$s FROM leadscore.%1$s WHERE model = $1",
		             table, cols),
			from, to, SPI_OK_INSERT);
	}
}

// copy_config with the configuration triggers waiting, then every session reloads the models.
static void copy_waiting(const char *from, const char *to, bool tracked)
{
	copying = true;
	copy_source = from;
	PG_TRY();
	{
		copy_config(from, to, tracked);
	}
	PG_FINALLY();
	{
		copying = false;
		copy_source = nullptr;
	}
	PG_END_TRY();
	invalidate_cache();
}

static void refuse_distributed(const char *what)
{
	Oid push = get_relname_relid("config_push", get_namespace_oid("leadscore", false));
	if (OidIsValid(push) && citus_table(push))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("leadscore.%s: drafts are not supported once leadscore.distribute() is done", what),
		                errhint("Change the model itself: the change reaches every node in its transaction.")));
}

static const CachedModel *draft_model(const Cache *cache, const char *name)
{
	const CachedModel *draft = known_model(cache, name);
	if (!draft->draft())
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("model \"%s\" is not a draft", name),
		                errhint("leadscore.draft(model) makes a draft of a model.")));
	return draft;
}

// The tracked tables of a draft and of its model must be the same: the states the model keeps are of
// those tables' leads.
static void check_same_tables(const char *draft, const char *model)
{
	run_sql("SELECT FROM ((SELECT relid, role, lead_column, time_column, key_type FROM leadscore.tracked_table "
	        "               WHERE model = $1 "
	        "              EXCEPT SELECT relid, role, lead_column, time_column, key_type FROM leadscore.tracked_table "
	        "               WHERE model = $2) "
	        "   UNION ALL (SELECT relid, role, lead_column, time_column, key_type FROM leadscore.tracked_table "
	        "               WHERE model = $2 "
	        "              EXCEPT SELECT relid, role, lead_column, time_column, key_type FROM leadscore.tracked_table "
	        "               WHERE model = $1)) x",
	        draft, model, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		         errmsg("draft \"%s\" does not track the tables model \"%s\" tracks, as it tracks them", draft, model),
		         errhint("Track (or untrack) the same tables, with the same columns, in both; then publish.")));
}

} // namespace leadscore::pg

using namespace leadscore;
using namespace leadscore::pg;

extern "C" {

LS_FUNCTION(leadscore_publishing);
Datum leadscore_publishing(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(copying);
}

// leadscore.draft(model, draft): a new draft of a live model; returns its name.
LS_FUNCTION(leadscore_draft);
Datum leadscore_draft(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
		        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("leadscore.draft: the model must not be NULL")));
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *draft = PG_ARGISNULL(1) ? psprintf("%s_draft", name) : text_to_cstring(PG_GETARG_TEXT_PP(1));
	spi_connect();
	refuse_distributed("draft");
	const CachedModel *model = known_model(get_cache(), name);
	if (model->draft())
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("model \"%s\" is a draft of model \"%s\": a draft is of a live model", name,
		                       model->draft_of.c_str())));
	if (get_cache()->model_by_name(draft))
		ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT), errmsg("model \"%s\" already exists", draft),
		                errhint("Name the draft: leadscore.draft(model, draft).")));
	// The configuration as its last change committed it: a change in progress (which holds the model's
	// lock until it commits) is waited for; the model's writers are not (a shared lock, as theirs).
	lock_model(model->spec.id, false);
	run_sql("INSERT INTO leadscore.model (name, draft_of) VALUES ($2, $1)", name, draft, SPI_OK_INSERT);
	copy_waiting(name, draft, true);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(draft));
}

// leadscore.publish(draft): the draft's configuration goes live in its model, in one rescoring; the draft
// takes the configuration the model had. Returns the leads rescored.
LS_FUNCTION(leadscore_publish);
Datum leadscore_publish(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	spi_connect();
	refuse_distributed("publish");
	const Cache *cache = get_cache();
	const CachedModel *draft = draft_model(cache, name);
	char *live = pstrdup(draft->draft_of.c_str());
	int live_id = known_model(cache, live)->spec.id, draft_id = draft->spec.id;
	// Both configurations as committed (changes in progress waited for); the model's writers wait for this
	// transaction, as for any change of its configuration.
	lock_model(live_id, true);
	lock_model(draft_id, true);
	AcceptInvalidationMessages();
	cache = get_cache();
	draft = cache->model_by_name(name);
	if (!draft || !draft->draft() || draft->draft_of != live)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("draft \"%s\" changed while leadscore.publish waited for it", name)));
	check_same_tables(name, live);

	// The stage changes time caused so far, recorded under the configuration they happened with; then the
	// swap, through a third row (deleted at the end), with the triggers waiting.
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	(void) advance_stages(GetCurrentTransactionStartTimestamp(), live_id);
	end_as_role(&saved);
	char *held = psprintf("%s (publishing)", name);
	if (cache->model_by_name(held))
		ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT), errmsg("model \"%s\" already exists", held),
		                errhint("leadscore.publish needs the name for a moment: rename that model.")));
	copying = true;
	PG_TRY();
	{
		run_sql("INSERT INTO leadscore.model (name, draft_of) VALUES ($2, $1)", live, held, SPI_OK_INSERT);
	}
	PG_FINALLY();
	{
		copying = false;
	}
	PG_END_TRY();
	copy_waiting(live, held, true);
	copy_waiting(name, live, false);
	copy_waiting(held, name, false);
	copying = true;
	PG_TRY();
	{
		run_sql("DELETE FROM leadscore.model WHERE name = $2", live, held, SPI_OK_DELETE);
	}
	PG_FINALLY();
	{
		copying = false;
	}
	PG_END_TRY();
	invalidate_cache();

	// One rescoring, as the owner (the body of leadscore.recompute): the stage changes it causes are
	// recorded at this transaction's instant.
	as_role(owner, &saved);
	run_sql("SELECT leadscore._is_live($1)", live, live, SPI_OK_SELECT);
	bool isnull;
	bool is_live = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	int64 scored = is_live ? recompute_model(live) : 0;
	end_as_role(&saved);
	SPI_finish();
	PG_RETURN_INT64(scored);
}

// leadscore.preview(draft, as_of): per pair (the lead's stage in the live model at as_of, its stage under
// the draft), the number of leads, of those the caller may read.
LS_FUNCTION(leadscore_preview);
Datum leadscore_preview(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(1);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	spi_connect();
	refuse_distributed("preview");
	const Cache *cache = get_cache();
	const CachedModel *draft = draft_model(cache, name);
	const CachedModel *live = known_model(cache, draft->draft_of.c_str());
	check_read(cache, *live);
	// The draft reads the tracked tables: the caller must be able to.
	for (int t : draft->tables)
		if (pg_class_aclcheck(cache->tables[t].relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			                errmsg("permission denied for table %s", cache->tables[t].name.c_str()),
			                errdetail("leadscore.preview scores the draft from the tables it tracks.")));

	// The live stages the caller sees (as scores_at gives them), with the stored stage and its entry.
	const char *suffix = key_type(live->key).suffix;
	Oid types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum args[2] = {Int32GetDatum(live->spec.id), TimestampTzGetDatum(as_of)};
	char *sql = psprintf("SELECT s.lead, e.stage, s.stage, %2$s FROM leadscore._states_%1$s s "
	                     "CROSS JOIN LATERAL leadscore._eval(s, $2) e WHERE s.model_id = $1",
	                     suffix, state_features(live->key).state_stage_since ? "s.stage_since" : "NULL::timestamptz");
	if (SPI_execute_with_args(sql, 2, types, args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the stages of model \"%s\"", live->spec.name.c_str());
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;

	// The draft's leads scored from scratch, as the owner (as leadscore.recompute reads), with the live
	// model's engagement resets (the model's leads' resets: the draft would become that model).
	Leads leads;
	leads_init(&leads, cache, draft, CurrentMemoryContext);
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	(void) score_from_scratch(&leads, live->spec.id, false);
	end_as_role(&saved);

	const core::ModelSpec &spec = draft->spec;
	Datum *from = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1))),
		  *to = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	bool *from_nulls = static_cast<bool *>(palloc(sizeof(bool) * (n + 1))),
		 *to_nulls = static_cast<bool *>(palloc(sizeof(bool) * (n + 1)));
	Batch *batch = leads.batch;
	for (uint64 r = 0; r < n; r++) {
		bool isnull;
		Datum key = SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull);
		Datum now_stage = SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &from_nulls[r]);
		from[r] = now_stage;
		char *stage_now = from_nulls[r] ? nullptr : TextDatumGetCString(now_stage);
		bool stored_null;
		Datum stored = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &stored_null);
		bool same = !stored_null && stage_now && strcmp(TextDatumGetCString(stored), stage_now) == 0;
		bool since_null;
		Datum since = SPI_getbinval(rows->vals[r], rows->tupdesc, 4, &since_null);
		int lead = lead_index(&leads, key);
		core::LeadState *state = &batch->states[lead];
		to_nulls[r] = true;
		if (state->empty())
			continue;
		// Under hysteresis the stage depends on the one the lead has (and since when, if it has had it
		// since its stored entry; else unknown: no minimum holds it).
		ls_cpp([&] {
			state->stage = stage_now ? std::optional<std::string>(stage_now) : std::nullopt;
			state->stage_since = same && !since_null ? std::optional<core::Micros>(DatumGetTimestampTz(since))
			                                         : std::nullopt;
		});
		const core::LeadState *at = state;
		if (!core::valid_at(*state, as_of)) {
			ls_cpp([&] { batch->scratch = *state; });
			as_role(owner, &saved);
			rebuild_events(cache, *draft, batch, key, as_of, &batch->scratch, nullptr);
			end_as_role(&saved);
			at = &batch->scratch;
		}
		ls_cpp([&] { batch->result = core::evaluate(spec, *at, as_of); });
		if (batch->result.stage) {
			to_nulls[r] = false;
			to[r] = CStringGetTextDatum(batch->result.stage->c_str());
		}
	}

	// Counted per pair, in the order of the stages (highest first; no stage last).
	Oid count_types[4] = {TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TEXTOID};
	Datum count_args[4] = {make_array(from, from_nulls, (int) n, TEXTOID), make_array(to, to_nulls, (int) n, TEXTOID),
	                       CStringGetTextDatum(live->spec.name.c_str()), CStringGetTextDatum(name)};
	if (SPI_execute_with_args(
			"SELECT u.f, u.t, count(*) FROM unnest($1::text[], $2::text[]) u(f, t) GROUP BY u.f, u.t "
			" ORDER BY (SELECT st.min_score FROM leadscore.stage st WHERE st.model = $3 AND st.name = u.f) DESC NULLS LAST, "
			"          (SELECT st.min_score FROM leadscore.stage st WHERE st.model = $4 AND st.name = u.t) DESC NULLS LAST",
			4, count_types, count_args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not count the stages of draft \"%s\"", name);
	for (uint64 r = 0; r < SPI_processed; r++) {
		Datum values[3];
		bool nulls[3];
		for (int c = 0; c < 3; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
		values[0] = nulls[0] ? (Datum) 0 : PointerGetDatum(DatumGetTextPCopy(values[0]));
		values[1] = nulls[1] ? (Datum) 0 : PointerGetDatum(DatumGetTextPCopy(values[1]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

} // extern "C"
