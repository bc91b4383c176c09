// Per-backend model cache. Invalidation only marks it stale; a stale cache is retired (kept alive until the
// end of the transaction, since a running trigger may still hold pointers into it) and a new one is loaded.
#include "cache.h"

extern "C" {
#include "utils/syscache.h"
}

#include <cmath>
#include <cstring>

namespace leadscore::pg {

static const KeyType kKeyTypes[kKeyKinds] = {
	{KeyKind::Int4, "int4", INT4OID},
	{KeyKind::Int8, "int8", INT8OID},
	{KeyKind::Uuid, "uuid", UUIDOID},
	{KeyKind::Text, "text", TEXTOID},
};

const KeyType &key_type(KeyKind kind)
{
	return kKeyTypes[static_cast<int>(kind)];
}

static Cache *current = nullptr;
static MemoryContext current_cxt = nullptr;
static bool valid = false;
static MemoryContext retired_cxt = nullptr; // parent of caches that wait for the end of the transaction
static Oid config_relid = InvalidOid;       // leadscore.model: invalidations on it mean "reload"

const CachedModel *Cache::model_by_id(int id) const
{
	for (const auto &m : models)
		if (m.spec.id == id)
			return &m;
	return nullptr;
}

const CachedModel *Cache::model_by_state(int state_id) const
{
	for (const auto &m : models)
		if (m.state_id == state_id)
			return &m;
	return nullptr;
}

const CachedModel *Cache::model_by_name(const char *name) const
{
	for (const auto &m : models)
		if (m.spec.name == name)
			return &m;
	return nullptr;
}

// Counts the invalidations that concern the cache, those that arrive while it loads too (catalog reads
// during a load take invalidation messages in): a load that saw one is not kept as valid.
static uint64 invalidations = 0;

static void relcache_callback(Datum, Oid relid)
{
	if (relid == InvalidOid || relid == config_relid) {
		invalidations++;
		valid = false;
		return;
	}
	if (!valid || !current)
		return;
	for (const auto &t : current->tables)
		if (t.relid == relid)
			valid = false;
	for (Oid &state : current->state_relids) // looked up (and checked) again at the next use
		if (state == relid)
			state = InvalidOid;
	for (Oid watched : current->watched)
		if (watched == relid)
			valid = false;
}

// A change of any function, role, membership or schema may change what a rule's author may run: the
// conditions are compiled (and their rights checked) again at the next use.
static void syscache_callback(Datum, int, uint32)
{
	invalidations++;
	valid = false;
}

static void xact_callback(XactEvent event, void *)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
	    event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE) {
		MemoryContextDeleteChildren(retired_cxt);
		scope_leave();
	}
}

void init_cache()
{
	retired_cxt = AllocSetContextCreate(TopMemoryContext, "leadscore retired caches", ALLOCSET_SMALL_SIZES);
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	for (int id : {PROCOID, AUTHOID, AUTHMEMMEMROLE, NAMESPACEOID, TYPEOID})
		CacheRegisterSyscacheCallback(id, syscache_callback, (Datum) 0);
	RegisterXactCallback(xact_callback, nullptr);
}

Oid state_relid(KeyKind kind)
{
	int k = static_cast<int>(kind);
	char relname[NAMEDATALEN];
	snprintf(relname, sizeof(relname), "state_%s", key_type(kind).suffix);
	if (scope_active()) // a statement on a shard: the state table's shard co-located with it
		return scoped_relid(get_relname_relid(relname, get_namespace_oid("leadscore", false)));
	if (valid && current && OidIsValid(current->state_relids[k]))
		return current->state_relids[k];
	Oid relid = get_relname_relid(relname, get_namespace_oid("leadscore", false));
	// Distributed with Citus, the table here would be an empty shell: never read or written as the state.
	if (OidIsValid(relid))
		refuse_citus_table(relid, "state table");
	if (valid && current)
		current->state_relids[k] = relid;
	return relid;
}

Oid extension_owner()
{
	Oid relid = get_relname_relid("model", get_namespace_oid("leadscore", false));
	HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "leadscore: cache lookup failed for relation %u", relid);
	Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

void invalidate_cache()
{
	valid = false;
	Oid nsp = get_namespace_oid("leadscore", false);
	CacheInvalidateRelcacheByRelid(get_relname_relid("model", nsp));
}

