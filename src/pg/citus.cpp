// What leadscore knows of a Citus cluster (Citus's metadata tables pg_dist_partition and pg_dist_shard,
// read directly on the write path: no SQL, no dependency on Citus being installed; a missing catalog means
// no Citus), and the work it runs per node (at the end: SQL over Citus's functions).
//
// leadscore.distribute() (the SQL script) distributes the tracked tables and leadscore's per-lead tables
// by the lead, co-located, and copies the configuration to every worker, naming tables by name. Citus
// copies leadscore's triggers onto the shards: a statement on a shard is then scored on the node that
// holds it, in a shard scope (below), into the shards of leadscore's tables that cover the same hash
// range, which are on the same node. A recompute and advance_stages run on every node over its own shards.
// Every other way a Citus table can reach leadscore (tracked without distribute(), distributed by other
// means, a configuration change on a distributed model) is refused with a clear error, never scored wrong.
#include "cache.h"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
}

#include <cstdlib>
#include <cstring>

namespace leadscore::pg {

// The first attribute of a row of Citus's metadata table `table` whose attribute `attno` equals `value`
// (an Oid or an int8, by `proc`), as an Oid; InvalidOid if none or if Citus is not installed.
static Oid citus_lookup(const char *table, AttrNumber attno, RegProcedure proc, Datum value)
{
	Oid relid = get_relname_relid(table, PG_CATALOG_NAMESPACE);
	if (!OidIsValid(relid))
		return InvalidOid;
	Relation rel = table_open(relid, AccessShareLock);
	ScanKeyData key;
	ScanKeyInit(&key, attno, BTEqualStrategyNumber, proc, value);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, 1, &key);
	Oid found = InvalidOid;
	if (HeapTuple tuple = systable_getnext(scan)) {
		bool isnull;
		Datum d = heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull);
		if (!isnull)
			found = DatumGetObjectId(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static char *qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
}

bool citus_table(Oid relid)
{
	return OidIsValid(citus_lookup("pg_dist_partition", 1, F_OIDEQ, ObjectIdGetDatum(relid)));
}

Oid citus_shard_of(Oid relid)
{
	// A shard is named <table>_<shard id> (Citus shortens a name too long for that, keeping the suffix),
	// in its table's schema.
	const char *name = get_rel_name(relid);
	const char *sep = name ? strrchr(name, '_') : nullptr;
	if (!sep || sep[1] == '\0' || strspn(sep + 1, "0123456789") != strlen(sep + 1))
		return InvalidOid;
	int64 shardid = strtoll(sep + 1, nullptr, 10);
	Oid logical = citus_lookup("pg_dist_shard", 2, F_INT8EQ, Int64GetDatum(shardid));
	if (!OidIsValid(logical) || logical == relid || get_rel_namespace(logical) != get_rel_namespace(relid))
		return InvalidOid;
	return logical;
}

void refuse_citus_table(Oid relid, const char *what)
{
	if (!citus_table(relid))
		return;
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
	                errmsg("leadscore: %s %s is a Citus table", what, qualified_name(relid)),
	                errdetail("On a Citus cluster, leadscore scores the shards of the tables that "
	                          "leadscore.distribute() distributed, each from its own trigger, in the shards "
	                          "of leadscore's tables on the same node."),
	                errhint("See the Citus section of leadscore's operations guide.")));
}

void refuse_citus_shard(Oid relid)
{
	Oid logical = citus_shard_of(relid);
	if (!OidIsValid(logical))
		return;
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
	                errmsg("leadscore: table %s is distributed with Citus; its shard %s cannot be scored",
	                       qualified_name(logical), qualified_name(relid)),
	                errdetail("Its trigger was copied onto the shards, where no model tracks the table: a "
	                          "tracked table is distributed by leadscore.distribute(), which also copies the "
	                          "configuration to the workers."),
	                errhint("Undistribute the table (undistribute_table), then CALL leadscore.distribute().")));
}

} // namespace leadscore::pg

namespace leadscore::pg {

// ------------------------------------------------------------------------------------------------
// The shard scope: while a statement on a shard is scored (leadscore.distribute() done), leadscore's
// per-lead tables are read and written through their local shards co-located with it: the shards of the
// same colocation group that cover the same hash range (the same shardminvalue).

static struct {
	bool active = false;
	char *min_value = nullptr; // in TopMemoryContext
	Oid logical[8] = {};       // tables looked up in this scope, and their local shards
	Oid shard[8] = {};
	int n = 0;
} scope;

// The shard id and shardminvalue of a shard (by its id), from pg_dist_shard; false if none.
static bool shard_min_value(int64 shardid, Oid *logical, char **min_value)
{
	Oid relid = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(relid))
		return false;
	Relation rel = table_open(relid, AccessShareLock);
	ScanKeyData key;
	ScanKeyInit(&key, 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(shardid));
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, 1, &key);
	bool found = false;
	if (HeapTuple tuple = systable_getnext(scan)) {
		bool isnull;
		*logical = DatumGetObjectId(heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull));
		Datum min = heap_getattr(tuple, get_attnum(relid, "shardminvalue"), RelationGetDescr(rel), &isnull);
		*min_value = isnull ? nullptr : TextDatumGetCString(min);
		found = !isnull;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

