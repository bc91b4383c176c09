// Reading predictive features and labels out of PostgreSQL values: which SQL types are numeric, boolean or
// categorical, and the conversion of one value, on the PostgreSQL side (plain C data, may raise an ERROR),
// then into core values on the C++ side. Shared by training, prediction and the quality functions.
#pragma once

#include "../pg_call.h"

#include "../../core/metrics.h"
#include "../../core/train.h"

#include <cstring>
#include <vector>

namespace leadscore::pg {

// ls_cpp for long C++ work that polls QueryCancelPending: when it stopped on a cancel, PostgreSQL raises its
// own error (statement timeout, user request, shutdown) rather than the core's generic one.
template <typename F>
void ls_cpp_cancellable(F &&f)
{
	CppError err;
	if (try_cpp(f, &err)) {
		CHECK_FOR_INTERRUPTS();
		return;
	}
	if (strcmp(err.sqlstate, "57014") == 0)
		CHECK_FOR_INTERRUPTS();
	raise_error(&err);
}

enum class ColumnKind { numeric, boolean, categorical, unsupported };

// numeric: smallint, integer, bigint, real, double precision, numeric; boolean; categorical: text, varchar,
// char(n), name, enums (a domain counts as its base type).
ColumnKind column_kind(Oid type);
const char *feature_kind_name(core::FeatureKind kind);
bool feature_kind_from_name(const char *name, core::FeatureKind *kind);

// How to read one input column: plain data, palloc'd.
struct ColumnReader {
	int attno; // 1-based, in the tuple descriptor it was bound to
	Oid type;  // base type
	ColumnKind kind;
	core::FeatureKind feature; // the kind of value the model expects
	FmgrInfo out;              // categorical columns: the output function
	const char *name;
};

// Binds a column of desc by name; false when there is no such column. The column's kind must be one the
// feature accepts (numeric and boolean columns for numeric and boolean features, categorical for categorical),
// else an ERROR naming `owner` (e.g. 'predictive model "m"').
bool bind_column(TupleDesc desc, const char *name, core::FeatureKind feature, const char *owner, ColumnReader *col);
void bind_attno(TupleDesc desc, int attno, core::FeatureKind feature, const char *owner, ColumnReader *col);

// One decoded value: plain data (the string palloc'd in the current memory context).
struct RawValue {
	bool null;
	double num;
	char *str;
};

[[noreturn]] void unsupported_number(Oid type);
char *read_category(const ColumnReader *col, Datum d);

// A number of one of column_kind's numeric or boolean types (inline: it runs for every value of every pass).
inline double read_number(Oid type, Datum d)
{
	switch (type) {
	case INT2OID:
		return DatumGetInt16(d);
	case INT4OID:
		return DatumGetInt32(d);
	case INT8OID:
		return (double) DatumGetInt64(d);
	case FLOAT4OID:
		return DatumGetFloat4(d);
	case FLOAT8OID:
		return DatumGetFloat8(d);
	case NUMERICOID:
		return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, d));
	case BOOLOID:
		return DatumGetBool(d) ? 1 : 0;
	}
	unsupported_number(type);
}

inline void read_value(const ColumnReader *col, Datum d, bool isnull, RawValue *out)
{
	out->null = isnull;
	out->num = 0;
	out->str = nullptr;
	if (isnull)
		return;
	if (col->kind == ColumnKind::categorical)
		out->str = read_category(col, d);
	else
		out->num = read_number(col->type, d);
}

// A label: boolean, or a number that is 0 or 1. ERROR on NULL or another value, naming the column.
bool label_type_ok(Oid type);
double read_label(const char *name, Oid type, Datum d, bool isnull);
// A score: any numeric column; false when NULL. ERROR on NaN.
double read_score(const char *name, Oid type, Datum d, bool *isnull);

// Whether a prepared plan is one SELECT (a cursor over it reads rows and writes nothing).
bool is_select(SPIPlanPtr plan);

// C++ side: raw values to core values (no PostgreSQL call).
void to_core_values(const RawValue *raw, int n, std::vector<core::Value> *values);

// What leadscore.train stores of a training run (store.cpp).
struct TrainedModel {
	const char *name, *query, *label;
	int nfeatures;
	bool bayes;               // naive Bayes rather than the logistic regression
	const core::Model *model; // its features and terms
	std::optional<double> auc;
	double log_loss, seconds;
	Datum options_json;
};
// Writes the rows of a trained model under the next version number of its name (trainings of one name
// take their numbers in turn) and returns that version. SPI is connected.
int32 store_model(const TrainedModel &trained);

} // namespace leadscore::pg
