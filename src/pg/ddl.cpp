// Schema changes of tracked tables behave like PostgreSQL's own dependent objects: an ALTER TABLE that
// would break a model's tracking or one of its rules (a renamed or dropped column, a key or time column of
// another type, a column a rule reads of a type its condition no longer fits) is refused at the DDL
// itself, with the model and rule named; one that keeps every rule valid but changes the type of a column
// rescores the models of that table, so that their scores stay exact.
//
// Partitions of a tracked table: a partition created or attached gets leadscore's triggers (an attached
// one's rows are scored as inserted); one detached or dropped (DROP TABLE, DROP SCHEMA ... CASCADE, DROP
// OWNED) has its rows read at ddl_command_start, while they are there, and scored as deleted at
// ddl_command_end, once they are gone; a detached one loses the triggers. A tracked table cannot become a
// partition, nor a partition be tracked: the statements on the partitioned table would not fire its
// triggers.
#include "state.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "commands/event_trigger.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
}

#include <vector>

namespace leadscore::pg {

// The live models that track relid (a model is live while leadscore's triggers are on all its tables: not
// during a restore, whose post-data ALTER TABLE commands come before the CRM's triggers).
static List *live_models_of(Oid relid, MemoryContext cxt)
{
	Oid types[1] = {OIDOID};
	Datum args[1] = {ObjectIdGetDatum(relid)};
	if (SPI_execute_with_args("SELECT t.model FROM leadscore.tracked_table t "
	                          " WHERE t.relid = $1 AND leadscore._is_live(t.model) ORDER BY t.model",
	                          1, types, args, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read tracked tables");
	List *models = NIL;
	MemoryContext old = MemoryContextSwitchTo(cxt);
	for (uint64 r = 0; r < SPI_processed; r++)
		models = lappend(models, pstrdup(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1)));
	MemoryContextSwitchTo(old);
	return models;
}

void sync_triggers(Oid relid)
{
	Oid regclass = REGCLASSOID;
	Datum arg = ObjectIdGetDatum(relid);
	if (SPI_execute_with_args("SELECT leadscore._sync_triggers($1)", 1, &regclass, &arg, nullptr, false, 0) !=
	    SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not install the triggers of %s", get_rel_name(relid));
}

// A partition created or attached (at any depth under a tracked table): refused if it is, or holds, a
// tracked table; otherwise given leadscore's triggers, and an attached one's rows scored as inserted.
static void partition_joined(Oid relid, bool attached)
{
	Oid oid = OIDOID;
	Datum arg = ObjectIdGetDatum(relid);
	if (SPI_execute_with_args("SELECT format('%s', t.relid::regclass), t.model FROM pg_partition_tree($1) p "
	                          "  JOIN leadscore.tracked_table t ON t.relid = p.relid ORDER BY 1, 2 LIMIT 1",
	                          1, &oid, &arg, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read tracked tables");
	if (SPI_processed > 0)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("table %s is tracked by model \"%s\": it cannot become a partition",
		                       SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
		                       SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
		                errdetail("Statements on the partitioned table do not fire the triggers of its partitions."),
		                errhint("Untrack it (leadscore.untrack), attach it, and track the partitioned table.")));
	if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM pg_partition_ancestors($1) a "
	                          "  JOIN leadscore.tracked_table t ON t.relid = a.relid)",
	                          1, &oid, &arg, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read tracked tables");
	bool isnull;
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return;
	sync_triggers(relid);
	if (!attached)
		return;
	if (SPI_execute_with_args("SELECT relid FROM pg_partition_tree($1) WHERE isleaf ORDER BY relid", 1, &oid, &arg,
	                          nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the partitions of a table");
	List *leaves = NIL;
	for (uint64 r = 0; r < SPI_processed; r++)
		leaves = lappend_oid(leaves,
		                     DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)));
	score_attached_rows(leaves);
}

// Partitions created, attached or detached by the DDL commands of this event (CREATE TABLE ... PARTITION
// OF, ALTER TABLE ... ATTACH / DETACH PARTITION).
static void partitions_changed()
{
	if (SPI_execute("SELECT d.objid, d.command, d.command_tag FROM pg_event_trigger_ddl_commands() d "
	                " WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 "
	                "   AND EXISTS (SELECT FROM leadscore.tracked_table t JOIN pg_class c ON c.oid = t.relid "
	                "                WHERE c.relkind = 'p')",
	                true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the DDL commands");
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;
	for (uint64 r = 0; r < n; r++) {
		bool isnull, cmd_null;
		Oid relid = DatumGetObjectId(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		CollectedCommand *cmd = reinterpret_cast<CollectedCommand *>(
			DatumGetPointer(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &cmd_null)));
		char *tag = SPI_getvalue(rows->vals[r], rows->tupdesc, 3);
		if (strcmp(tag, "CREATE TABLE") == 0 && get_rel_relispartition(relid))
			partition_joined(relid, false);
		if (cmd_null || !cmd || cmd->type != SCT_AlterTable)
			continue;
		ListCell *lc;
		foreach (lc, cmd->d.alterTable.subcmds) {
			CollectedATSubcmd *sub = static_cast<CollectedATSubcmd *>(lfirst(lc));
			if (!IsA(sub->parsetree, AlterTableCmd))
				continue;
			AlterTableCmd *at = castNode(AlterTableCmd, sub->parsetree);
			if (at->subtype != AT_AttachPartition && at->subtype != AT_DetachPartition &&
			    at->subtype != AT_DetachPartitionFinalize)
				continue;
			Oid partition = RangeVarGetRelid(castNode(PartitionCmd, at->def)->name, NoLock, true);
			if (!OidIsValid(partition))
				continue;
			if (at->subtype == AT_AttachPartition)
				partition_joined(partition, true);
			else
				sync_triggers(partition); // no longer under a tracked table: the triggers go
		}
	}
}

static bool changes_a_type(CollectedCommand *cmd)
{
	ListCell *lc;
	foreach (lc, cmd->d.alterTable.subcmds) {
		CollectedATSubcmd *sub = static_cast<CollectedATSubcmd *>(lfirst(lc));
		if (IsA(sub->parsetree, AlterTableCmd) &&
		    castNode(AlterTableCmd, sub->parsetree)->subtype == AT_AlterColumnType)
			return true;
	}
	return false;
}

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

// ddl_command_end for ALTER TABLE, CREATE TABLE, DROP TABLE, DROP SCHEMA and DROP OWNED.
LS_FUNCTION(leadscore_on_ddl_end);
Datum leadscore_on_ddl_end(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "leadscore._on_ddl_end() must be called as an event trigger");
	// leadscore's own tables are read as their owner, names in pg_catalog alone.
	MemoryContext cxt = CurrentMemoryContext; // outlives the SPI connection
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	spi_connect();
	// The rows of the partitions this command detached or dropped, read at its start, scored as deleted.
	score_captured_rows();
	if (SPI_execute("SELECT d.objid, d.command FROM pg_event_trigger_ddl_commands() d "
	                " WHERE d.classid = 'pg_class'::regclass "
	                "   AND EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.relid = d.objid)",
	                true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the DDL commands");
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;
	List *retype = NIL; // models to rescore
	bool any_live = false;
	for (uint64 r = 0; r < n; r++) {
		bool isnull;
		Oid relid = DatumGetObjectId(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		CollectedCommand *cmd = reinterpret_cast<CollectedCommand *>(
			DatumGetPointer(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull)));
		List *models = live_models_of(relid, cxt);
		any_live = any_live || models != NIL;
		if (isnull || !cmd || cmd->type != SCT_AlterTable || !changes_a_type(cmd))
			continue;
		ListCell *lc;
		foreach (lc, models) {
			bool seen = false;
			ListCell *lc2;
			foreach (lc2, retype)
				seen = seen || strcmp(static_cast<char *>(lfirst(lc2)), static_cast<char *>(lfirst(lc))) == 0;
			if (!seen) {
				MemoryContext old = MemoryContextSwitchTo(cxt);
				retype = lappend(retype, lfirst(lc));
				MemoryContextSwitchTo(old);
			}
		}
	}
	partitions_changed();
	SPI_finish();
	end_as_role(&saved);
	if (!any_live)
		PG_RETURN_VOID();
	// Every model compiled again against the tables as they are now: a missing or retyped tracked column,
	// or a rule that no longer compiles, is an error here, and the ALTER TABLE is rolled back.
	invalidate_cache();
	(void) get_cache();
	ListCell *lc;
	foreach (lc, retype) {
		// recompute_model is the body of leadscore.recompute (SECURITY DEFINER): it runs as the owner here too.
		const char *model = static_cast<const char *>(lfirst(lc));
		ereport(NOTICE, (errmsg("leadscore: model \"%s\" rescored after a column changed type", model)));
		as_role(owner, &saved);
		spi_connect();
		(void) recompute_model(model);
		SPI_finish();
		end_as_role(&saved);
	}
	PG_RETURN_VOID();
}

// ddl_command_start for ALTER TABLE (DETACH PARTITION), DROP TABLE, DROP SCHEMA and DROP OWNED: the rows of
// the partitions of tracked tables that are about to leave are read while they are still there; the
// command's ddl_command_end scores them as deleted. A command that fails takes them with it.
LS_FUNCTION(leadscore_on_ddl_start);
Datum leadscore_on_ddl_start(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "leadscore._on_ddl_start() must be called as an event trigger");
	Node *tree = reinterpret_cast<EventTriggerData *>(fcinfo->context)->parsetree;
	List *named = NIL; // the relations, schemas or roles the command names
	const char *which = nullptr;
	bool concurrently = false;
	if (IsA(tree, AlterTableStmt)) {
		AlterTableStmt *stmt = castNode(AlterTableStmt, tree);
		ListCell *lc;
		foreach (lc, stmt->cmds) {
			AlterTableCmd *cmd = castNode(AlterTableCmd, lfirst(lc));
			if (cmd->subtype != AT_DetachPartition)
				continue;
			PartitionCmd *pc = castNode(PartitionCmd, cmd->def);
			Oid relid = RangeVarGetRelid(pc->name, NoLock, true);
			if (OidIsValid(relid))
				named = lappend_oid(named, relid);
			concurrently = concurrently || pc->concurrent;
		}
		which = "a.relid = ANY ($1)";
	} else if (IsA(tree, DropStmt) && castNode(DropStmt, tree)->removeType == OBJECT_TABLE) {
		ListCell *lc;
		foreach (lc, castNode(DropStmt, tree)->objects) {
			Oid relid = RangeVarGetRelid(makeRangeVarFromNameList(castNode(List, lfirst(lc))), NoLock, true);
			if (OidIsValid(relid) && get_rel_relispartition(relid))
				named = lappend_oid(named, relid);
		}
		which = "a.relid = ANY ($1)";
	} else if (IsA(tree, DropStmt) && castNode(DropStmt, tree)->removeType == OBJECT_SCHEMA &&
	           castNode(DropStmt, tree)->behavior == DROP_CASCADE) {
		ListCell *lc;
		foreach (lc, castNode(DropStmt, tree)->objects) {
			Oid nsp = get_namespace_oid(strVal(lfirst(lc)), true);
			if (OidIsValid(nsp))
				named = lappend_oid(named, nsp);
		}
		which = "c.relnamespace = ANY ($1)";
	} else if (IsA(tree, DropOwnedStmt)) {
		ListCell *lc;
		foreach (lc, castNode(DropOwnedStmt, tree)->roles) {
			Oid role = get_rolespec_oid(static_cast<RoleSpec *>(lfirst(lc)), true);
			if (OidIsValid(role))
				named = lappend_oid(named, role);
		}
		which = "c.relowner = ANY ($1)";
	}
	if (named == NIL)
		PG_RETURN_VOID();

	// The DDL's own locks, parent first, before the rows are read: a partition named by DROP TABLE or
	// DETACH PARTITION and the table it is a partition of.
	if (IsA(tree, AlterTableStmt) || (IsA(tree, DropStmt) && castNode(DropStmt, tree)->removeType == OBJECT_TABLE)) {
		ListCell *lc;
		foreach (lc, named) {
			if (!get_rel_relispartition(lfirst_oid(lc)))
				continue;
			LockRelationOid(get_partition_parent(lfirst_oid(lc), true), AccessExclusiveLock);
			LockRelationOid(lfirst_oid(lc), AccessExclusiveLock);
		}
	}
	Oid owner = extension_owner();
	RoleSwitch saved;
	as_role(owner, &saved);
	spi_connect();
	Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * list_length(named)));
	int k = 0;
	ListCell *lc;
	foreach (lc, named)
		elems[k++] = ObjectIdGetDatum(lfirst_oid(lc));
	Datum arg = PointerGetDatum(construct_array(elems, k, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	Oid type = OIDARRAYOID;
	// The leaves under the tracked tables (not the tracked tables themselves) that the command removes: each
	// leaf once, however many of its ancestors the command names.
	char *sql = psprintf("SELECT DISTINCT l.relid FROM (SELECT DISTINCT relid FROM leadscore.tracked_table) t "
	                     " CROSS JOIN LATERAL pg_partition_tree(t.relid) l "
	                     " WHERE l.isleaf AND l.relid <> t.relid AND EXISTS ("
	                     "   SELECT FROM pg_partition_ancestors(l.relid) a JOIN pg_class c ON c.oid = a.relid "
	                     "    WHERE a.relid <> t.relid AND %s) ORDER BY 1",
	                     which);
	if (SPI_execute_with_args(sql, 1, &type, &arg, nullptr, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the partitions of tracked tables");
	if (SPI_processed > 0 && concurrently)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("DETACH PARTITION CONCURRENTLY is not supported on a table leadscore tracks"),
		                errdetail("The detached rows are scored as deleted in the transaction that detaches them."),
		                errhint("Detach it without CONCURRENTLY.")));
	SPITupleTable *leaves = SPI_tuptable;
	uint64 n = SPI_processed;
	forget_captured_rows();
	for (uint64 r = 0; r < n; r++) {
		bool isnull;
		capture_partition_rows(DatumGetObjectId(SPI_getbinval(leaves->vals[r], leaves->tupdesc, 1, &isnull)));
	}
	SPI_finish();
	end_as_role(&saved);
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
	spi_connect();
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