// The shard of `logical` that covers the hash range starting at min_value; InvalidOid if none is local.
static Oid colocated_shard(Oid logical, const char *min_value)
{
	Oid relid = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	Relation rel = table_open(relid, AccessShareLock);
	ScanKeyData key;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(logical));
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, 1, &key);
	Oid found = InvalidOid;
	AttrNumber min_attno = get_attnum(relid, "shardminvalue"); // not the 4th: Citus dropped a column
	while (HeapTuple tuple = systable_getnext(scan)) {
		bool isnull;
		Datum min = heap_getattr(tuple, min_attno, RelationGetDescr(rel), &isnull);
		if (isnull || strcmp(TextDatumGetCString(min), min_value) != 0)
			continue;
		int64 shardid = DatumGetInt64(heap_getattr(tuple, 2, RelationGetDescr(rel), &isnull));
		char name[NAMEDATALEN * 2];
		snprintf(name, sizeof(name), "%s_" INT64_FORMAT, get_rel_name(logical), shardid);
		found = get_relname_relid(name, get_rel_namespace(logical));
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

bool scope_enter(Oid shard_relid)
{
	const char *name = get_rel_name(shard_relid);
	const char *sep = name ? strrchr(name, '_') : nullptr;
	if (!sep)
		return false;
	Oid logical;
	char *min_value;
	if (!shard_min_value(strtoll(sep + 1, nullptr, 10), &logical, &min_value))
		return false;
	scope.min_value = MemoryContextStrdup(TopMemoryContext, min_value);
	scope.n = 0;
	scope.active = true;
	return true;
}

void scope_leave()
{
	if (scope.min_value)
		pfree(scope.min_value);
	scope.min_value = nullptr;
	scope.n = 0;
	scope.active = false;
}

bool scope_active()
{
	return scope.active;
}

Oid scoped_relid(Oid logical)
{
	if (!scope.active)
		return logical;
	for (int i = 0; i < scope.n; i++)
		if (scope.logical[i] == logical)
			return scope.shard[i];
	Oid shard = colocated_shard(logical, scope.min_value);
	if (!OidIsValid(shard))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("leadscore: table %s has no local shard co-located with the shard being scored",
		                       qualified_name(logical)),
		                errhint("leadscore.distribute() co-locates leadscore's tables with the tracked tables.")));
	if (scope.n < 8) {
		scope.logical[scope.n] = logical;
		scope.shard[scope.n++] = shard;
	}
	return shard;
}

char *scoped_name(Oid logical)
{
	return qualified_name(scoped_relid(logical));
}

// Rewrites the names of leadscore's per-lead tables (leadscore.state_<key>, stage_change_<key>,
// stage_notice_<key>, engagement_reset_<key>) in a statement into their shards of the scope.
char *scoped_sql(const char *sql)
{
	if (!scope.active)
		return pstrdup(sql);
	static const char *const bases[] = {"state_", "stage_change_", "stage_notice_", "engagement_reset_"};
	StringInfoData out;
	initStringInfo(&out);
	Oid nsp = get_namespace_oid("leadscore", false);
	const char *p = sql;
	while (const char *hit = strstr(p, "leadscore.")) {
		const char *name = hit + strlen("leadscore.");
		size_t len = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_");
		char table[NAMEDATALEN] = {0};
		bool ours = false;
		if (len < NAMEDATALEN) {
			memcpy(table, name, len);
			for (const char *base : bases)
				ours = ours || strncmp(table, base, strlen(base)) == 0;
		}
		Oid relid = ours ? get_relname_relid(table, nsp) : InvalidOid;
		appendBinaryStringInfo(&out, p, hit - p);
		if (OidIsValid(relid) && citus_table(relid))
			appendStringInfoString(&out, scoped_name(relid));
		else
			appendBinaryStringInfo(&out, hit, strlen("leadscore.") + len);
		p = name + len;
	}
	appendStringInfoString(&out, p);
	return out.data;
}

} // namespace leadscore::pg

