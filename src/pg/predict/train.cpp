// leadscore.train: a logistic regression trained inside the database from any query (see ../../core/train.h).
//
// Three phases, as everywhere in the glue: the query runs once through an SPI cursor; its rows are kept in a
// tuplestore (in memory up to work_mem, then in a temporary file) while the core collects the statistics of
// each column; each Newton iteration of the core replays the tuplestore through pg_call (C++ calls
// PostgreSQL); the model is then written as rows with SPI. Memory is bounded by work_mem plus the core's
// columns^2, never by rows. Any error leaves nothing written: the rows are inserted last, in the caller's
// transaction.
#include "predict.h"
#include "data.h"

#include "../../core/bayes.h"
#include "../../core/cross_validation.h"

extern "C" {
#include "utils/acl.h"
}

#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>

using namespace leadscore;
using namespace leadscore::pg;

namespace {

// The C++ side of one training run, owned by the call's memory context.
struct TrainJob {
	std::vector<core::FeatureSpec> specs;
	core::TrainOptions options;
	std::optional<core::Trainer> trainer;
	bool bayes = false; // naive Bayes (bayes_trainer) rather than the logistic regression
	core::BayesOptions bayes_options;
	std::optional<core::BayesTrainer> bayes_trainer;
	bool cv = false; // leadscore.train_cv: lambda chosen by cross-validation first
	core::CvOptions cv_options;
	core::CvResult cv_result;
	std::string cv_json; // cv_result, for predictive_model.options
	core::Row row;
	core::Model model;
	std::optional<double> auc;
	double log_loss = 0;
	double seconds = 0;
};

// The PostgreSQL side: plain data.
struct TrainInput {
	const char *query;
	int nfeatures;
	ColumnReader *cols;
	const char *label;
	int label_attno;
	Oid label_type;
	Tuplestorestate *store;
	TupleTableSlot *slot;  // reads the tuplestore
	MemoryContext row_cxt; // strings of the current chunk
	int cap, n;            // chunk of decoded rows
	RawValue *raw;         // cap x nfeatures
	double *labels;        // cap
	const char *owner;     // names the model in messages
	int64 rows;            // read by the first pass
	int passes;            // over the stored rows
	TimestampTz noticed;   // the last pass said (0: none yet)
};

// A pass over many rows says so, at most every this many microseconds (cross-validation makes hundreds).
constexpr int64 kPassNoticeEvery = 10 * USECS_PER_SEC;

constexpr int kChunk = 1000;

// PostgreSQL side: decodes the row in slot into chunk position in->n.
void decode_slot(TrainInput *in, TupleTableSlot *slot)
{
	slot_getallattrs(slot);
	RawValue *raw = in->raw + (size_t) in->n * in->nfeatures;
	for (int c = 0; c < in->nfeatures; c++) {
		int a = in->cols[c].attno - 1;
		read_value(&in->cols[c], slot->tts_values[a], slot->tts_isnull[a], &raw[c]);
	}
	int a = in->label_attno - 1;
	in->labels[in->n] = read_label(in->label, in->label_type, slot->tts_values[a], slot->tts_isnull[a]);
	in->n++;
}

// PostgreSQL side, under pg_call: the next chunk of stored rows.
void read_chunk(TrainInput *in)
{
	// A row read back from a temporary file lives in row_cxt and the slot frees it on its next store.
	ExecClearTuple(in->slot);
	MemoryContextReset(in->row_cxt);
	MemoryContext old = MemoryContextSwitchTo(in->row_cxt);
	in->n = 0;
	while (in->n < in->cap && tuplestore_gettupleslot(in->store, true, false, in->slot))
		decode_slot(in, in->slot);
	MemoryContextSwitchTo(old);
}

// C++ side: chunk row i as the job's core row.
const core::Row &chunk_row(const TrainInput *in, TrainJob *job, int i)
{
	to_core_values(in->raw + (size_t) i * in->nfeatures, in->nfeatures, &job->row.values);
	job->row.label = in->labels[i];
	return job->row;
}

bool interrupted()
{
	return QueryCancelPending || ProcDiePending;
}

// C++ side: a JSON number, or null for none.
std::string json_number(std::optional<double> x)
{
	if (!x || !std::isfinite(*x))
		return "null";
	char buf[32];
	snprintf(buf, sizeof(buf), "%.17g", *x);
	return buf;
}

// C++ side: the cross-validation as predictive_model.options' "cv": the folds, the lambda chosen, and per
// candidate its held-out mean AUC and log loss and each fold's.
std::string cv_json(int folds, const core::CvResult &cv)
{
	std::string out = "{\"folds\": " + std::to_string(folds) +
	                  ", \"lambda\": " + json_number(cv.lambdas[cv.best].lambda) + ", \"fold_rows\": [";
	for (size_t f = 0; f < cv.fold_rows.size(); f++)
		out += (f ? ", " : "") + std::to_string(cv.fold_rows[f]);
	out += "], \"candidates\": [";
	for (size_t c = 0; c < cv.lambdas.size(); c++) {
		const core::CvLambda &p = cv.lambdas[c];
		out += std::string(c ? ", " : "") + "{\"lambda\": " + json_number(p.lambda) +
		       ", \"auc\": " + json_number(p.mean_auc) + ", \"log_loss\": " + json_number(p.mean_log_loss) +
		       ", \"converged\": " + (p.converged ? "true" : "false") + ", \"fold_auc\": [";
		for (size_t f = 0; f < p.fold_auc.size(); f++)
			out += (f ? ", " : "") + json_number(p.fold_auc[f]);
		out += "], \"fold_log_loss\": [";
		for (size_t f = 0; f < p.fold_log_loss.size(); f++)
			out += (f ? ", " : "") + json_number(p.fold_log_loss[f]);
		out += "]}";
	}
	return out + "]}";
}

// C++ side: the Newton iterations and the training metrics, replaying the stored rows.
void fit(TrainInput *in, TrainJob *job)
{
	auto start = std::chrono::steady_clock::now();
	core::RowSource source = [in, job](const core::RowVisitor &visit) {
		pg_call([in] {
			tuplestore_rescan(in->store);
			++in->passes;
			TimestampTz now = GetCurrentTimestamp();
			if (in->rows >= kProgressRows && (in->noticed == 0 || now - in->noticed >= kPassNoticeEvery)) {
				in->noticed = now;
				ereport(NOTICE,
				        (errmsg("%s: pass %d over the " INT64_FORMAT " rows", in->owner, in->passes, in->rows)));
			}
		});
		for (;;) {
			pg_call([in] { read_chunk(in); });
			if (in->n == 0)
				break;
			for (int i = 0; i < in->n; i++)
				visit(chunk_row(in, job, i));
		}
	};
	if (job->cv) {
		// The folds' fits and held-out scores, then the model of every row under the lambda chosen.
		job->cv_result = core::cross_validate(job->specs, job->options, job->cv_options, source);
		const core::CvLambda &best = job->cv_result.lambdas[job->cv_result.best];
		job->trainer->set_lambda(best.lambda);
		job->cv_json = cv_json(job->cv_options.folds, job->cv_result);
	}
	if (job->bayes) {
		// Counting was the first pass; one more pass gives the likelihood and AUC on the training rows.
		job->model = job->bayes_trainer->fit();
		core::evaluate_training(job->model, source);
	} else
		// Both on the training rows, from the last Newton pass (at the final coefficients): no extra pass.
		job->model = job->trainer->fit(source);
	job->auc = job->model.info.auc;
	job->log_loss = -job->model.info.log_likelihood / (double) job->model.info.rows;
	job->seconds = job->seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs the query's first pass: binds the columns and feeds the core's statistics. SPI is connected.
void first_pass(TrainInput *in, TrainJob *job, ArrayType *features, const char *owner)
{
	SPIPlanPtr plan = SPI_prepare(in->query, 0, nullptr);
	if (!plan)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: could not prepare the query", owner)));
	if (!is_select(plan))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("%s: the query must be a single SELECT returning rows", owner)));
	Portal portal = SPI_cursor_open(nullptr, plan, nullptr, nullptr, true);
	// A copy in the caller's context: the portal's descriptor goes with SPI_cursor_close, and the replay slot
	// of the Newton passes and the column readers (their names) use it after that.
	TupleDesc desc = CreateTupleDescCopy(portal->tupDesc);

