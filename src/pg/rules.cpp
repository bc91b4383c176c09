// The rule engine: a rule's condition compiled like a CHECK constraint, against the tracked table's columns,
// with the rights of the rule's author (docs/security.md describes the model this enforces), and evaluated
// on the rows of the table, as its author, into the matches and fit values the core scores.
#include "state.h"
#include "predict/predict.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
}

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

// ------------------------------------------------------------------------------------------------
// What a condition may call: a function (or the function behind an operator or cast) owned by a
// superuser (every built-in one is) or by the author itself, that the author may execute, outside any
// temporary schema. A function of another role could be replaced by that role at any time, and would
// then run with the author's rights; a temporary one goes with its session.

struct TrustCheck {
	Oid author;
};

static const char *role_name(Oid role)
{
	const char *name = GetUserNameFromId(role, true);
	return name ? name : psprintf("(dropped role %u)", role);
}

static void check_function(Oid funcid, TrustCheck *check)
{
	HeapTuple tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "leadscore: cache lookup failed for function %u", funcid);
	Form_pg_proc proc = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tuple));
	Oid owner = proc->proowner, nsp = proc->pronamespace;
	ReleaseSysCache(tuple);
	const char *name = format_procedure_qualified(funcid);
	if (isAnyTempNamespace(nsp))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("condition must not call function %s, a temporary object", name),
		                errhint("A rule outlives the session that wrote it.")));
	if (owner != check->author && !superuser_arg(owner))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("condition must not call function %s: it belongs to role \"%s\", neither the "
		                       "rule's author \"%s\" nor a superuser",
		                       name, role_name(owner), role_name(check->author)),
		                errhint("Its owner could change it at any time, and it would then run with the author's "
		                        "rights. Use a function of your own or one a superuser owns.")));
	if (pg_proc_aclcheck(funcid, check->author, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("permission denied for function %s: role \"%s\" may not execute it", name,
		                       role_name(check->author))));
}

static bool check_function_cb(Oid funcid, void *context)
{
	check_function(funcid, static_cast<TrustCheck *>(context));
	return false;
}

// A type named by the condition (a cast, a constant): not temporary; a domain's CHECK constraints run
// like functions, so a domain is trusted as a function is.
static void check_type(Oid type, TrustCheck *check)
{
	if (!OidIsValid(type))
		return;
	HeapTuple tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "leadscore: cache lookup failed for type %u", type);
	Form_pg_type form = reinterpret_cast<Form_pg_type>(GETSTRUCT(tuple));
	Oid owner = form->typowner, nsp = form->typnamespace;
	bool domain = form->typtype == TYPTYPE_DOMAIN;
	ReleaseSysCache(tuple);
	if (isAnyTempNamespace(nsp))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("condition must not use type %s, a temporary object", format_type_be(type))));
	if (domain && owner != check->author && !superuser_arg(owner))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("condition must not use domain %s: it belongs to role \"%s\", neither the rule's "
		                       "author \"%s\" nor a superuser",
		                       format_type_be(type), role_name(owner), role_name(check->author))));
}

static void check_operator(Oid opno)
{
	HeapTuple tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	if (!HeapTupleIsValid(tuple))
		return;
	Oid nsp = reinterpret_cast<Form_pg_operator>(GETSTRUCT(tuple))->oprnamespace;
	ReleaseSysCache(tuple);
	if (isAnyTempNamespace(nsp))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("condition must not use operator %s, a temporary object", format_operator(opno))));
}

