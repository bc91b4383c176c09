// Prediction in SQL and for the glue (predict.h): a per-backend cache of trained models read back from their
// rows, the binding of a row's columns to a model's features, predict, predict_log_odds, explain_prediction.
#include "predict.h"
#include "data.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>

using namespace leadscore;
using namespace leadscore::pg;

namespace {

struct Binding {
	Oid type = InvalidOid; // the row type bound, InvalidOid = none yet
	int32 typmod = -1;
	std::vector<ColumnReader> cols; // one per feature, attnos into the bound descriptor
	std::vector<Oid> atttypes;
};

struct Entry {
	std::string name;
	int32 version = 0;
	core::Model model;
	Binding binding;
	std::vector<core::Value> values; // scratch of the last call
	core::Explanation explanation;   // scratch of the last explain_prediction
};

// Entries are deleted only by lookup() (when the callback marked the cache stale), never by the callback
// itself: a caller may hold an entry across PostgreSQL calls that accept invalidation messages.
std::map<std::string, std::unique_ptr<Entry>, std::less<>> *g_entries;
bool g_stale = false;
bool g_callback = false;
Oid g_model_relid = InvalidOid;
uint64 g_generation = 1;
MemoryContext g_cxt;

void relcache_callback(Datum, Oid relid)
{
	if (relid == InvalidOid || relid == g_model_relid) {
		g_stale = true;
		g_generation++;
	}
}

Oid model_relid()
{
	Oid ns = get_namespace_oid("leadscore", false);
	Oid relid = get_relname_relid("predictive_model", ns);
	if (!OidIsValid(relid))
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("leadscore.predictive_model does not exist"),
		         errhint("Update the extension: ALTER EXTENSION leadscore UPDATE.")));
	return relid;
}

