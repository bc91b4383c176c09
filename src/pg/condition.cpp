// Rule conditions: parsed and checked like a CHECK constraint, against the tracked table's columns.
#include "cache.h"

namespace leadscore::pg {

static void refuse(int code, const char *what)
{
	ereport(ERROR, (errcode(code), errmsg("%s", what)));
}

// The condition must be one expression, nothing else: "SELECT <condition>" must be a bare target list.
static Node *parse_condition(const char *sql)
{
	List *stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(stmts) != 1)
		refuse(ERRCODE_SYNTAX_ERROR, "condition must be a single expression");
	Node *stmt = linitial_node(RawStmt, stmts)->stmt;
	if (!IsA(stmt, SelectStmt))
		refuse(ERRCODE_SYNTAX_ERROR, "condition must be a single expression");
	SelectStmt *select = castNode(SelectStmt, stmt);
	if (list_length(select->targetList) != 1 || select->fromClause || select->whereClause || select->groupClause ||
	    select->havingClause || select->windowClause || select->sortClause || select->limitCount ||
	    select->limitOffset || select->lockingClause || select->withClause || select->valuesLists ||
	    select->distinctClause || select->intoClause || select->op != SETOP_NONE)
		refuse(ERRCODE_SYNTAX_ERROR, "condition must be a single expression");
	ResTarget *target = linitial_node(ResTarget, select->targetList);
	if (target->name || target->indirection)
		refuse(ERRCODE_SYNTAX_ERROR, "condition must be a single expression");
	return target->val;
}

static Expr *compile(Relation rel, const char *condition)
{
	char *sql = psprintf("SELECT %s", condition);
	Node *raw = parse_condition(sql);

	ParseState *pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	ParseNamespaceItem *nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, true);
	addNSItemToQuery(pstate, nsitem, true, true, true);

	Node *expr = transformExpr(pstate, raw, EXPR_KIND_OTHER);
	if (pstate->p_hasSubLinks)
		refuse(ERRCODE_FEATURE_NOT_SUPPORTED, "condition must not contain a subquery");
	if (pstate->p_hasAggs)
		refuse(ERRCODE_GROUPING_ERROR, "condition must not contain an aggregate function");
	if (pstate->p_hasWindowFuncs)
		refuse(ERRCODE_WINDOWING_ERROR, "condition must not contain a window function");
	if (pstate->p_hasTargetSRFs || expression_returns_set(expr))
		refuse(ERRCODE_FEATURE_NOT_SUPPORTED, "condition must not return a set");
	if (exprType(expr) != BOOLOID)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("condition must be of type boolean, not type %s", format_type_be(exprType(expr)))));
	assign_expr_collations(pstate, expr);
	if (contain_volatile_functions(expr))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("condition must not call volatile functions"),
		                errhint("A rule's outcome must depend on the row alone.")));
	if (contain_mutable_functions(expr))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("condition must only call immutable functions"),
		                errhint("A function such as now() would make the score depend on when it was computed; "
		                        "decay and inactivity rules handle time.")));
	List *vars = pull_var_clause(expr, 0);
	ListCell *lc;
	foreach (lc, vars) {
		if (lfirst_node(Var, lc)->varattno <= 0)
			refuse(ERRCODE_FEATURE_NOT_SUPPORTED, "condition must only use the table's own columns");
	}
	free_parsestate(pstate);
	return expression_planner((Expr *) expr);
}

Expr *compile_condition(Relation rel, const char *condition, const char *rule, const char *model)
{
	MemoryContext cxt = CurrentMemoryContext;
	Expr *volatile result = NULL;
	// Names resolve the same wherever the rule is compiled (the writer's session, a trigger, a reader):
	// in pg_catalog, then public. Anything else is schema-qualified in the condition. (An override: it
	// also prevails over the one the live trigger runs under.)
	Oid public_oid = get_namespace_oid("public", true);
	OverrideSearchPath path = {OidIsValid(public_oid) ? list_make1_oid(public_oid) : NIL, true, false, 0};
	PushOverrideSearchPath(&path);

	PG_TRY();
	{
		result = compile(rel, condition);
	}
	PG_CATCH();
	{
		// Name the rule in the message: a user editing many rules must see which one is wrong.
		MemoryContextSwitchTo(cxt);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR, (errcode(edata->sqlerrcode),
		                errmsg("rule \"%s\" of model \"%s\": %s", rule, model, edata->message),
		                edata->detail ? errdetail("%s", edata->detail) : 0,
		                edata->hint ? errhint("%s", edata->hint) : 0,
		                errcontext("condition: %s", condition)));
	}
	PG_END_TRY();
	PopOverrideSearchPath();
	return result;
}

} // namespace leadscore::pg