	// The label column, then the features: those named, or every other column.
	in->label_attno = SPI_fnumber(desc, in->label);
	if (in->label_attno <= 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
		                errmsg("%s: the query has no label column \"%s\"", owner, in->label)));
	in->label_type = SPI_gettypeid(desc, in->label_attno);
	if (!label_type_ok(in->label_type))
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("%s: label column \"%s\" has type %s", owner, in->label, format_type_be(in->label_type)),
		                errhint("The label must be boolean, or a number 0 or 1.")));
	List *names = NIL;
	if (features) {
		Datum *elems;
		bool *nulls;
		int n;
		deconstruct_array(features, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++) {
			if (nulls[i])
				ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s: a feature name is NULL", owner)));
			names = lappend(names, TextDatumGetCString(elems[i]));
		}
	} else {
		for (int a = 1; a <= desc->natts; a++)
			if (a != in->label_attno && !TupleDescAttr(desc, a - 1)->attisdropped)
				names = lappend(names, pstrdup(NameStr(TupleDescAttr(desc, a - 1)->attname)));
	}
	if (names == NIL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: the query has no feature column", owner),
		                errhint("The query returns the label column and at least one feature column.")));
	in->nfeatures = list_length(names);
	in->cols = static_cast<ColumnReader *>(palloc0(sizeof(ColumnReader) * in->nfeatures));
	in->raw = static_cast<RawValue *>(palloc(sizeof(RawValue) * (size_t) in->cap * in->nfeatures));
	ListCell *lc;
	int c = 0;
	foreach (lc, names) {
		const char *name = static_cast<const char *>(lfirst(lc));
		int attno = SPI_fnumber(desc, name);
		if (attno <= 0)
			ereport(ERROR,
			        (errcode(ERRCODE_UNDEFINED_COLUMN), errmsg("%s: the query has no column \"%s\"", owner, name)));
		if (attno == in->label_attno)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			                errmsg("%s: the label column \"%s\" cannot be a feature", owner, name)));
		ColumnKind kind = column_kind(SPI_gettypeid(desc, attno));
		if (job->bayes && kind != ColumnKind::categorical)
			ereport(ERROR,
			        (errcode(ERRCODE_DATATYPE_MISMATCH),
			         errmsg("%s: naive Bayes counts field values: column \"%s\" has type %s", owner, name,
			                format_type_be(SPI_gettypeid(desc, attno))),
			         errhint("Cast it to text, or bin it in the query (CASE WHEN employees < 50 THEN 'small' ...).")));
		core::FeatureKind feature = job->bayes || kind == ColumnKind::categorical ? core::FeatureKind::categorical
		                            : kind == ColumnKind::boolean                 ? core::FeatureKind::boolean
		                                                                          : core::FeatureKind::numeric;
		bind_attno(desc, attno, feature, owner, &in->cols[c++]);
	}
	ls_cpp([&] {
		for (int i = 0; i < in->nfeatures; i++)
			job->specs.push_back({in->cols[i].name, in->cols[i].feature});
		if (job->bayes)
			job->bayes_trainer.emplace(job->specs, job->bayes_options);
		else
			job->trainer.emplace(job->specs, job->options);
	});

	// The rows: stored for the Newton passes, and counted by the core.
	TupleTableSlot *heap_slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	in->slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	auto start = std::chrono::steady_clock::now();
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, in->cap);
		uint64 n = SPI_processed;
		if (n == 0)
			break;
		SPITupleTable *rows = SPI_tuptable;
		MemoryContextReset(in->row_cxt);
		MemoryContext old = MemoryContextSwitchTo(in->row_cxt);
		in->n = 0;
		for (uint64 r = 0; r < n; r++) {
			tuplestore_puttuple(in->store, rows->vals[r]);
			ExecStoreHeapTuple(rows->vals[r], heap_slot, false);
			decode_slot(in, heap_slot);
			ExecClearTuple(heap_slot);
		}
		MemoryContextSwitchTo(old);
		ls_cpp_cancellable([&] {
			try {
				for (int i = 0; i < in->n; i++) {
					if (job->bayes)
						job->bayes_trainer->add_row(chunk_row(in, job, i));
					else
						job->trainer->add_row(chunk_row(in, job, i));
				}
			} catch (const core::Error &e) {
				throw core::Error(e.sqlstate(), std::string(owner) + ": " + e.what());
			}
		});
		SPI_freetuptable(rows);
		in->rows += (int64) n;
		if (in->rows / kProgressEvery > (in->rows - (int64) n) / kProgressEvery)
			ereport(NOTICE, (errmsg("%s: " INT64_FORMAT " rows read", owner, in->rows)));
	}
	job->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
	if (in->rows >= kProgressRows)
		ereport(NOTICE, (errmsg("%s: " INT64_FORMAT " rows read in %.1f s", owner, in->rows, job->seconds),
		                 errdetail("%s", job->bayes ? "The fit reads them once more."
		                                            : "The fit reads them again at each Newton iteration.")));
	ExecDropSingleTupleTableSlot(heap_slot);
	SPI_cursor_close(portal);
}