void lock_model(int model_id, bool exclusive)
{
	LOCKTAG tag;
	// Two-key advisory lock space, first key 'lead' in ASCII: pg_advisory_lock(1818583396, model_id).
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0x6c656164, (uint32) model_id, 2);
	(void) LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock, false, false);
}

// ------------------------------------------------------------------------------------------------
// Loading

static char *text_at(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static bool double_at(int row, int col, double *out)
{
	bool isnull;
	Datum d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	if (!isnull)
		*out = DatumGetFloat8(d);
	return !isnull;
}

static void run(const char *sql)
{
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read configuration: %s", sql);
}

static int model_index(Cache *cache, const char *name)
{
	int found = -1;
	for (size_t i = 0; i < cache->models.size(); i++)
		if (cache->models[i].spec.name == name)
			found = (int) i;
	return found;
}

static int category_index(const core::ModelSpec &spec, const char *name)
{
	for (size_t i = 0; i < spec.categories.size(); i++)
		if (spec.categories[i].name == name)
			return (int) i;
	return -1;
}

static void load_models(Cache *cache)
{
	// grace came with 1.1, hot_index with 1.2, stage_exit_margin, stage_min_time and draft_of with 1.6: the
	// library also serves a database not yet updated (a column it lacks reads as its default).
	const SchemaFeatures &f = cache->schema;
	run(psprintf("SELECT id, name, extract(epoch FROM half_life)::float8 * 1e6, floor, ceiling, %s, %s, %s, %s, %s, %s "
	             "  FROM leadscore.model ORDER BY id",
	             f.model_grace ? "(extract(epoch FROM grace) * 1e6)::int8" : "NULL",
	             f.model_hot_index ? "hot_index" : "false", f.model_stage_margin ? "stage_exit_margin" : "0::float8",
	             f.model_stage_min_time ? "(extract(epoch FROM stage_min_time) * 1e6)::int8" : "NULL",
	             f.model_draft ? "draft_of" : "NULL", f.model_draft ? "state_id" : "id"));
	for (uint64 r = 0; r < SPI_processed; r++) {
		int id = atoi(text_at(r, 1));
		const char *name = text_at(r, 2);
		double half_life = 0, floor = 0, ceiling = 0;
		bool has_half_life = double_at(r, 3, &half_life), has_floor = double_at(r, 4, &floor),
			 has_ceiling = double_at(r, 5, &ceiling);
		const char *grace = text_at(r, 6);
		int64 grace_us = grace ? strtoll(grace, nullptr, 10) : 0;
		bool hot_index = strcmp(text_at(r, 7), "t") == 0;
		double margin = 0;
		(void) double_at(r, 8, &margin);
		const char *min_time = text_at(r, 9);
		int64 min_time_us = min_time ? strtoll(min_time, nullptr, 10) : 0;
		const char *draft_of = text_at(r, 10);
		int state_id = atoi(text_at(r, 11));
		ls_cpp([&] {
			CachedModel m;
			m.hot_index = hot_index;
			if (draft_of)
				m.draft_of = draft_of;
			m.state_id = state_id;
			m.spec.id = id;
			m.spec.name = name;
			if (has_half_life)
				m.spec.half_life = half_life;
			if (grace)
				m.spec.grace = grace_us;
			if (has_floor)
				m.spec.floor = floor;
			if (has_ceiling)
				m.spec.ceiling = ceiling;
			m.spec.stage_exit_margin = margin;
			if (min_time)
				m.spec.stage_min_time = min_time_us;
			cache->models.push_back(std::move(m));
		});
	}
}

static void load_tables(Cache *cache)
{
	run("SELECT t.model, t.relid::oid, t.role = 'lead', t.lead_column, t.time_column, "
	    "       leadscore._key_suffix(t.key_type), format('%I.%I', n.nspname, c.relname) "
	    "  FROM leadscore.tracked_table t JOIN pg_class c ON c.oid = t.relid "
	    "  JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY t.model, t.relid");
	for (uint64 r = 0; r < SPI_processed; r++) {
		int model = model_index(cache, text_at(r, 1));
		Oid relid = (Oid) strtoul(text_at(r, 2), NULL, 10);
		bool is_lead = strcmp(text_at(r, 3), "t") == 0;
		char *key_column = text_at(r, 4), *time_column = text_at(r, 5), *suffix = text_at(r, 6), *name = text_at(r, 7);
		AttrNumber key_attno = get_attnum(relid, key_column);
		AttrNumber time_attno = time_column ? get_attnum(relid, time_column) : 0;
		const char *what = is_lead ? "lead key" : "lead";
		if (key_attno == InvalidAttrNumber || (time_column && time_attno == InvalidAttrNumber))
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
			                errmsg("model \"%s\": the %s column \"%s\" of table %s no longer exists", text_at(r, 1),
			                       key_attno == InvalidAttrNumber ? what : "time",
			                       key_attno == InvalidAttrNumber ? key_column : time_column, name),
			                errhint("Rename it back, or untrack the table (leadscore.untrack) first.")));
		int kind = 0;
		while (kind < kKeyKinds && strcmp(kKeyTypes[kind].suffix, suffix) != 0)
			kind++;
		if (model < 0 || kind == kKeyKinds)
			elog(ERROR, "leadscore: inconsistent tracked table %s", name);
		// The columns keep the types they were tracked with: a key read as another type would be a wrong key
		// or a crash, a time of another type no time at all (ALTER TABLE ... TYPE is refused by _on_ddl_end).
		Oid key_type_now = get_atttype(relid, key_attno);
		bool key_ok = key_type_now == kKeyTypes[kind].type ||
		              (kKeyTypes[kind].type == TEXTOID && key_type_now == VARCHAROID);
		Oid time_type_now = time_column ? get_atttype(relid, time_attno) : TIMESTAMPTZOID;
		if (!key_ok || (time_type_now != TIMESTAMPTZOID && time_type_now != TIMESTAMPOID))
			ereport(ERROR,
			        (errcode(ERRCODE_DATATYPE_MISMATCH),
			         errmsg("model \"%s\": the %s column \"%s\" of table %s now has type %s", text_at(r, 1),
			                key_ok ? "time" : what, key_ok ? time_column : key_column, name,
			                format_type_be(key_ok ? time_type_now : key_type_now)),
			         key_ok ? errdetail("A time column is timestamptz or timestamp.")
			                : errdetail("The model's leads are keyed by %s.", format_type_be(kKeyTypes[kind].type)),
			         errhint("Change the type back, or untrack the table (leadscore.untrack) first.")));
		ls_cpp([&] {
			TrackedTable t;
			t.model = model;
			t.relid = relid;
			t.is_lead = is_lead;
			t.key_attno = key_attno;
			t.time_attno = time_attno;
			t.name = name;
			t.key_column = key_column;
			t.time_column = time_column ? time_column : "";
			CachedModel &m = cache->models[model];
			m.key = static_cast<KeyKind>(kind);
			m.tables.push_back((int) cache->tables.size());
			if (is_lead)
				m.lead_table = (int) cache->tables.size();
			cache->tables.push_back(std::move(t));
		});
	}
}