// The model rows, read with SPI into the entry (C++ built inside ls_cpp).
// Runs a read-only query of the model tables under `snapshot`.
void read_rows(const char *sql, int nargs, Oid *types, Datum *args, Snapshot snapshot, const char *name)
{
	SPIPlanPtr plan = SPI_prepare(sql, nargs, types);
	if (!plan || SPI_execute_snapshot(plan, args, nullptr, snapshot, InvalidSnapshot, true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read predictive model \"%s\"", name);
	SPI_freeplan(plan);
}

Entry *load(const char *name)
{
	spi_connect();
	// The cache outlives the statement: read what is committed now (and this transaction's own writes), as
	// catalog caches do, not the statement's snapshot, which may predate the change that emptied the cache.
	// A parallel worker cannot take a snapshot; its cache ends with the query anyway.
	Snapshot snapshot = RegisterSnapshot(IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot());
	Oid text_oid = TEXTOID;
	Datum arg = CStringGetTextDatum(name);
	read_rows("SELECT version, features, feature_kinds FROM leadscore.predictive_model "
	          "WHERE name OPERATOR(pg_catalog.=) $1 ORDER BY version DESC LIMIT 1",
	          1, &text_oid, &arg, snapshot, name);
	if (SPI_processed == 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("predictive model \"%s\" does not exist", name),
		                errhint("Train it with leadscore.train.")));
	bool isnull;
	HeapTuple head = SPI_tuptable->vals[0];
	TupleDesc hdesc = SPI_tuptable->tupdesc;
	int32 version = DatumGetInt32(SPI_getbinval(head, hdesc, 1, &isnull));
	Datum *fnames, *fkinds;
	int nf, nk;
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(head, hdesc, 2, &isnull)), TEXTOID, -1, false, TYPALIGN_INT,
	                  &fnames, nullptr, &nf);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(head, hdesc, 3, &isnull)), TEXTOID, -1, false, TYPALIGN_INT,
	                  &fkinds, nullptr, &nk);
	char **feature_names = static_cast<char **>(palloc(sizeof(char *) * Max(nf, 1)));
	core::FeatureKind *kinds = static_cast<core::FeatureKind *>(palloc(sizeof(core::FeatureKind) * Max(nf, 1)));
	for (int i = 0; i < nf; i++) {
		feature_names[i] = TextDatumGetCString(fnames[i]);
		char *k = i < nk ? TextDatumGetCString(fkinds[i]) : pstrdup("?");
		if (!feature_kind_from_name(k, &kinds[i]))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			                errmsg("predictive model \"%s\": feature \"%s\" has unknown kind \"%s\"", name,
			                       feature_names[i], k)));
	}

	Oid types[2] = {TEXTOID, INT4OID};
	Datum args[2] = {arg, Int32GetDatum(version)};
	read_rows("SELECT term, feature, level, coefficient, std_coefficient, mean, std, count "
	          "FROM leadscore.predictive_term WHERE model OPERATOR(pg_catalog.=) $1 "
	          "AND version OPERATOR(pg_catalog.=) $2 ORDER BY ord",
	          2, types, args, snapshot, name);
	UnregisterSnapshot(snapshot);
	uint64 nterms = SPI_processed;
	struct RawTerm {
		char *kind, *feature, *level;
		double coefficient, std_coefficient, mean, std;
		int64 count;
	};
	RawTerm *terms = static_cast<RawTerm *>(palloc0(sizeof(RawTerm) * Max(nterms, 1)));
	for (uint64 r = 0; r < nterms; r++) {
		HeapTuple t = SPI_tuptable->vals[r];
		TupleDesc d = SPI_tuptable->tupdesc;
		terms[r].kind = SPI_getvalue(t, d, 1);
		terms[r].feature = SPI_getvalue(t, d, 2);
		terms[r].level = SPI_getvalue(t, d, 3);
		terms[r].coefficient = DatumGetFloat8(SPI_getbinval(t, d, 4, &isnull));
		terms[r].std_coefficient = DatumGetFloat8(SPI_getbinval(t, d, 5, &isnull));
		terms[r].mean = DatumGetFloat8(SPI_getbinval(t, d, 6, &isnull));
		terms[r].std = DatumGetFloat8(SPI_getbinval(t, d, 7, &isnull));
		terms[r].count = DatumGetInt64(SPI_getbinval(t, d, 8, &isnull));
	}

	Entry *entry = nullptr;
	ls_cpp([&] {
		auto e = std::make_unique<Entry>();
		e->name = name;
		e->version = version;
		for (int i = 0; i < nf; i++)
			e->model.features.push_back({feature_names[i], kinds[i]});
		for (uint64 r = 0; r < nterms; r++) {
			const RawTerm &rt = terms[r];
			core::Term t;
			std::string kind = rt.kind ? rt.kind : "";
			t.kind = kind == "intercept" ? core::TermKind::intercept
			         : kind == "value"   ? core::TermKind::value
			         : kind == "missing" ? core::TermKind::missing_indicator
			         : kind == "level"   ? core::TermKind::level
			         : kind == "reference"
			             ? core::TermKind::reference_level
			             : throw core::Error(core::kInvalidParameter, "predictive model \"" + std::string(name) +
			                                                              "\": unknown term kind \"" + kind + "\"");
			t.feature = rt.feature ? rt.feature : "";
			t.level = rt.level ? rt.level : "";
			t.column = -1;
			for (int i = 0; i < nf; i++)
				if (t.kind != core::TermKind::intercept && e->model.features[i].name == t.feature)
					t.column = i;
			t.coefficient = rt.coefficient;
			t.std_coefficient = rt.std_coefficient;
			t.mean = rt.mean;
			t.std = rt.std;
			t.count = rt.count;
			t.odds_ratio = std::exp(t.coefficient);
			e->model.terms.push_back(std::move(t));
		}
		try {
			e->model.validate();
		} catch (const core::Error &err) {
			throw core::Error(err.sqlstate(), "predictive model \"" + std::string(name) + "\": " + err.what());
		}
		entry = e.get();
		(*g_entries)[e->name] = std::move(e);
	});
	SPI_finish();
	return entry;
}

