// Score quality in SQL, on any column: the auc aggregate (parallel: combine, serialize, deserialize), lift
// per bucket, calibration, conversion per group, and the per-rule statistics behind calibrate_rules.
#include "data.h"

#include <cmath>
#include <cstring>

using namespace leadscore;
using namespace leadscore::pg;

namespace {

MemoryContext agg_context(FunctionCallInfo fcinfo, const char *fn)
{
	MemoryContext cxt;
	if (!AggCheckCallContext(fcinfo, &cxt))
		elog(ERROR, "leadscore.%s called in a non-aggregate context", fn);
	return cxt;
}

// The rows of a query, fetched in chunks; SPI is connected. Checks that it returns at least `ncols` columns.
Portal open_query(const char *query, int ncols, const char *fn, const char *columns)
{
	SPIPlanPtr plan = SPI_prepare(query, 0, nullptr);
	if (!plan || !is_select(plan))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("leadscore.%s: the query must be a single SELECT returning rows", fn)));
	Portal portal = SPI_cursor_open(nullptr, plan, nullptr, nullptr, true);
	if (portal->tupDesc->natts < ncols)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("leadscore.%s: the query must return %s", fn, columns)));
	return portal;
}

// (score, label) rows of a query into outcomes; NULL scores are left out.
std::vector<core::Outcome> *read_outcomes(const char *query, const char *fn)
{
	std::vector<core::Outcome> *out = ls_owned<std::vector<core::Outcome>>(CurrentMemoryContext);
	MemoryContext cxt = CurrentMemoryContext;
	spi_connect();
	Portal portal = open_query(query, 2, fn, "(score, converted) as its first two columns");
	TupleDesc desc = portal->tupDesc;
	Oid stype = TupleDescAttr(desc, 0)->atttypid, ltype = TupleDescAttr(desc, 1)->atttypid;
	const char *sname = pstrdup(NameStr(TupleDescAttr(desc, 0)->attname));
	const char *lname = pstrdup(NameStr(TupleDescAttr(desc, 1)->attname));
	if (column_kind(stype) != ColumnKind::numeric)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("leadscore.%s: score column \"%s\" has type %s, not a number", fn, sname,
		                       format_type_be(stype))));
	if (!label_type_ok(ltype))
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("leadscore.%s: label column \"%s\" has type %s", fn, lname, format_type_be(ltype)),
		                errhint("The label must be boolean, or a number 0 or 1.")));
	double *scores = static_cast<double *>(MemoryContextAlloc(cxt, sizeof(double) * 10000));
	bool *labels = static_cast<bool *>(MemoryContextAlloc(cxt, sizeof(bool) * 10000));
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		uint64 n = SPI_processed, k = 0;
		if (n == 0)
			break;
		for (uint64 r = 0; r < n; r++) {
			HeapTuple t = SPI_tuptable->vals[r];
			bool snull, lnull;
			Datum s = SPI_getbinval(t, desc, 1, &snull);
			Datum l = SPI_getbinval(t, desc, 2, &lnull);
			double score = read_score(sname, stype, s, &snull);
			if (snull)
				continue;
			scores[k] = score;
			labels[k++] = read_label(lname, ltype, l, lnull) == 1;
		}
		ls_cpp([&] {
			for (uint64 i = 0; i < k; i++)
				out->push_back({scores[i], labels[i]});
		});
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	return out;
}

Datum opt_float(const std::optional<double> &v, bool *isnull)
{
	*isnull = !v.has_value();
	return v ? Float8GetDatum(*v) : (Datum) 0;
}

char *query_arg(FunctionCallInfo fcinfo, int i, const char *fn)
{
	if (PG_ARGISNULL(i))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("leadscore.%s: query must not be NULL", fn)));
	return text_to_cstring(PG_GETARG_TEXT_PP(i));
}

} // namespace

extern "C" {

// auc(score float8, converted boolean): transition; rows with a NULL are left out.
LS_FUNCTION(leadscore_auc_trans);
Datum leadscore_auc_trans(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_context(fcinfo, "auc");
	core::AucAccumulator *acc = PG_ARGISNULL(0) ? ls_owned<core::AucAccumulator>(cxt)
	                                            : reinterpret_cast<core::AucAccumulator *>(PG_GETARG_POINTER(0));
	if (!PG_ARGISNULL(1) && !PG_ARGISNULL(2)) {
		double score = PG_GETARG_FLOAT8(1);
		bool positive = PG_GETARG_BOOL(2);
		if (std::isnan(score))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("leadscore.auc: score is NaN")));
		ls_cpp([&] { acc->add(score, positive); });
	}
	PG_RETURN_POINTER(acc);
}