static void load_categories_and_bands(Cache *cache)
{
	run("SELECT model, name, weight, cap FROM leadscore.category ORDER BY model, name");
	for (uint64 r = 0; r < SPI_processed; r++) {
		int model = model_index(cache, text_at(r, 1));
		const char *name = text_at(r, 2);
		double weight = 1, cap = 0;
		double_at(r, 3, &weight);
		bool has_cap = double_at(r, 4, &cap);
		ls_cpp([&] {
			core::CategorySpec c;
			c.name = name;
			c.weight = weight;
			if (has_cap)
				c.cap = cap;
			cache->models[model].spec.categories.push_back(std::move(c));
		});
	}
	run("SELECT model, 'stage', name, min_score FROM leadscore.stage "
	    "UNION ALL SELECT model, axis, name, min_score FROM leadscore.grade_band ORDER BY 1, 2, 4");
	for (uint64 r = 0; r < SPI_processed; r++) {
		int model = model_index(cache, text_at(r, 1));
		const char *axis = text_at(r, 2), *name = text_at(r, 3);
		double min_score = 0;
		double_at(r, 4, &min_score);
		ls_cpp([&] {
			core::ModelSpec &spec = cache->models[model].spec;
			auto &bands = strcmp(axis, "stage") == 0 ? spec.stages
			              : strcmp(axis, "fit") == 0 ? spec.fit_bands
			                                         : spec.engagement_bands;
			bands.push_back(core::Band{name, min_score});
		});
	}
	// A stage's own exit margin and minimum time (1.6).
	if (cache->schema.stage_holds) {
		run("SELECT model, name, exit_margin, (extract(epoch FROM min_time) * 1e6)::int8 FROM leadscore.stage "
		    " WHERE exit_margin IS NOT NULL OR min_time IS NOT NULL ORDER BY model, name");
		for (uint64 r = 0; r < SPI_processed; r++) {
			int model = model_index(cache, text_at(r, 1));
			const char *name = text_at(r, 2);
			double margin = 0;
			bool has_margin = double_at(r, 3, &margin);
			const char *min_time = text_at(r, 4);
			int64 min_time_us = min_time ? strtoll(min_time, nullptr, 10) : 0;
			ls_cpp([&] {
				core::StageHold hold;
				hold.stage = name;
				if (has_margin)
					hold.exit_margin = margin;
				if (min_time)
					hold.min_time = min_time_us;
				cache->models[model].spec.stage_holds.push_back(std::move(hold));
			});
		}
	}
	// Inactivity steps (1.1).
	if (!cache->schema.inactivity_rules)
		return;
	run("SELECT model, name, (extract(epoch FROM after) * 1e6)::int8, points FROM leadscore.inactivity_rule "
	    "ORDER BY model, after");
	for (uint64 r = 0; r < SPI_processed; r++) {
		int model = model_index(cache, text_at(r, 1));
		const char *name = text_at(r, 2);
		int64 after = strtoll(text_at(r, 3), nullptr, 10);
		double points = 0;
		double_at(r, 4, &points);
		ls_cpp([&] { cache->models[model].spec.inactivity.push_back(core::InactivityStep{name, after, points}); });
	}
}