Entry *lookup(const char *name)
{
	if (!g_callback) {
		g_cxt = AllocSetContextCreate(TopMemoryContext, "leadscore predictions", ALLOCSET_SMALL_SIZES);
		ls_cpp([] { g_entries = new std::map<std::string, std::unique_ptr<Entry>, std::less<>>(); });
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		g_callback = true;
		g_stale = true;
	}
	if (g_stale) {
		g_model_relid = model_relid();
		g_stale = false;
		ls_cpp([] { g_entries->clear(); });
	}
	Entry *entry = nullptr;
	ls_cpp([&] {
		auto it = g_entries->find(std::string_view(name)); // no std::string built per call
		if (it != g_entries->end())
			entry = it->second.get();
	});
	return entry ? entry : load(name);
}

// Binds (or checks the binding of) every feature to a column of desc.
void bind(Entry *entry, TupleDesc desc)
{
	Binding &b = entry->binding;
	int n = (int) entry->model.features.size();
	bool valid = b.type != InvalidOid && b.type == desc->tdtypeid && b.typmod == desc->tdtypmod;
	for (int i = 0; valid && i < n; i++) {
		const ColumnReader &c = b.cols[i];
		if (c.attno > desc->natts) {
			valid = false;
			break;
		}
		Form_pg_attribute att = TupleDescAttr(desc, c.attno - 1);
		valid = !att->attisdropped && att->atttypid == b.atttypes[i] && strcmp(NameStr(att->attname), c.name) == 0;
	}
	if (valid)
		return;
	b.type = InvalidOid;
	ls_cpp([&] {
		b.cols.assign(n, ColumnReader());
		b.atttypes.assign(n, InvalidOid);
	});
	char *owner = psprintf("predictive model \"%s\"", entry->name.c_str());
	MemoryContext old = MemoryContextSwitchTo(g_cxt);
	for (int i = 0; i < n; i++) {
		const core::FeatureSpec &f = entry->model.features[i];
		ColumnReader col;
		if (!bind_column(desc, f.name.c_str(), f.kind, owner, &col))
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
			                errmsg("%s: the row has no column \"%s\"", owner, f.name.c_str()),
			                errhint("A row to score has every feature column of the model, by name.")));
		// The reader outlives this call: its name is the feature's, its output function needs no memory.
		col.name = f.name.c_str();
		if (col.kind == ColumnKind::categorical)
			col.out.fn_mcxt = TopMemoryContext;
		b.cols[i] = col;
		b.atttypes[i] = TupleDescAttr(desc, col.attno - 1)->atttypid;
	}
	MemoryContextSwitchTo(old);
	b.type = desc->tdtypeid;
	b.typmod = desc->tdtypmod;
}

// The row's values, decoded in g_cxt (reset by the next call), as raw values.
RawValue *decode(Entry *entry, HeapTuple tuple, TupleDesc desc)
{
	bind(entry, desc);
	MemoryContextReset(g_cxt);
	MemoryContext old = MemoryContextSwitchTo(g_cxt);
	int n = (int) entry->model.features.size();
	RawValue *raw = static_cast<RawValue *>(palloc(sizeof(RawValue) * Max(n, 1)));
	for (int i = 0; i < n; i++) {
		const ColumnReader &c = entry->binding.cols[i];
		bool isnull;
		Datum d = heap_getattr(tuple, c.attno, desc, &isnull);
		read_value(&c, d, isnull, &raw[i]);
	}
	MemoryContextSwitchTo(old);
	return raw;
}

core::Prediction predict_entry(Entry *entry, HeapTuple tuple, TupleDesc desc)
{
	RawValue *raw = decode(entry, tuple, desc);
	core::Prediction p;
	ls_cpp([&] {
		to_core_values(raw, (int) entry->model.features.size(), &entry->values);
		p = entry->model.predict(entry->values);
	});
	return p;
}

// A SQL row argument as a heap tuple and its descriptor (released by the caller with ReleaseTupleDesc).
TupleDesc row_arg(FunctionCallInfo fcinfo, int arg, HeapTupleData *tuple)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(arg);
	TupleDesc desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row), HeapTupleHeaderGetTypMod(row));
	tuple->t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = row;
	return desc;
}

