// Schema changes of tracked tables behave like PostgreSQL's own dependent objects: an ALTER TABLE that
// would break a model's tracking or one of its rules (a renamed or dropped column, a key or time column of
// another type, a column a rule reads of a type its condition no longer fits) is refused at the DDL
// itself, with the model and rule named; one that keeps every rule valid but changes the type of a column
// rescores the models of that table, so that their scores stay exact.
#include "state.h"

extern "C" {
#include "tcop/deparse_utility.h"
}

#include <vector>

namespace leadscore::pg {

int64 recompute_model(const char *name);

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

static bool changes_a_type(CollectedCommand *cmd)
{
	ListCell *lc;
	foreach (lc, cmd->d.alterTable.subcmds) {
		CollectedATSubcmd *sub = static_cast<CollectedATSubcmd *>(lfirst(lc));
		if (IsA(sub->parsetree, AlterTableCmd) && castNode(AlterTableCmd, sub->parsetree)->subtype == AT_AlterColumnType)
			return true;
	}
	return false;
}

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

// ddl_command_end for ALTER TABLE.
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
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
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
		CollectedCommand *cmd =
			reinterpret_cast<CollectedCommand *>(DatumGetPointer(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull)));
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
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "leadscore: SPI_connect failed");
		(void) recompute_model(model);
		SPI_finish();
		end_as_role(&saved);
	}
	PG_RETURN_VOID();
}

} // extern "C"