static TrackedTable *table_of(Cache *cache, int model, Oid relid)
{
	for (int t : cache->models[model].tables)
		if (cache->tables[t].relid == relid)
			return &cache->tables[t];
	return nullptr;
}

// Rules are compiled in the cache's memory context. A model's event rules, over all its event tables, are
// numbered in name order: that is the order of the LeadState arrays.
static void load_rules(Cache *cache, MemoryContext cxt)
{
	// Predictors came with 1.1, frequency caps per period with 1.2, authors with 1.4 (the rules of an
	// older schema run as the extension's owner, as they did).
	bool has_predictor = cache->schema.rule_predictor, has_period = cache->schema.rule_period_cap,
		 has_author = cache->schema.rule_author;
	run(psprintf("SELECT model, name, source::oid, condition, points, cap, category, once_per_lead, %s, %s, %s "
	             "  FROM leadscore.rule WHERE enabled ORDER BY model, name",
	             has_predictor ? "predictor" : "NULL",
	             has_period ? "max_per_period, (extract(epoch FROM period) * 1e6)::int8" : "NULL, NULL",
	             has_author ? "author::oid" : "NULL"));
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;
	for (uint64 r = 0; r < n; r++) {
		SPI_tuptable = rows;
		int model = model_index(cache, text_at(r, 1));
		const char *name = text_at(r, 2), *condition = text_at(r, 4), *category = text_at(r, 7);
		Oid relid = (Oid) strtoul(text_at(r, 3), NULL, 10);
		double points = 0, cap = 0;
		double_at(r, 5, &points);
		bool has_cap = double_at(r, 6, &cap);
		bool once = strcmp(text_at(r, 8), "t") == 0;
		const char *predictor = text_at(r, 9);
		const char *max_per_period = text_at(r, 10), *period = text_at(r, 11);
		int64 max_n = max_per_period ? strtoll(max_per_period, nullptr, 10) : 0;
		int64 period_us = period ? strtoll(period, nullptr, 10) : 0;
		const char *author_text = text_at(r, 12);
		Oid author = author_text ? (Oid) strtoul(author_text, NULL, 10) : cache->owner;
		if (predictor)
			predictor = MemoryContextStrdup(cxt, predictor);
		TrackedTable *table = table_of(cache, model, relid);
		if (!table)
			elog(ERROR, "leadscore: rule \"%s\" reads an untracked table", name);
		if (max_n > 0 && table->time_attno == 0)
			ereport(ERROR,
			        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			         errmsg("rule \"%s\" of model \"%s\": a cap per period needs an event table with a time column",
			                name, text_at(r, 1))));
		int category_idx = category ? category_index(cache->models[model].spec, category) : -1;

		Relation rel = table_open(relid, AccessShareLock);
		Expr *expr = compile_condition(rel, condition, name, cache->models[model].spec.name.c_str(), author,
		                               !has_author);
		table_close(rel, AccessShareLock);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		// As the author: the executor checks the right to execute each function here.
		RoleSwitch saved;
		as_author(author, &saved);
		ExprState *state = ExecInitExpr(static_cast<Expr *>(copyObjectImpl(expr)), NULL);
		end_as_author(&saved);
		MemoryContextSwitchTo(old);

		ls_cpp([&] {
			core::RuleSpec rule;
			rule.name = name;
			rule.points = points;
			if (has_cap)
				rule.cap = cap;
			rule.category = category_idx;
			rule.once_per_lead = once;
			rule.max_per_period = max_n;
			rule.period = period_us;
			core::ModelSpec &spec = cache->models[model].spec;
			auto &rules = table->is_lead ? spec.lead_rules : spec.event_rules;
			table->rules.push_back(CompiledRule{(int) rules.size(), state, predictor, author});
			rules.push_back(std::move(rule));
		});
	}
}