LS_FUNCTION(leadscore_auc_final);
Datum leadscore_auc_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	auto *acc = reinterpret_cast<core::AucAccumulator *>(PG_GETARG_POINTER(0));
	std::optional<double> auc;
	ls_cpp([&] { auc = acc->auc(); });
	if (!auc)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(*auc);
}

LS_FUNCTION(leadscore_auc_combine);
Datum leadscore_auc_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_context(fcinfo, "auc");
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0));
	auto *other = reinterpret_cast<core::AucAccumulator *>(PG_GETARG_POINTER(1));
	core::AucAccumulator *acc = PG_ARGISNULL(0) ? ls_owned<core::AucAccumulator>(cxt)
	                                            : reinterpret_cast<core::AucAccumulator *>(PG_GETARG_POINTER(0));
	ls_cpp([&] { acc->merge(*other); });
	PG_RETURN_POINTER(acc);
}

// The state as bytea: an array of (score float8, positives int8, negatives int8).
LS_FUNCTION(leadscore_auc_serialize);
Datum leadscore_auc_serialize(PG_FUNCTION_ARGS)
{
	auto *acc = reinterpret_cast<core::AucAccumulator *>(PG_GETARG_POINTER(0));
	struct Packed {
		double score;
		int64 positives, negatives;
	};
	size_t n = 0;
	Packed *packed = nullptr;
	ls_cpp([&] {
		std::vector<core::AucAccumulator::Entry> entries = acc->entries();
		n = entries.size();
		packed = static_cast<Packed *>(malloc(sizeof(Packed) * std::max<size_t>(n, 1)));
		if (!packed)
			throw std::bad_alloc();
		for (size_t i = 0; i < n; i++)
			packed[i] = {entries[i].score, entries[i].positives, entries[i].negatives};
	});
	Size size = VARHDRSZ + sizeof(Packed) * n;
	bytea *out = static_cast<bytea *>(palloc_extended(size, MCXT_ALLOC_NO_OOM));
	if (out) {
		SET_VARSIZE(out, size);
		memcpy(VARDATA(out), packed, sizeof(Packed) * n);
	}
	free(packed);
	if (!out)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_RETURN_BYTEA_P(out);
}

LS_FUNCTION(leadscore_auc_deserialize);
Datum leadscore_auc_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_context(fcinfo, "auc");
	bytea *in = PG_GETARG_BYTEA_PP(0);
	struct Packed {
		double score;
		int64 positives, negatives;
	};
	size_t len = VARSIZE_ANY_EXHDR(in);
	if (len % sizeof(Packed) != 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION), errmsg("leadscore.auc: invalid state")));
	size_t n = len / sizeof(Packed);
	Packed *packed = static_cast<Packed *>(palloc(sizeof(Packed) * Max(n, 1)));
	memcpy(packed, VARDATA_ANY(in), len);
	core::AucAccumulator *acc = ls_owned<core::AucAccumulator>(cxt);
	ls_cpp([&] {
		std::vector<core::AucAccumulator::Entry> entries(n);
		for (size_t i = 0; i < n; i++)
			entries[i] = {packed[i].score, packed[i].positives, packed[i].negatives};
		*acc = core::AucAccumulator::from_entries(entries);
	});
	PG_RETURN_POINTER(acc);
}