static bool trust_walker(Node *node, void *context)
{
	TrustCheck *check = static_cast<TrustCheck *>(context);
	if (!node)
		return false;
	if (IsA(node, OpExpr) || IsA(node, DistinctExpr) || IsA(node, NullIfExpr))
		set_opfuncid(reinterpret_cast<OpExpr *>(node));
	else if (IsA(node, ScalarArrayOpExpr))
		set_sa_opfuncid(reinterpret_cast<ScalarArrayOpExpr *>(node));
	(void) check_functions_in_node(node, check_function_cb, check);
	switch (nodeTag(node)) {
	case T_OpExpr:
	case T_DistinctExpr:
	case T_NullIfExpr:
		check_operator(reinterpret_cast<OpExpr *>(node)->opno);
		break;
	case T_ScalarArrayOpExpr:
		check_operator(reinterpret_cast<ScalarArrayOpExpr *>(node)->opno);
		break;
	case T_Const:
	case T_FuncExpr:
	case T_RelabelType:
	case T_CoerceViaIO:
	case T_ArrayCoerceExpr:
	case T_CoerceToDomain:
	case T_RowExpr:
	case T_ConvertRowtypeExpr:
	case T_ArrayExpr:
		check_type(exprType(node), check);
		break;
	default:
		break;
	}
	return expression_tree_walker(node, reinterpret_cast<bool (*)()>(reinterpret_cast<void (*)()>(trust_walker)),
	                              context);
}

// The author may read every column the condition reads.
static void check_columns(Relation rel, Node *expr, Oid author)
{
	Oid relid = RelationGetRelid(rel);
	if (pg_class_aclcheck(relid, author, ACL_SELECT) == ACLCHECK_OK)
		return;
	List *vars = pull_var_clause(expr, 0);
	ListCell *lc;
	foreach (lc, vars) {
		AttrNumber attno = lfirst_node(Var, lc)->varattno;
		if (attno > 0 && pg_attribute_aclcheck(relid, attno, author, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			                errmsg("permission denied for column \"%s\" of table %s: role \"%s\" may not read it",
			                       get_attname(relid, attno, false),
			                       quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
			                                                  RelationGetRelationName(rel)),
			                       role_name(author)),
			                errhint("A condition reads only the columns its author may SELECT.")));
	}
}

static Expr *compile(Relation rel, const char *condition, Oid author, bool legacy)
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
	List *vars = pull_var_clause(expr, 0);
	ListCell *lc;
	foreach (lc, vars) {
		if (lfirst_node(Var, lc)->varattno <= 0)
			refuse(ERRCODE_FEATURE_NOT_SUPPORTED, "condition must only use the table's own columns");
	}
	// Rights first, before the planner runs anything (it evaluates immutable calls on constants).
	TrustCheck check{author};
	if (!legacy) {
		check_columns(rel, expr, author);
		(void) trust_walker(expr, &check);
	}
	if (contain_volatile_functions(expr))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("condition must not call volatile functions"),
		                errhint("A rule's outcome must depend on the row alone.")));
	if (contain_mutable_functions(expr))
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("condition must only call immutable functions"),
		         errhint("A function such as now() would make the score depend on when it was computed; "
		                 "decay and inactivity rules handle time.")));
	free_parsestate(pstate);
	Expr *planned = expression_planner((Expr *) expr);
	// Inlined SQL functions bring their bodies' calls: the same rules hold for them.
	if (!legacy)
		(void) trust_walker(reinterpret_cast<Node *>(planned), &check);
	return planned;
}