static void free_plans(void *arg)
{
	for (const auto &t : static_cast<Cache *>(arg)->tables)
		if (t.scan_plan)
			SPI_freeplan(t.scan_plan);
}

static Cache *load(MemoryContext cxt)
{
	Cache *cache = ls_owned<Cache>(cxt);
	// Registered after the Cache's own deleter, so it runs first (callbacks run in reverse order).
	MemoryContextCallback *cb = static_cast<MemoryContextCallback *>(MemoryContextAlloc(cxt, sizeof(*cb)));
	cb->func = free_plans;
	cb->arg = cache;
	MemoryContextRegisterResetCallback(cxt, cb);
	spi_connect();
	// Read as the extension's owner (whoever the reader is, it may not read the configuration itself), with
	// pg_catalog alone as search path: nothing the reader or another role put in a schema of its path takes
	// part. An error restores both.
	cache->owner = extension_owner();
	cache->schema = probe_schema();
	// leadscore's configuration tables: a change of their shape (an update script adding a column) reloads
	// the cache. (Not the state tables, vacuumed often: their statements follow their shape, state_sql.cpp.)
	Oid nsp = get_namespace_oid("leadscore", false);
	int w = 0;
	for (const char *table : {"rule", "inactivity_rule", "category", "grade_band", "stage", "tracked_table"})
		cache->watched[w++] = get_relname_relid(table, nsp);
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	// The configuration as committed now (and this transaction's own changes), as the catalogs are read, not
	// as the statement's snapshot saw it: a statement that waited for a configuration change (its lock) goes
	// on under the new configuration, which the state rows it then locks are already written with.
	PushActiveSnapshot(GetLatestSnapshot());
	load_models(cache);
	load_tables(cache);
	load_categories_and_bands(cache);
	load_rules(cache, cxt);
	// The drafts publish_concurrently builds: their models' writers note the leads they touch.
	if (cache->schema.draft_build) {
		run("SELECT model_id, draft_id FROM leadscore.draft_build");
		for (uint64 r = 0; r < SPI_processed; r++) {
			int live = atoi(text_at(r, 1)), draft = atoi(text_at(r, 2));
			for (auto &m : cache->models)
				if (m.spec.id == live)
					m.building = draft;
		}
	}
	PopActiveSnapshot();
	end_as_role(&saved);
	for (const auto &m : cache->models)
		ls_cpp([&] { m.spec.validate(); });
	SPI_finish();
	return cache;
}

const CachedModel *known_model(const Cache *cache, const char *name)
{
	const CachedModel *model = cache->model_by_name(name);
	if (!model)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("model \"%s\" does not exist", name)));
	return model;
}

const Cache *get_cache()
{
	if (valid)
		return current;
	if (config_relid == InvalidOid)
		config_relid = get_relname_relid("model", get_namespace_oid("leadscore", false));
	// A configuration change that commits while we load (its invalidation taken in by the load's own catalog
	// reads) may have been missed by the snapshot we load with: load again, a few times at most; if changes
	// keep coming, the cache stays invalid and the next use loads it again.
	for (int attempt = 0; attempt < 3; attempt++) {
		if (current_cxt)
			MemoryContextSetParent(current_cxt, retired_cxt);
		current = nullptr;
		current_cxt = nullptr;
		uint64 seen = invalidations;
		// Loaded under retired_cxt: should loading fail, the half-built cache goes at the end of the transaction.
		MemoryContext cxt = AllocSetContextCreate(retired_cxt, "leadscore model cache", ALLOCSET_DEFAULT_SIZES);
		Cache *cache = load(cxt);
		MemoryContextSetParent(cxt, CacheMemoryContext);
		current = cache;
		current_cxt = cxt;
		valid = seen == invalidations;
		if (valid)
			break;
	}
	return current;
}

} // namespace leadscore::pg