// Sets up a training run (tuplestore, buffers, C++ job) in the current memory context.
TrainJob *new_job(TrainInput *in, const char *query, const char *label)
{
	memset(in, 0, sizeof(*in));
	in->query = query;
	in->label = label;
	in->cap = kChunk;
	in->store = tuplestore_begin_heap(false, false, work_mem);
	in->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "leadscore training rows", ALLOCSET_DEFAULT_SIZES);
	TrainJob *job = ls_owned<TrainJob>(CurrentMemoryContext);
	job->options.should_stop = interrupted;
	job->bayes_options.should_stop = interrupted;
	return job;
}

} // namespace


namespace {

struct TrainArgs {
	bool bayes;
	double lambda, alpha;
	int max_iterations, max_levels, min_level_count, max_distinct;
	bool cv; // train_cv: lambda chosen among lambdas by cross-validation over folds
	int folds;
	ArrayType *lambdas; // float8[], NULL for the default candidates
};

// Both trainers: the query's rows, the fit, the rows of the model, the summary row.
Datum train_model(FunctionCallInfo fcinfo, const TrainArgs &args)
{
	const char *fn = args.bayes ? "leadscore.train_bayes" : args.cv ? "leadscore.train_cv" : "leadscore.train";
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char *label = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ArrayType *features = PG_ARGISNULL(3) ? nullptr : PG_GETARG_ARRAYTYPE_P(3);
	if (name[0] == '\0')
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: name must not be empty", fn)));
	char *owner = psprintf("predictive model \"%s\"", name);

	TupleDesc result_desc;
	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "%s must return a composite type", fn);
	result_desc = BlessTupleDesc(result_desc);