void become_author(Oid author, const RoleSwitch *saved)
{
	SetUserIdAndSecContext(author, saved->sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
}

void as_author(Oid author, RoleSwitch *saved)
{
	GetUserIdAndSecContext(&saved->user, &saved->sec);
	become_author(author, saved);
}

void end_as_author(const RoleSwitch *saved)
{
	SetUserIdAndSecContext(saved->user, saved->sec);
}

void as_role(Oid role, RoleSwitch *saved)
{
	GetUserIdAndSecContext(&saved->user, &saved->sec);
	SetUserIdAndSecContext(role, saved->sec | SECURITY_LOCAL_USERID_CHANGE);
	OverrideSearchPath path = {NIL, true, false, 0};
	PushOverrideSearchPath(&path);
}

void end_as_role(const RoleSwitch *saved)
{
	PopOverrideSearchPath();
	SetUserIdAndSecContext(saved->user, saved->sec);
}

Expr *compile_condition(Relation rel, const char *condition, const char *rule, const char *model, Oid author,
                        bool legacy)
{
	MemoryContext cxt = CurrentMemoryContext;
	Expr *volatile result = NULL;
	// Names resolve in pg_catalog alone, wherever the rule is compiled (the writer's session, a trigger, a
	// reader): an object created in public, pg_temp or any other schema cannot take over a call. Anything
	// else is schema-qualified in the condition. (An override also prevails over the search path of the
	// functions the condition calls.) The whole compilation runs as the author, in a security-restricted
	// operation: the parser and planner may run code (domain checks, immutable calls on constants).
	if (!OidIsValid(author) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(author)))
		ereport(ERROR,
		        (errcode(ERRCODE_UNDEFINED_OBJECT),
		         errmsg("rule \"%s\" of model \"%s\": its author (role %u) no longer exists", rule, model, author),
		         errhint("A superuser may give the rule another author (UPDATE leadscore.rule SET author = ...), "
		                 "or a role with the rights may write the rule again.")));
	// A schema older than 1.4 (the library installed, ALTER EXTENSION UPDATE not run yet) keeps its rules
	// as they were written: pg_catalog then public, no check of rights; the update checks them all.
	Oid public_oid = legacy ? get_namespace_oid("public", true) : InvalidOid;
	OverrideSearchPath path = {OidIsValid(public_oid) ? list_make1_oid(public_oid) : NIL, true, false, 0};
	PushOverrideSearchPath(&path);
	RoleSwitch saved;
	as_author(author, &saved);

	PG_TRY();
	{
		result = compile(rel, condition, author, legacy);
	}
	PG_CATCH();
	{
		// Name the rule in the message: a user editing many rules must see which one is wrong.
		end_as_author(&saved);
		MemoryContextSwitchTo(cxt);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
		        (errcode(edata->sqlerrcode), errmsg("rule \"%s\" of model \"%s\": %s", rule, model, edata->message),
		         edata->detail ? errdetail("%s", edata->detail) : 0, edata->hint ? errhint("%s", edata->hint) : 0,
		         errcontext("condition: %s", condition)));
	}
	PG_END_TRY();
	end_as_author(&saved);
	PopOverrideSearchPath();
	return result;
}

// ------------------------------------------------------------------------------------------------
// Evaluation: the compiled conditions of a tracked table's rules on one of its rows, with the rights of
// each rule's author

void evaluate_rules(const TrackedTable &table, const CachedModel &model, Batch *batch, TupleTableSlot *slot,
                    ExprContext *econtext)
{
	size_t n = table.is_lead ? model.spec.lead_rules.size() : model.spec.event_rules.size();
	ls_cpp([&] {
		if (table.is_lead)
			batch->fit.assign(n, 0.0);
		else
			batch->matched.assign(n, false);
	});
	econtext->ecxt_scantuple = slot;
	// Each condition runs with its author's rights alone, in a security-restricted operation: the identity
	// changes when the author does (most models have one), and is restored for predictions and at the end.
	RoleSwitch saved;
	GetUserIdAndSecContext(&saved.user, &saved.sec);
	Oid current = InvalidOid;
	for (const CompiledRule &rule : table.rules) {
		if (rule.author != current) {
			become_author(rule.author, &saved);
			current = rule.author;
		}
		bool isnull;
		Datum d = ExecEvalExprSwitchContext(rule.expr, econtext, &isnull);
		bool holds = !isnull && DatumGetBool(d);
		if (table.is_lead) {
			double value = holds ? 1.0 : 0.0;
			// A predictive rule: its points times the probability the trained model gives the lead row.
			if (holds && rule.predictor) {
				end_as_author(&saved);
				current = InvalidOid;
				bool should_free;
				HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
				value = predict_probability(rule.predictor, tuple, slot->tts_tupleDescriptor);
				if (should_free)
					heap_freetuple(tuple);
			}
			batch->fit[rule.index] = value;
		} else
			batch->matched[rule.index] = holds;
	}
	end_as_author(&saved);
	ResetExprContext(econtext);
}

