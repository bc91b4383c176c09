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
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
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
// id, draft_of and state_id), categories, rules, stages, grade bands and inactivity steps; tracked tables too when
// asked (a new draft has none). Runs with copying set; needs an SPI connection.
static void copy_config(const char *from, const char *to, bool tracked)
{
	static const char *const model_skip[] = {"name", "id", "draft_of", "state_id", nullptr};
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


void note_touched(const Leads *leads)
{
	const CachedModel *model = leads->model;
	if (!model->building || leads->n == 0)
		return;
	const KeyType &kt = key_type(model->key);
	Oid types[2] = {INT4OID, get_array_type(kt.type)};
	Datum args[2] = {Int32GetDatum(model->building), key_array(const_cast<Leads *>(leads), nullptr, leads->n)};
	char *sql = psprintf("INSERT INTO leadscore.draft_touch_%s (draft_id, lead) SELECT $1, unnest($2)", kt.suffix);
	if (SPI_execute_with_args(sql, 2, types, args, nullptr, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "leadscore: could not note the leads touched while a draft of model \"%s\" is built",
		     model->spec.name.c_str());
}

// The leads of an array of the key type added to a batch.
static void add_keys(Leads *leads, Datum keys)
{
	const KeyType &kt = key_type(leads->model->key);
	Datum *elems;
	bool *nulls;
	int n;
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(kt.type, &typlen, &byval, &align);
	deconstruct_array(DatumGetArrayTypeP(keys), kt.type, typlen, byval, align, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			(void) lead_index(leads, elems[i]);
}

// Each lead's stage so far (and since when) taken from the state rows numbered old_state_id: of the leads
// `keys` (an array of the key type), or of all if 0 (those read join the batch).
static void read_old_stages(Leads *leads, int old_state_id, Datum keys)
{
	const KeyType &kt = key_type(leads->model->key);
	Oid types[2] = {INT4OID, get_array_type(kt.type)};
	Datum args[2] = {Int32GetDatum(old_state_id), keys};
	char *sql = psprintf("SELECT lead, stage, stage_since FROM leadscore.state_%s WHERE model_id = $1 "
	                     "AND stage IS NOT NULL %s",
	                     kt.suffix, keys ? "AND lead = ANY ($2)" : "");
	if (SPI_execute_with_args(sql, keys ? 2 : 1, types, args, nullptr, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the stages of model \"%s\"", leads->model->spec.name.c_str());
	SPITupleTable *rows = SPI_tuptable;
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull, since_null;
		int lead = lead_index(leads, SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		char *stage = TextDatumGetCString(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
		Datum since = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &since_null);
		Batch *batch = leads->batch;
		ls_cpp([&] {
			batch->old_stage[lead] = std::string(stage);
			if (!since_null)
				batch->states[lead].stage_since = DatumGetTimestampTz(since);
		});
	}
}

// Builds a model's states from scratch, of the leads `keys` (an array of the key type; all if 0): each
// lead's stage so far taken from the state rows numbered old_state_id (the live model's), its engagement
// resets from model resets_of (the live model's id); the model's rows of those leads replaced. Stage
// changes are recorded (at now) for a live model, not for a draft. Returns the leads scored. Needs an SPI
// connection, as the extension's owner.
static int64 build_states(const Cache *cache, const CachedModel *model, int resets_of, int old_state_id, Datum keys,
                          TimestampTz now, bool verbose)
{
	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	const KeyType &kt = key_type(model->key);
	if (keys)
		add_keys(&leads, keys);
	read_old_stages(&leads, old_state_id, keys);
	(void) score_from_scratch(&leads, resets_of, verbose, keys);
	Oid types[2] = {INT4OID, get_array_type(kt.type)};
	Datum args[2] = {Int32GetDatum(model->state_id), keys};
	char *sql = psprintf("DELETE FROM leadscore.state_%s WHERE model_id = $1 %s", kt.suffix,
	                     keys ? "AND lead = ANY ($2)" : "");
	if (SPI_execute_with_args(sql, keys ? 2 : 1, types, args, nullptr, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "leadscore: could not clear the states of model \"%s\"", model->spec.name.c_str());
	write_states(&leads, now, true);
	int64 scored = 0;
	for (int i = 0; i < leads.n; i++)
		scored += leads.batch->states[i].empty() ? 0 : 1;
	return scored;
}

// The stages of the leads `keys` of a model whose state rows were just swapped in, evaluated now after the
// stages the leads had under the old configuration (the rows numbered old_state_id): each change recorded
// now. The rows are read as they are (no event is read again). Returns the leads whose stage changed.
static int64 restage(const Cache *cache, const CachedModel *model, int old_state_id, Datum keys, TimestampTz now)
{
	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	add_keys(&leads, keys);
	Leads *all = &leads;
	lock_states(&all, 1);
	read_states(&leads, ReadMode::Locked);
	Batch *batch = leads.batch;
	ls_cpp([&] {
		for (int i = 0; i < leads.n; i++) {
			batch->old_stage[i] = std::nullopt;
			batch->states[i].stage_since = std::nullopt;
		}
	});
	read_old_stages(&leads, old_state_id, keys);
	write_states(&leads, now, false);
	return leads.n;
}

// A digest of a model's configuration (and of the trained models rules may use): what the build of a
// draft was made with, compared when its states are swapped in.
static char *config_digest(const char *model)
{
	run_sql("SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM ("
	        " SELECT m::text FROM leadscore.model m WHERE m.name = $1"
	        " UNION ALL SELECT t::text FROM leadscore.tracked_table t WHERE t.model = $1"
	        " UNION ALL SELECT c::text FROM leadscore.category c WHERE c.model = $1"
	        " UNION ALL SELECT r::text FROM leadscore.rule r WHERE r.model = $1"
	        " UNION ALL SELECT s::text FROM leadscore.stage s WHERE s.model = $1"
	        " UNION ALL SELECT b::text FROM leadscore.grade_band b WHERE b.model = $1"
	        " UNION ALL SELECT i::text FROM leadscore.inactivity_rule i WHERE i.model = $1"
	        " UNION ALL SELECT p.name || ' ' || p.version FROM leadscore.predictive_model p) d(x)",
	        model, model, SPI_OK_SELECT);
	char *digest = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return digest ? digest : pstrdup("");
}

// The leads a draft's writers noted, taken off the list: an array of the key type, or 0 if none.
static Datum take_touched(const CachedModel *draft, int *n)
{
	const KeyType &kt = key_type(draft->key);
	Oid types[1] = {INT4OID};
	Datum args[1] = {Int32GetDatum(draft->spec.id)};
	char *sql = psprintf("WITH d AS (DELETE FROM leadscore.draft_touch_%s WHERE draft_id = $1 RETURNING lead) "
	                     "SELECT array_agg(DISTINCT lead), count(DISTINCT lead) FROM d",
	                     kt.suffix);
	if (SPI_execute_with_args(sql, 1, types, args, nullptr, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the leads touched meanwhile");
	bool isnull;
	*n = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	Datum keys = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(keys));
}

static double seconds_since(TimestampTz start)
{
	long secs;
	int usecs;
	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	return secs + usecs / 1e6;
}

// The configurations of a live model and of its draft swapped, through a third row (deleted at the end),
// with the configuration triggers waiting. With states, the state rows too (publish_concurrently).
static void swap_configs(const Cache *cache, const char *live, const char *draft, bool states = false)
{
	char *held = psprintf("%s (publishing)", draft);
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
	copy_waiting(draft, live, false);
	copy_waiting(held, draft, false);
	copying = true;
	PG_TRY();
	{
		run_sql("DELETE FROM leadscore.model WHERE name = $2", live, held, SPI_OK_DELETE);
		if (states)
			run_sql("UPDATE leadscore.model m SET state_id = o.state_id FROM leadscore.model o "
			        " WHERE (m.name, o.name) IN (($1, $2), ($2, $1))",
			        live, draft, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		copying = false;
	}
	PG_END_TRY();
	invalidate_cache();
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
	swap_configs(cache, live, name);

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


// CALL leadscore.publish_concurrently(draft): publish without holding the model's writers for the
// rescoring. (1) A row in leadscore.draft_build, once every writer in flight has ended (the model's lock,
// a moment): from then on the writers note the leads they touch. (2) The draft's states built from
// scratch, beside the model's (the draft's state_id), in a transaction of their own: the writers go on.
// (3) The leads noted meanwhile built again, in rounds, while many are noted. (4) One last transaction,
// under the model's lock: the last leads noted, the stage changes time caused under the old
// configuration, the leads whose stage the draft changes (or whose live stage moved) scored again with
// that change recorded now; the configurations and the state rows swapped. (5) The old state rows
// deleted, in batches. Each lead is read under the old configuration until (4) commits, under the new one
// after.
// Each step of publish_concurrently, between two commits, runs in a subtransaction: one that fails (an
// error, a cancel, a timeout) is rolled back alone, and the build it belonged to is removed, in a
// transaction of its own, before the error goes on: the model's writers stop noting the leads they touch,
// the draft keeps no half-built states.
static volatile bool in_step = false;

static void step_begin(MemoryContext cxt)
{
	BeginInternalSubTransaction(nullptr);
	MemoryContextSwitchTo(cxt);
	in_step = true;
}

static void step_commit(MemoryContext cxt)
{
	in_step = false;
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	SPI_commit();
	step_begin(cxt);
}

static void remove_build(int draft_id, int live_id, const char *suffix, Oid owner)
{
	// The model's writers in flight (which may still note leads) end first; those after it know the build
	// is gone.
	lock_model(live_id, true);
	RoleSwitch saved;
	as_role(owner, &saved);
	Oid int4 = INT4OID;
	Datum id = Int32GetDatum(draft_id);
	const char *sqls[3] = {"DELETE FROM leadscore.draft_build WHERE draft_id = $1",
	                       psprintf("DELETE FROM leadscore.draft_touch_%s WHERE draft_id = $1", suffix),
	                       psprintf("DELETE FROM leadscore.state_%s WHERE model_id = "
	                                "(SELECT state_id FROM leadscore.model WHERE id = $1 AND draft_of IS NOT NULL)",
	                                suffix)};
	for (const char *sql : sqls)
		if (SPI_execute_with_args(sql, 1, &int4, &id, nullptr, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "leadscore: could not remove the build of a draft");
	end_as_role(&saved);
	invalidate_cache();
}

// After an error in a step: the step rolled back, the build removed (committed), the lock let go.
static void stop_build(const LOCKTAG *tag, int draft_id, int live_id, const char *suffix, Oid owner, MemoryContext cxt)
{
	PG_TRY();
	{
		if (in_step) {
			in_step = false;
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			remove_build(draft_id, live_id, suffix, owner);
			SPI_commit();
		}
	}
	PG_CATCH();
	{
		LockRelease(tag, ExclusiveLock, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	LockRelease(tag, ExclusiveLock, true);
}

LS_FUNCTION(leadscore_publish_concurrently);
Datum leadscore_publish_concurrently(PG_FUNCTION_ARGS)
{
	bool atomic = !(fcinfo->context && IsA(fcinfo->context, CallContext)) ||
	              castNode(CallContext, fcinfo->context)->atomic;
	if (atomic)
		ereport(ERROR, (errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
		                errmsg("leadscore.publish_concurrently cannot run inside a transaction block"),
		                errhint("CALL it on its own: it commits as it goes. leadscore.publish(draft) publishes in "
		                        "one transaction.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
		                errmsg("leadscore.publish_concurrently: the draft must not be NULL")));
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	// In the procedure's memory, which outlives its transactions.
	MemoryContext cxt = CurrentMemoryContext;
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	refuse_distributed("publish_concurrently");
	const Cache *cache = get_cache();
	const CachedModel *draft = draft_model(cache, name);
	char *live = pstrdup(draft->draft_of.c_str());
	char *suffix = pstrdup(key_type(draft->key).suffix);
	int live_id = known_model(cache, live)->spec.id, draft_id = draft->spec.id;
	Oid owner = extension_owner();
	// One publish of a draft at a time: a lock of the session, until the end.
	LOCKTAG tag;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0x6c656164, (uint32) draft_id, 3);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR, (errcode(ERRCODE_LOCK_NOT_AVAILABLE),
		                errmsg("draft \"%s\" is being published by another session", name)));
	TimestampTz started = GetCurrentTimestamp();
	step_begin(cxt);
	PG_TRY();
	{
		// (1) The draft's configuration as committed; the writers in flight waited for.
		check_same_tables(name, live);
		RoleSwitch saved;
		as_role(owner, &saved);
		char *digest = MemoryContextStrdup(cxt, config_digest(name));
		Oid int4s[2] = {INT4OID, INT4OID};
		Datum ids[2] = {Int32GetDatum(draft_id), Int32GetDatum(live_id)};
		if (SPI_execute_with_args("DELETE FROM leadscore.draft_build WHERE draft_id = $1", 1, int4s, ids, nullptr,
		                          false, 0) != SPI_OK_DELETE ||
		    SPI_execute_with_args("INSERT INTO leadscore.draft_build (draft_id, model_id) VALUES ($1, $2)", 2, int4s,
		                          ids, nullptr, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "leadscore: could not start the build of draft \"%s\"", name);
		int ignored;
		(void) take_touched(draft, &ignored);
		end_as_role(&saved);
		invalidate_cache();
		lock_model(live_id, true);
		step_commit(cxt);

		// (2) The draft's states, from scratch.
		cache = get_cache();
		draft = cache->model_by_id(draft_id);
		const CachedModel *model = cache->model_by_id(live_id);
		if (!draft || !model)
			ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			                errmsg("draft \"%s\" or its model went while leadscore.publish_concurrently ran", name)));
		as_role(owner, &saved);
		TimestampTz phase = GetCurrentTimestamp();
		int64 built = build_states(cache, draft, live_id, model->state_id, (Datum) 0,
		                           GetCurrentTransactionStartTimestamp(), true);
		end_as_role(&saved);
		ereport(NOTICE, (errmsg("draft \"%s\": " INT64_FORMAT " leads scored in %.1f s, beside the model's", name,
		                        built, seconds_since(phase))));
		step_commit(cxt);

		// (3) The leads touched meanwhile, again, while there are many.
		for (int round = 0; round < 5; round++) {
			cache = get_cache();
			draft = cache->model_by_id(draft_id);
			model = cache->model_by_id(live_id);
			if (!draft || !model)
				ereport(ERROR,
				        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				         errmsg("draft \"%s\" or its model went while leadscore.publish_concurrently ran", name)));
			as_role(owner, &saved);
			int n;
			Datum keys = take_touched(draft, &n);
			if (keys)
				(void) build_states(cache, draft, live_id, model->state_id, keys, GetCurrentTransactionStartTimestamp(),
				                    false);
			end_as_role(&saved);
			step_commit(cxt);
			if (n < 1000)
				break;
		}

		// (4) The swap, under the model's lock (its writers wait from here).
		lock_model(live_id, true);
		lock_model(draft_id, true);
		AcceptInvalidationMessages();
		TimestampTz held_from = GetCurrentTimestamp();
		cache = get_cache();
		draft = cache->model_by_id(draft_id);
		model = cache->model_by_id(live_id);
		if (!draft || !model || !draft->draft() || draft->draft_of != live)
			ereport(ERROR,
			        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			         errmsg("draft \"%s\" or its model changed while leadscore.publish_concurrently ran", name)));
		check_same_tables(name, live);
		as_role(owner, &saved);
		if (strcmp(config_digest(name), digest) != 0)
			ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			                errmsg("draft \"%s\" changed while leadscore.publish_concurrently built it", name),
			                errhint("Publish it again.")));
		run_sql("SELECT FROM leadscore.draft_build WHERE draft_id = (SELECT id FROM leadscore.model WHERE name = $1)",
		        name, name, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ereport(ERROR,
			        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			         errmsg("model \"%s\" was recomputed while leadscore.publish_concurrently built draft \"%s\"", live,
			                name),
			         errdetail("A change of its configuration or of a tracked table (TRUNCATE, a column's type) "
			                   "rescored it."),
			         errhint("Publish it again.")));
		int n;
		Datum keys = take_touched(draft, &n);
		TimestampTz now = GetCurrentTransactionStartTimestamp();
		if (keys)
			(void) build_states(cache, draft, live_id, model->state_id, keys, now, false);
		elog(DEBUG1, "publish_concurrently: %d leads touched caught up at %.3f s", n, seconds_since(held_from));
		// The changes time caused so far, under the old configuration; then the instant of the change: now, or
		// the latest instant a stage was recorded at (history stays in order).
		(void) advance_stages(now, live_id);
		const KeyType &kt = key_type(model->key);
		Oid types[3] = {INT4OID, INT4OID, TIMESTAMPTZOID};
		Datum args[3] = {Int32GetDatum(model->state_id), Int32GetDatum(draft->state_id), TimestampTzGetDatum(now)};
		char *sql = psprintf("SELECT max(stage_at) FROM leadscore.state_%s WHERE model_id = $1", kt.suffix);
		if (SPI_execute_with_args(sql, 1, types, args, nullptr, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "leadscore: could not read the stages of model \"%s\"", live);
		bool isnull;
		Datum latest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			now = Max(now, DatumGetTimestampTz(latest));
		args[2] = TimestampTzGetDatum(now);
		// The leads to score again at the swap: those whose stage the draft gives differs from the model's,
		// whose model's stage moved since the draft read it, or whose stage under the draft is due to change.
		sql = psprintf("SELECT array_agg(coalesce(a.lead, b.lead)) FROM "
		               "  (SELECT lead, stage, stage_since FROM leadscore.state_%1$s WHERE model_id = $1) a "
		               "  FULL JOIN (SELECT lead, stage, stage_since, next_change FROM leadscore.state_%1$s "
		               "              WHERE model_id = $2) b ON b.lead = a.lead "
		               " WHERE a.lead IS NULL OR b.lead IS NULL OR a.stage IS DISTINCT FROM b.stage "
		               "    OR a.stage_since IS DISTINCT FROM b.stage_since OR b.next_change <= $3",
		               kt.suffix);
		if (SPI_execute_with_args(sql, 3, types, args, nullptr, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "leadscore: could not compare the stages of draft \"%s\"", name);
		Datum moved = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		moved = isnull ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(moved));
		elog(DEBUG1, "publish_concurrently: advanced and compared at %.3f s", seconds_since(held_from));
		int old_states = model->state_id;
		end_as_role(&saved);
		// As the caller: its rights on the configuration tables decide.
		swap_configs(cache, live, name, true);
		cache = get_cache();
		model = cache->model_by_id(live_id);
		elog(DEBUG1, "publish_concurrently: swapped at %.3f s", seconds_since(held_from));
		as_role(owner, &saved);
		int64 rescored = moved ? restage(cache, model, old_states, moved, now) : 0;
		run_sql("DELETE FROM leadscore.draft_build WHERE draft_id = (SELECT id FROM leadscore.model WHERE name = $1)",
		        name, name, SPI_OK_DELETE);
		end_as_role(&saved);
		ereport(NOTICE,
		        (errmsg("model \"%s\": the configuration of draft \"%s\" is live; " INT64_FORMAT
		                " leads whose stage moved taken over at the swap, which held the model's writers %.3f s",
		                live, name, rescored, seconds_since(held_from))));
		step_commit(cxt);

		// (5) The old state rows (the draft's now), in batches.
		for (;;) {
			cache = get_cache();
			draft = cache->model_by_id(draft_id);
			if (!draft)
				break;
			as_role(owner, &saved);
			Datum sid = Int32GetDatum(draft->state_id);
			Oid int4 = INT4OID;
			sql = psprintf("DELETE FROM leadscore.state_%1$s WHERE model_id = $1 AND lead IN "
			               "(SELECT lead FROM leadscore.state_%1$s WHERE model_id = $1 LIMIT 10000)",
			               key_type(draft->key).suffix);
			if (SPI_execute_with_args(sql, 1, &int4, &sid, nullptr, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "leadscore: could not delete the old states of model \"%s\"", live);
			uint64 gone = SPI_processed;
			end_as_role(&saved);
			step_commit(cxt);
			if (gone == 0)
				break;
		}
		pfree(digest);
		in_step = false;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		ErrorData *error = CopyErrorData();
		FlushErrorState();
		stop_build(&tag, draft_id, live_id, suffix, owner, cxt);
		ReThrowError(error);
	}
	PG_END_TRY();
	LockRelease(&tag, ExclusiveLock, true);
	ereport(NOTICE, (errmsg("draft \"%s\" published in %.1f s; it holds the configuration model \"%s\" had", name,
	                        seconds_since(started), live)));
	SPI_finish();
	PG_RETURN_VOID();
}

} // extern "C"