	// Checked first: a training that could not be stored would be time lost.
	Oid ns = get_namespace_oid("leadscore", false);
	for (const char *table : {"predictive_model", "predictive_term"}) {
		Oid relid = get_relname_relid(table, ns);
		if (!OidIsValid(relid) || pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			                errmsg("%s: permission denied to store trained models", fn),
			                errhint("Training inserts into leadscore.predictive_model and leadscore.predictive_term: "
			                        "GRANT INSERT ON both to the role.")));
	}

	// The candidate lambdas of train_cv.
	int n_lambdas = 0;
	double *lambda_values = nullptr;
	if (args.cv && args.lambdas) {
		Datum *lambda_datums;
		bool *lambda_nulls;
		deconstruct_array(args.lambdas, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &lambda_datums, &lambda_nulls,
		                  &n_lambdas);
		lambda_values = static_cast<double *>(palloc(sizeof(double) * (n_lambdas + 1)));
		for (int i = 0; i < n_lambdas; i++) {
			if (lambda_nulls[i])
				ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s: a lambda is NULL", fn)));
			lambda_values[i] = DatumGetFloat8(lambda_datums[i]);
		}
	}

	TrainInput in;
	TrainJob *job = new_job(&in, query, label);
	in.labels = static_cast<double *>(palloc(sizeof(double) * in.cap));
	ls_cpp([&] {
		job->cv = args.cv;
		if (args.cv) {
			job->cv_options.folds = args.folds;
			if (args.lambdas)
				for (int i = 0; i < n_lambdas; i++)
					job->cv_options.lambdas.push_back(lambda_values[i]);
			else
				job->cv_options.lambdas = core::default_cv_lambdas();
			try {
				job->cv_options.validate();
			} catch (const core::Error &e) {
				throw core::Error(e.sqlstate(), std::string(fn) + ": " + e.what());
			}
		}
		job->bayes = args.bayes;
		job->options.lambda = args.lambda;
		job->options.max_iterations = args.max_iterations;
		job->options.max_levels = args.max_levels;
		job->options.min_level_count = args.min_level_count;
		job->options.max_distinct = args.max_distinct;
		job->bayes_options.alpha = args.alpha;
		job->bayes_options.max_levels = args.max_levels;
		job->bayes_options.min_level_count = args.min_level_count;
		job->bayes_options.max_distinct = args.max_distinct;
		try {
			if (args.bayes)
				job->bayes_options.validate();
			else
				job->options.validate();
		} catch (const core::Error &e) {
			throw core::Error(e.sqlstate(), std::string(fn) + ": " + e.what());
		}
	});

	MemoryContext cxt = CurrentMemoryContext;
	spi_connect();
	MemoryContextSwitchTo(cxt);
	in.owner = owner;
	first_pass(&in, job, features, owner);
	MemoryContextSwitchTo(cxt);
	ls_cpp_cancellable([&] {
		try {
			fit(&in, job);
		} catch (const core::Error &e) {
			throw core::Error(e.sqlstate(), std::string(owner) + ": " + e.what());
		}
	});

	char *json = args.bayes ? psprintf("{\"alpha\": %.17g, \"max_levels\": %d, \"min_level_count\": %d, "
	                                   "\"max_distinct\": %d, \"work_mem\": %d}",
	                                   args.alpha, args.max_levels, args.min_level_count, args.max_distinct, work_mem)
	                        : psprintf("{\"lambda\": %.17g, \"max_iterations\": %d, \"max_levels\": %d, "
	                                   "\"min_level_count\": %d, \"max_distinct\": %d, \"work_mem\": %d%s%s}",
	                                   job->model.info.lambda, args.max_iterations, args.max_levels,
	                                   args.min_level_count, args.max_distinct, work_mem, args.cv ? ", \"cv\": " : "",
	                                   args.cv ? job->cv_json.c_str() : "");
	Datum options_json = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	int32 version = store_model(TrainedModel{name, in.query, in.label, in.nfeatures, job->bayes, &job->model, job->auc,
	                                         job->log_loss, job->seconds, options_json});
	SPI_finish();
	tuplestore_end(in.store);

	const core::FitInfo &info = job->model.info;
	if (in.rows >= kProgressRows)
		ereport(NOTICE, (errmsg("%s: version %d trained on " INT64_FORMAT " rows in %.1f s (%s)", owner, version,
		                        in.rows, job->seconds,
		                        job->bayes ? "naive Bayes"
		                                   : psprintf("%d Newton iteration%s, %s", info.iterations,
		                                              info.iterations == 1 ? "" : "s",
		                                              info.converged ? "converged" : "not converged"))));
	if (args.cv) {
		// train_cv: the lambda chosen and its held-out metrics first.
		const core::CvLambda &best = job->cv_result.lambdas[job->cv_result.best];
		Datum values[11] = {Int32GetDatum(version),
		                    Float8GetDatum(info.lambda),
		                    Float8GetDatum(best.mean_auc ? *best.mean_auc : 0),
		                    Float8GetDatum(best.mean_log_loss),
		                    Int64GetDatum(info.rows),
		                    Int64GetDatum(info.positives),
		                    Int32GetDatum(info.iterations),
		                    BoolGetDatum(info.converged),
		                    Float8GetDatum(job->auc ? *job->auc : 0),
		                    Float8GetDatum(job->log_loss),
		                    Float8GetDatum(job->seconds)};
		bool nulls[11] = {false, false, !best.mean_auc, false, false, false, false, false, !job->auc, false, false};
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
	}
	Datum values[8] = {Int32GetDatum(version),        Int64GetDatum(info.rows),
	                   Int64GetDatum(info.positives), Int32GetDatum(info.iterations),
	                   BoolGetDatum(info.converged),  Float8GetDatum(job->auc ? *job->auc : 0),
	                   Float8GetDatum(job->log_loss), Float8GetDatum(job->seconds)};
	bool nulls[8] = {false, false, false, false, false, !job->auc, false, false};
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}