bool event_time(const TrackedTable &table, TupleTableSlot *slot, std::optional<core::Micros> *at)
{
	*at = std::nullopt;
	if (table.time_attno == 0)
		return true;
	bool isnull;
	Datum d = slot_getattr(slot, table.time_attno, &isnull);
	if (isnull)
		return false;
	// timestamptz and timestamp share one representation; a timestamp is read as UTC.
	int64 t = DatumGetInt64(d);
	if (TIMESTAMP_NOT_FINITE(t))
		return false;
	*at = t;
	return true;
}

char *scan_source(const TrackedTable &table)
{
	bool partitioned = get_rel_relkind(table.relid) == RELKIND_PARTITIONED_TABLE;
	if (scope_active() && citus_table(table.relid)) {
		// In a shard scope, that shard's rows, its columns by name in the table's order (a dropped column: a
		// null): a column dropped before or after distribute() leaves the shard's attribute numbers apart.
		Relation rel = table_open(table.relid, AccessShareLock);
		TupleDesc desc = RelationGetDescr(rel);
		StringInfoData sql;
		initStringInfo(&sql);
		appendStringInfoString(&sql, "(SELECT ");
		for (int i = 0; i < desc->natts; i++) {
			Form_pg_attribute att = TupleDescAttr(desc, i);
			if (i > 0)
				appendStringInfoString(&sql, ", ");
			if (att->attisdropped)
				appendStringInfo(&sql, "NULL AS \"leadscore dropped %d\"", i + 1);
			else
				appendStringInfoString(&sql, quote_identifier(NameStr(att->attname)));
		}
		appendStringInfo(&sql, " FROM ONLY %s)", scoped_name(table.relid));
		table_close(rel, AccessShareLock);
		return sql.data;
	}
	return psprintf("%s%s", partitioned ? "" : "ONLY ", table.name.c_str());
}

void scan_rows(const char *from, Oid relid, void (*each)(HeapTuple tuple, void *arg), void *arg, const char *where,
               Oid param_type, Datum param)
{
	char *sql = psprintf("SELECT t FROM %s t%s%s", from, where ? " WHERE " : "", where ? where : "");
	SPIPlanPtr plan = SPI_prepare(sql, where ? 1 : 0, &param_type);
	if (!plan)
		elog(ERROR, "leadscore: could not prepare \"%s\"", sql);
	// Not read-only: a fresh snapshot, which sees what this transaction and those committed before did.
	Portal portal = SPI_cursor_open(nullptr, plan, where ? &param : nullptr, nullptr, false);
	for (;;) {
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		SPITupleTable *rows = SPI_tuptable; // `each` may run statements of its own
		uint64 n = SPI_processed;
		for (uint64 r = 0; r < n; r++) {
			bool isnull;
			HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
			HeapTupleData tuple;
			row_tuple(row, relid, &tuple);
			each(&tuple, arg);
		}
		SPI_freetuptable(rows);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
}

int row_lead(const TrackedTable &table, Leads *leads, TupleTableSlot *slot)
{
	bool isnull;
	Datum key = slot_getattr(slot, table.key_attno, &isnull);
	std::optional<core::Micros> at;
	if (isnull || (!table.is_lead && !event_time(table, slot, &at)))
		return -1;
	return lead_index(leads, key);
}

void apply_row(const TrackedTable &table, Leads *leads, int lead, TupleTableSlot *slot, ExprContext *econtext, int sign)
{
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	std::optional<core::Micros> at;
	if (!table.is_lead)
		(void) event_time(table, slot, &at);
	evaluate_rules(table, *leads->model, batch, slot, econtext);
	ls_cpp([&] {
		core::LeadState &state = batch->states[lead];
		if (!table.is_lead) {
			if (core::apply_event(spec, state, at, batch->matched, sign))
				batch->rebuild[lead] = 1;
		} else if (sign > 0)
			core::set_lead(spec, state, batch->fit);
		else
			core::clear_lead(spec, state);
	});
}

} // namespace leadscore::pg