// lift(query, buckets): the query returns (score, converted).
LS_FUNCTION(leadscore_lift);
Datum leadscore_lift(PG_FUNCTION_ARGS)
{
	char *query = query_arg(fcinfo, 0, "lift");
	int buckets = PG_ARGISNULL(1) ? 10 : PG_GETARG_INT32(1);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	std::vector<core::Outcome> *outcomes = read_outcomes(query, "lift");
	std::vector<core::LiftRow> *table = ls_owned<std::vector<core::LiftRow>>(CurrentMemoryContext);
	ls_cpp([&] { *table = core::lift_table(*outcomes, buckets); });
	for (const core::LiftRow &r : *table) {
		Datum v[11];
		bool n[11] = {};
		v[0] = Int32GetDatum(r.bucket);
		v[1] = Int64GetDatum(r.count);
		v[2] = Int64GetDatum(r.positives);
		v[3] = opt_float(r.min_score, &n[3]);
		v[4] = opt_float(r.max_score, &n[4]);
		v[5] = opt_float(r.conversion_rate, &n[5]);
		v[6] = opt_float(r.lift, &n[6]);
		v[7] = Int64GetDatum(r.cumulative_count);
		v[8] = Int64GetDatum(r.cumulative_positives);
		v[9] = opt_float(r.cumulative_lift, &n[9]);
		v[10] = opt_float(r.capture_rate, &n[10]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

// calibration(query, bins): the query returns (probability, converted).
LS_FUNCTION(leadscore_calibration);
Datum leadscore_calibration(PG_FUNCTION_ARGS)
{
	char *query = query_arg(fcinfo, 0, "calibration");
	int bins = PG_ARGISNULL(1) ? 10 : PG_GETARG_INT32(1);
	if (bins < 1)
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("leadscore.calibration: bins must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	std::vector<core::Outcome> *outcomes = read_outcomes(query, "calibration");
	std::vector<core::CalibrationBin> *table = ls_owned<std::vector<core::CalibrationBin>>(CurrentMemoryContext);
	ls_cpp([&] { *table = core::calibration(*outcomes, bins); });
	int i = 0;
	for (const core::CalibrationBin &b : *table) {
		Datum v[7];
		bool n[7] = {};
		v[0] = Int32GetDatum(++i);
		v[1] = Float8GetDatum(b.lower);
		v[2] = Float8GetDatum(b.upper);
		v[3] = Int64GetDatum(b.count);
		v[4] = Int64GetDatum(b.positives);
		v[5] = opt_float(b.mean_predicted, &n[5]);
		v[6] = opt_float(b.observed_rate, &n[6]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

// conversion_by_group(query, groups): the query returns (group, converted); groups lists groups to show first,
// in that order, present or not.
LS_FUNCTION(leadscore_conversion_by_group);
Datum leadscore_conversion_by_group(PG_FUNCTION_ARGS)
{
	char *query = query_arg(fcinfo, 0, "conversion_by_group");
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	MemoryContext cxt = CurrentMemoryContext;
	auto *order = ls_owned<std::vector<std::string>>(cxt);
	if (!PG_ARGISNULL(1)) {
		Datum *elems;
		bool *nulls;
		int n;
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++) {
			if (nulls[i])
				continue;
			char *g = TextDatumGetCString(elems[i]);
			ls_cpp([&] { order->push_back(g); });
		}
	}
	auto *outcomes = ls_owned<std::vector<core::GroupOutcome>>(cxt);
	spi_connect();
	Portal portal = open_query(query, 2, "conversion_by_group", "(group, converted) as its first two columns");
	TupleDesc desc = portal->tupDesc;
	Oid gtype = TupleDescAttr(desc, 0)->atttypid, ltype = TupleDescAttr(desc, 1)->atttypid;
	const char *lname = pstrdup(NameStr(TupleDescAttr(desc, 1)->attname));
	if (!label_type_ok(ltype))
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("leadscore.conversion_by_group: label column \"%s\" has type %s", lname,
		                       format_type_be(ltype))));
	Oid out;
	bool varlena;
	getTypeOutputInfo(gtype, &out, &varlena);
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 1000);
		uint64 n = SPI_processed;
		if (n == 0)
			break;
		for (uint64 r = 0; r < n; r++) {
			HeapTuple t = SPI_tuptable->vals[r];
			bool gnull, lnull;
			Datum g = SPI_getbinval(t, desc, 1, &gnull);
			Datum l = SPI_getbinval(t, desc, 2, &lnull);
			char *group = gnull ? nullptr : OidOutputFunctionCall(out, g);
			bool positive = read_label(lname, ltype, l, lnull) == 1;
			ls_cpp([&] {
				core::GroupOutcome o;
				if (group)
					o.group = std::string(group);
				o.positive = positive;
				outcomes->push_back(std::move(o));
			});
			if (group)
				pfree(group);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	auto *rates = ls_owned<std::vector<core::GroupRate>>(cxt);
	ls_cpp([&] { *rates = core::conversion_by_group(*outcomes, *order); });
	for (const core::GroupRate &g : *rates) {
		Datum v[4];
		bool n[4] = {!g.group.has_value(), false, false, false};
		v[0] = g.group ? CStringGetTextDatum(g.group->c_str()) : (Datum) 0;
		v[1] = Int64GetDatum(g.count);
		v[2] = Int64GetDatum(g.positives);
		v[3] = opt_float(g.conversion_rate, &n[3]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

// _rule_stats(query, lambda): the query returns (converted, rule_1 boolean, ..., rule_k boolean). One row per
// rule (ord 1..k: matches, converted among them, the coefficient of a logistic fit over the k match indicators
// on the original 0/1 scale), and a row ord 0 with all leads, all converted and the fit's intercept.
LS_FUNCTION(leadscore_rule_stats);
Datum leadscore_rule_stats(PG_FUNCTION_ARGS)
{
	char *query = query_arg(fcinfo, 0, "calibrate_rules");
	double lambda = PG_ARGISNULL(1) ? 1 : PG_GETARG_FLOAT8(1);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	MemoryContext cxt = CurrentMemoryContext;

	struct Stats {
		std::vector<core::FeatureSpec> rules;
		std::vector<uint8_t> matches; // rows x rules
		std::vector<uint8_t> labels;
		std::vector<int64_t> hits, hit_positives;
		core::Model model;
	};
	Stats *st = ls_owned<Stats>(cxt);
	spi_connect();
	Portal portal = open_query(query, 1, "calibrate_rules", "the label and one boolean column per rule");
	TupleDesc desc = portal->tupDesc;
	int k = desc->natts - 1;
	Oid ltype = TupleDescAttr(desc, 0)->atttypid;
	const char *lname = pstrdup(NameStr(TupleDescAttr(desc, 0)->attname));
	if (!label_type_ok(ltype))
		ereport(ERROR,
		        (errcode(ERRCODE_DATATYPE_MISMATCH),
		         errmsg("leadscore.calibrate_rules: label column \"%s\" has type %s", lname, format_type_be(ltype)),
		         errhint("The label must be boolean, or a number 0 or 1.")));
	for (int i = 0; i < k; i++) {
		const char *rname = NameStr(TupleDescAttr(desc, i + 1)->attname);
		ls_cpp([&] {
			st->rules.push_back({rname, core::FeatureKind::boolean});
			st->hits.push_back(0);
			st->hit_positives.push_back(0);
		});
	}
	uint8_t *row = static_cast<uint8_t *>(palloc(Max(k, 1)));
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 1000);
		uint64 n = SPI_processed;
		if (n == 0)
			break;
		for (uint64 r = 0; r < n; r++) {
			HeapTuple t = SPI_tuptable->vals[r];
			bool isnull;
			Datum l = SPI_getbinval(t, desc, 1, &isnull);
			uint8_t y = read_label(lname, ltype, l, isnull) == 1;
			for (int i = 0; i < k; i++) {
				Datum m = SPI_getbinval(t, desc, i + 2, &isnull);
				row[i] = !isnull && DatumGetBool(m);
			}
			ls_cpp([&] {
				st->labels.push_back(y);
				for (int i = 0; i < k; i++) {
					st->matches.push_back(row[i]);
					st->hits[i] += row[i];
					st->hit_positives[i] += row[i] & y;
				}
			});
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();

	ls_cpp_cancellable([&] {
		core::TrainOptions options;
		options.lambda = lambda;
		options.should_stop = [] { return QueryCancelPending || ProcDiePending; };
		size_t rows = st->labels.size();
		core::RowSource source = [st, rows, k](const core::RowVisitor &visit) {
			core::Row r;
			r.values.resize(k);
			for (size_t i = 0; i < rows; i++) {
				for (int j = 0; j < k; j++)
					r.values[j] = (double) st->matches[i * k + j];
				r.label = st->labels[i];
				visit(r);
			}
		};
		st->model = core::train(st->rules, options, source);
	});
	CHECK_FOR_INTERRUPTS();
	int64 positives = 0;
	for (uint8_t y : st->labels)
		positives += y;
	Datum v[5];
	bool n[5] = {};
	v[0] = Int32GetDatum(0);
	n[1] = true;
	v[2] = Int64GetDatum((int64) st->labels.size());
	v[3] = Int64GetDatum(positives);
	v[4] = Float8GetDatum(st->model.terms[0].coefficient);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	n[1] = false;
	for (int i = 0; i < k; i++) {
		double coefficient = 0;
		for (const core::Term &t : st->model.terms)
			if (t.column == i && t.kind == core::TermKind::value)
				coefficient = t.coefficient;
		v[0] = Int32GetDatum(i + 1);
		v[1] = CStringGetTextDatum(st->rules[i].name.c_str());
		v[2] = Int64GetDatum(st->hits[i]);
		v[3] = Int64GetDatum(st->hit_positives[i]);
		v[4] = Float8GetDatum(coefficient);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

} // extern "C"
