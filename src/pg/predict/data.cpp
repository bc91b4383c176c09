// Reading predictive features and labels out of PostgreSQL values (see data.h).
#include "data.h"

#include <cmath>
#include <cstring>

namespace leadscore::pg {

void copy_pg_error(MemoryContext cxt, CppError *err) noexcept
{
	MemoryContextSwitchTo(cxt);
	ErrorData *edata = CopyErrorData();
	FlushErrorState();
	fill_error(err, unpack_sql_state(edata->sqlerrcode), edata->message ? edata->message : "unknown error");
	FreeErrorData(edata);
}

ColumnKind column_kind(Oid type)
{
	type = getBaseType(type);
	switch (type) {
	case INT2OID:
	case INT4OID:
	case INT8OID:
	case FLOAT4OID:
	case FLOAT8OID:
	case NUMERICOID:
		return ColumnKind::numeric;
	case BOOLOID:
		return ColumnKind::boolean;
	case TEXTOID:
	case VARCHAROID:
	case BPCHAROID:
	case NAMEOID:
		return ColumnKind::categorical;
	default:
		return type_is_enum(type) ? ColumnKind::categorical : ColumnKind::unsupported;
	}
}

const char *feature_kind_name(core::FeatureKind kind)
{
	switch (kind) {
	case core::FeatureKind::numeric:
		return "numeric";
	case core::FeatureKind::boolean:
		return "boolean";
	case core::FeatureKind::categorical:
		return "categorical";
	}
	return "unknown";
}

bool feature_kind_from_name(const char *name, core::FeatureKind *kind)
{
	for (core::FeatureKind k : {core::FeatureKind::numeric, core::FeatureKind::boolean, core::FeatureKind::categorical})
		if (strcmp(name, feature_kind_name(k)) == 0) {
			*kind = k;
			return true;
		}
	return false;
}

void bind_attno(TupleDesc desc, int attno, core::FeatureKind feature, const char *owner, ColumnReader *col)
{
	Form_pg_attribute att = TupleDescAttr(desc, attno - 1);
	col->attno = attno;
	col->type = getBaseType(att->atttypid);
	col->kind = column_kind(att->atttypid);
	col->feature = feature;
	col->name = pstrdup(NameStr(att->attname));
	bool fits = feature == core::FeatureKind::categorical
	                ? col->kind == ColumnKind::categorical
	                : col->kind == ColumnKind::numeric || col->kind == ColumnKind::boolean;
	if (!fits)
		ereport(ERROR,
		        (errcode(ERRCODE_DATATYPE_MISMATCH),
		         errmsg("%s: column \"%s\" has type %s, not a %s type", owner, col->name, format_type_be(att->atttypid),
		                feature_kind_name(feature)),
		         errhint("Features are numeric (smallint, integer, bigint, real, double precision, numeric), "
		                 "boolean, or categorical (text, varchar, char, enum); cast other columns in the query.")));
	if (col->kind == ColumnKind::categorical) {
		Oid out;
		bool varlena;
		getTypeOutputInfo(att->atttypid, &out, &varlena);
		fmgr_info(out, &col->out);
	}
}

bool bind_column(TupleDesc desc, const char *name, core::FeatureKind feature, const char *owner, ColumnReader *col)
{
	for (int i = 0; i < desc->natts; i++) {
		Form_pg_attribute att = TupleDescAttr(desc, i);
		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0) {
			bind_attno(desc, i + 1, feature, owner, col);
			return true;
		}
	}
	return false;
}

void unsupported_number(Oid type)
{
	elog(ERROR, "leadscore: type %u is not numeric", type);
	pg_unreachable();
}

char *read_category(const ColumnReader *col, Datum d)
{
	return (col->type == TEXTOID || col->type == VARCHAROID) ? TextDatumGetCString(d)
	                                                         : OutputFunctionCall(const_cast<FmgrInfo *>(&col->out), d);
}

bool label_type_ok(Oid type)
{
	ColumnKind kind = column_kind(type);
	return kind == ColumnKind::numeric || kind == ColumnKind::boolean;
}

double read_label(const char *name, Oid type, Datum d, bool isnull)
{
	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("label column \"%s\" is NULL in a row", name),
		                errhint("Leave unlabelled leads out of the query, or coalesce the label.")));
	double y = read_number(getBaseType(type), d);
	if (y != 0 && y != 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("label column \"%s\" has value %g, neither 0 nor 1", name, y),
		                errhint("The label says whether the lead converted: boolean, or a number 0 or 1.")));
	return y;
}

double read_score(const char *name, Oid type, Datum d, bool *isnull)
{
	if (*isnull)
		return 0;
	double s = read_number(getBaseType(type), d);
	if (std::isnan(s))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("score column \"%s\" is NaN in a row", name)));
	return s;
}

bool is_select(SPIPlanPtr plan)
{
	List *sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1 || !SPI_is_cursor_plan(plan))
		return false;
	CachedPlanSource *source = static_cast<CachedPlanSource *>(linitial(sources));
	return source->commandTag == CMDTAG_SELECT;
}

void to_core_values(const RawValue *raw, int n, std::vector<core::Value> *values)
{
	values->resize(n);
	for (int i = 0; i < n; i++) {
		core::Value &v = (*values)[i];
		if (raw[i].null)
			v = std::monostate();
		else if (raw[i].str)
			v = std::string(raw[i].str);
		else
			v = raw[i].num;
	}
}

} // namespace leadscore::pg