void require_args(FunctionCallInfo fcinfo, const char *fn, std::initializer_list<const char *> names,
                  int also_nullable = -1)
{
	int i = 0;
	for (const char *n : names) {
		// Argument 3 (features) may be NULL: every other column (train_cv's lambdas too: the defaults).
		if (i != 3 && i != also_nullable && PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s: %s must not be NULL", fn, n)));
		i++;
	}
}

} // namespace

extern "C" {

// leadscore.train(name, query, label, features, lambda, max_iterations, max_levels, min_level_count,
// max_distinct): the version written and a summary of the fit.
LS_FUNCTION(leadscore_train);
Datum leadscore_train(PG_FUNCTION_ARGS)
{
	require_args(fcinfo, "leadscore.train",
	             {"name", "query", "label", "features", "lambda", "max_iterations", "max_levels", "min_level_count",
	              "max_distinct"});
	TrainArgs args{false,
	               PG_GETARG_FLOAT8(4),
	               1,
	               PG_GETARG_INT32(5),
	               PG_GETARG_INT32(6),
	               PG_GETARG_INT32(7),
	               PG_GETARG_INT32(8),
	               false,
	               0,
	               nullptr};
	return train_model(fcinfo, args);
}

// leadscore.train_cv(name, query, label, features, folds, lambdas, max_iterations, max_levels,
// min_level_count, max_distinct): the lambda chosen by cross-validation, then as train.
LS_FUNCTION(leadscore_train_cv);
Datum leadscore_train_cv(PG_FUNCTION_ARGS)
{
	require_args(fcinfo, "leadscore.train_cv",
	             {"name", "query", "label", "features", "folds", "lambdas", "max_iterations", "max_levels",
	              "min_level_count", "max_distinct"},
	             5);
	TrainArgs args{false,
	               1,
	               1,
	               PG_GETARG_INT32(6),
	               PG_GETARG_INT32(7),
	               PG_GETARG_INT32(8),
	               PG_GETARG_INT32(9),
	               true,
	               PG_GETARG_INT32(4),
	               PG_ARGISNULL(5) ? nullptr : PG_GETARG_ARRAYTYPE_P(5)};
	return train_model(fcinfo, args);
}

// leadscore.train_bayes(name, query, label, features, alpha, max_levels, min_level_count, max_distinct).
LS_FUNCTION(leadscore_train_bayes);
Datum leadscore_train_bayes(PG_FUNCTION_ARGS)
{
	require_args(fcinfo, "leadscore.train_bayes",
	             {"name", "query", "label", "features", "alpha", "max_levels", "min_level_count", "max_distinct"});
	TrainArgs
		args{true, 0,      PG_GETARG_FLOAT8(4), 1, PG_GETARG_INT32(5), PG_GETARG_INT32(6), PG_GETARG_INT32(7), false,
	         0,    nullptr};
	return train_model(fcinfo, args);
}

} // extern "C"