// Per call site: the entry of the model named by a constant argument, while the cache is unchanged.
struct Site {
	uint64 generation;
	Entry *entry;
	char *name;
};

Entry *site_entry(FunctionCallInfo fcinfo, const char *name)
{
	Site *site = static_cast<Site *>(fcinfo->flinfo->fn_extra);
	if (site && site->generation == g_generation && !g_stale && strcmp(site->name, name) == 0)
		return site->entry;
	Entry *entry = lookup(name);
	if (!site) {
		site = static_cast<Site *>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(Site)));
		fcinfo->flinfo->fn_extra = site;
	} else if (site->name)
		pfree(site->name);
	site->name = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name);
	site->entry = entry;
	site->generation = g_generation;
	return entry;
}

core::Prediction predict_call(FunctionCallInfo fcinfo)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Entry *entry = site_entry(fcinfo, name);
	HeapTupleData tuple;
	TupleDesc desc = row_arg(fcinfo, 1, &tuple);
	core::Prediction p = predict_entry(entry, &tuple, desc);
	ReleaseTupleDesc(desc);
	return p;
}

} // namespace

namespace leadscore::pg {

double predict_probability(const char *model, HeapTuple tuple, TupleDesc desc, double *log_odds)
{
	Entry *entry = lookup(model);
	core::Prediction p = predict_entry(entry, tuple, desc);
	if (log_odds)
		*log_odds = p.log_odds;
	return p.probability;
}

void invalidate_predictive_models()
{
	g_stale = true;
	g_generation++;
}

} // namespace leadscore::pg

extern "C" {

LS_FUNCTION(leadscore_predict);
Datum leadscore_predict(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(predict_call(fcinfo).probability);
}

LS_FUNCTION(leadscore_predict_log_odds);
Datum leadscore_predict_log_odds(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(predict_call(fcinfo).log_odds);
}

// explain_prediction(model, row): (feature, level, value, contribution): the baseline then one line per
// feature; the contributions sum to the log-odds.
LS_FUNCTION(leadscore_explain_prediction);
Datum leadscore_explain_prediction(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	Entry *entry = lookup(name);
	HeapTupleData tuple;
	TupleDesc desc = row_arg(fcinfo, 1, &tuple);
	RawValue *raw = decode(entry, &tuple, desc);
	int n = (int) entry->model.features.size();
	core::Explanation *ex = nullptr;
	ls_cpp([&] {
		to_core_values(raw, n, &entry->values);
		entry->explanation = entry->model.contributions(entry->values);
		ex = &entry->explanation;
	});
	Datum values[4];
	bool nulls[4] = {false, true, true, false};
	values[0] = CStringGetTextDatum("(baseline)");
	values[3] = Float8GetDatum(ex->baseline);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	for (int i = 0; i < n && i < (int) ex->features.size(); i++) {
		const core::Contribution &c = ex->features[i];
		bool cn[4] = {false, c.level.empty(), raw[i].null, false};
		values[0] = CStringGetTextDatum(c.feature.c_str());
		values[1] = c.level.empty() ? (Datum) 0 : CStringGetTextDatum(c.level.c_str());
		if (!raw[i].null)
			values[2] = CStringGetTextDatum(raw[i].str ? raw[i].str : psprintf("%.15g", raw[i].num));
		values[3] = Float8GetDatum(c.log_odds);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, cn);
	}
	ReleaseTupleDesc(desc);
	return (Datum) 0;
}

// Statement trigger on predictive_model and predictive_term: every session drops its cached models (this
// one at once, the others when the change commits).
LS_FUNCTION(leadscore_predictive_changed);
Datum leadscore_predictive_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "leadscore._predictive_changed() must be called as a trigger");
	CacheInvalidateRelcacheByRelid(model_relid());
	invalidate_predictive_models();
	return PointerGetDatum(NULL);
}

} // extern "C"