namespace leadscore::pg {

Oid citus_state_table(KeyKind kind)
{
	char relname[NAMEDATALEN];
	snprintf(relname, sizeof(relname), "state_%s", key_type(kind).suffix);
	Oid state = get_relname_relid(relname, get_namespace_oid("leadscore", false));
	return OidIsValid(state) && citus_table(state) ? state : InvalidOid;
}

int64 in_shard_scope(Oid shard, int64 (*work)(void *arg), void *arg)
{
	volatile int64 result = 0;
	if (!scope_enter(shard))
		elog(ERROR, "leadscore: %s is not a shard", get_rel_name(shard));
	PG_TRY();
	{
		result = work(arg);
	}
	PG_FINALLY();
	{
		scope_leave();
	}
	PG_END_TRY();
	return result;
}

bool scope_enter_key(KeyKind kind, Datum key, bool here_only)
{
	if (scope.active)
		return false;
	Oid state = citus_state_table(kind);
	if (!OidIsValid(state))
		return false;
	const char *relname = get_rel_name(state);
	// Citus's own hash of the key names the shard (needs an SPI connection).
	Oid argtypes[2] = {REGCLASSOID, key_type(kind).type};
	Datum args[2] = {ObjectIdGetDatum(state), key};
	if (SPI_execute_with_args("SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)", 2, argtypes, args,
	                          nullptr, true, 1) != SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "leadscore: could not find the shard of a lead");
	bool isnull;
	int64 shardid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	char name[NAMEDATALEN * 2];
	snprintf(name, sizeof(name), "%s_" INT64_FORMAT, relname, shardid);
	Oid shard = get_relname_relid(name, get_rel_namespace(state));
	if (!OidIsValid(shard) && !here_only)
		return false;
	if (!OidIsValid(shard))
		ereport(ERROR,
		        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("leadscore: the lead's state is on another node"),
		         errdetail("Reading a lead's score at an instant before its latest event needs its "
		                   "events, read on the node that holds the lead.")));
	return scope_enter(shard);
}

} // namespace leadscore::pg

namespace leadscore::pg {

// ------------------------------------------------------------------------------------------------
// Work per node: a recompute or a run of advance_stages on the coordinator runs on every worker at once
// (run_command_on_workers opens a connection per worker and runs them in parallel), each worker in its own
// transaction, over its own shards, each in the shard's scope.

bool citus_coordinator()
{
	if (SPI_execute("SELECT groupid FROM pg_catalog.pg_dist_local_group", true, 1) != SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "leadscore: could not read this node's Citus group");
	bool isnull;
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) == 0;
}

void refuse_unconfigured_node(const Cache *cache)
{
	static bool configured = false; // once taken, a configuration stays (is_called is never reset)
	if (configured)
		return;
	Oid push = get_relname_relid("config_push", get_namespace_oid("leadscore", false));
	if (!OidIsValid(push) || !citus_table(push))
		return;
	// leadscore._apply_config marks the model sequence called (setval(..., true)) when a node takes a
	// configuration; a node that never took one still has it as CREATE EXTENSION made it.
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	spi_connect();
	if (SPI_execute("SELECT is_called FROM leadscore.model_id_seq", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "leadscore: could not read leadscore.model_id_seq");
	bool isnull;
	configured = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	end_as_role(&saved);
	if (!configured)
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		         errmsg("leadscore: this Citus node has no leadscore configuration yet"),
		         errdetail("It holds shards of leadscore's tables, whose leads would be left out of the answer."),
		         errhint("CALL leadscore.distribute() on the coordinator copies the configuration to every worker "
		                 "(one added since, too).")));
}

Oid *local_shards(Oid logical, int *n)
{
	Oid argtype = OIDOID;
	Datum arg = ObjectIdGetDatum(logical);
	if (SPI_execute_with_args("SELECT s.shardid FROM pg_catalog.pg_dist_shard s "
	                          "JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid "
	                          "WHERE s.logicalrelid = $1 "
	                          "AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group) ORDER BY 1",
	                          1, &argtype, &arg, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not list the local shards of %s", qualified_name(logical));
	*n = (int) SPI_processed;
	Oid *shards = static_cast<Oid *>(palloc(sizeof(Oid) * (*n + 1)));
	for (int i = 0; i < *n; i++) {
		bool isnull;
		int64 shardid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		char name[NAMEDATALEN * 2];
		snprintf(name, sizeof(name), "%s_" INT64_FORMAT, get_rel_name(logical), shardid);
		shards[i] = get_relname_relid(name, get_rel_namespace(logical));
		if (!OidIsValid(shards[i]))
			elog(ERROR, "leadscore: shard %s of %s is not on this node", name, qualified_name(logical));
	}
	return shards;
}

int64 citus_sum_on_workers(const char *command, const char *failure)
{
	Oid argtype = TEXTOID;
	Datum arg = CStringGetTextDatum(command);
	if (SPI_execute_with_args(
			"SELECT coalesce(sum(CASE WHEN w.success THEN w.result::bigint END), 0)::bigint, "
			"       string_agg(CASE WHEN NOT w.success THEN w.nodename || ':' || w.nodeport || ': ' || w.result END, "
			"                  '; ') "
			"FROM pg_catalog.run_command_on_workers($1) w",
			1, &argtype, &arg, nullptr, false, 1) != SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "leadscore: could not run \"%s\" on the workers", command);
	bool isnull;
	int64 sum = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	Datum failed = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE), errmsg("leadscore: %s on a worker", failure),
		                errdetail("%s", TextDatumGetCString(failed)),
		                errhint("Each worker runs in its own transaction: those that succeeded are done (what "
		                        "they did is right whatever follows); run it again once every worker is "
		                        "reachable.")));
	return sum;
}

} // namespace leadscore::pg
