// What leadscore recognises of a Citus cluster (Citus's metadata tables pg_dist_partition and
// pg_dist_shard, read directly: no SQL, no dependency on Citus being installed). leadscore scores local
// tables only: a tracked table, or one of leadscore's own tables, that Citus distributes (or makes a
// reference or Citus local table) is refused with a clear error at the first statement that would score
// it, never scored wrong. Citus copies a distributed table's triggers onto its shards (when
// citus.enable_unsafe_triggers allows them): leadscore's trigger then fires on a shard, a table no model
// tracks, which this file recognises.
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
	                errdetail("leadscore scores local tables only: its state would not follow the rows onto "
	                          "the shards."),
	                errhint("Undistribute it (undistribute_table) or see the Citus section of leadscore's "
	                        "operations guide.")));
}

void refuse_citus_shard(Oid relid)
{
	Oid logical = citus_shard_of(relid);
	if (!OidIsValid(logical))
		return;
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
	                errmsg("leadscore: table %s is distributed with Citus; its shard %s cannot be scored",
	                       qualified_name(logical), qualified_name(relid)),
	                errdetail("leadscore scores local tables only. Its trigger was copied onto the shards of "
	                          "the distributed table, where no model tracks a table."),
	                errhint("Undistribute the table (undistribute_table), or untrack it before distributing "
	                        "it.")));
}

} // namespace leadscore::pg
