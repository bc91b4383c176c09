// The rows of a trained model (leadscore.predictive_model and its terms), written by leadscore.train and
// train_bayes after a fresh version number: the model's features, fit statistics, options and terms.
#include "data.h"

using namespace leadscore;

namespace leadscore::pg {

namespace {

const char *term_kind_name(core::TermKind kind)
{
	switch (kind) {
	case core::TermKind::intercept:
		return "intercept";
	case core::TermKind::value:
		return "value";
	case core::TermKind::missing_indicator:
		return "missing";
	case core::TermKind::level:
		return "level";
	case core::TermKind::reference_level:
		return "reference";
	}
	return "unknown";
}

Datum text_array(const char *const *items, int n)
{
	Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * Max(n, 1)));
	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

} // namespace

int32 store_model(const TrainedModel &t)
{
	const char *name = t.name;
	// Our own statements name every object with its schema: they run under the caller's search_path.
	// Trainings of one model take their version numbers in turn (an advisory lock: INSERT is the only
	// privilege training needs); the primary key refuses a duplicate version in any case.
	Oid text_oid = TEXTOID;
	Datum name_datum = CStringGetTextDatum(name);
	if (SPI_execute_with_args(
			"SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('leadscore.predictive_model'), "
			"pg_catalog.hashtext($1))",
			1, &text_oid, &name_datum, nullptr, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not lock predictive model \"%s\"", name);
	if (SPI_execute_with_args("SELECT pg_catalog.max(version) FROM leadscore.predictive_model "
	                          "WHERE name OPERATOR(pg_catalog.=) $1",
	                          1, &text_oid, &name_datum, nullptr, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the versions of predictive model \"%s\"", name);
	bool isnull;
	Datum last = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	int32 version = isnull ? 1 : DatumGetInt32(last) + 1;

	const core::Model &m = *t.model;
	const char **fnames = static_cast<const char **>(palloc(sizeof(char *) * t.nfeatures));
	const char **fkinds = static_cast<const char **>(palloc(sizeof(char *) * t.nfeatures));
	for (int i = 0; i < t.nfeatures; i++) {
		fnames[i] = m.features[i].name.c_str();
		fkinds[i] = feature_kind_name(m.features[i].kind);
	}
	Oid types[18] = {TEXTOID, INT4OID, TEXTOID,   TEXTOID,   TEXTARRAYOID, TEXTARRAYOID, FLOAT8OID, INT8OID,  INT8OID,
	                 INT4OID, BOOLOID, FLOAT8OID, FLOAT8OID, FLOAT8OID,    FLOAT8OID,    FLOAT8OID, JSONBOID, TEXTOID};
	Datum values[18] = {name_datum,
	                    Int32GetDatum(version),
	                    CStringGetTextDatum(t.label),
	                    CStringGetTextDatum(t.query),
	                    text_array(fnames, t.nfeatures),
	                    text_array(fkinds, t.nfeatures),
	                    Float8GetDatum(m.info.lambda),
	                    Int64GetDatum(m.info.rows),
	                    Int64GetDatum(m.info.positives),
	                    Int32GetDatum(m.info.iterations),
	                    BoolGetDatum(m.info.converged),
	                    Float8GetDatum(m.info.deviance),
	                    Float8GetDatum(m.info.null_deviance),
	                    Float8GetDatum(t.auc ? *t.auc : 0),
	                    Float8GetDatum(t.log_loss),
	                    Float8GetDatum(t.seconds),
	                    t.options_json,
	                    CStringGetTextDatum(t.bayes ? "naive_bayes" : "logistic")};
	char nulls[19] = "                  ";
	if (t.bayes)
		nulls[6] = 'n'; // lambda: a logistic regression's
	if (!t.auc)
		nulls[13] = 'n';
	if (SPI_execute_with_args(
			"INSERT INTO leadscore.predictive_model (name, version, label, query, features, "
			"feature_kinds, lambda, rows, positives, iterations, converged, deviance, null_deviance, "
			"auc, log_loss, train_seconds, options, method) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
			18, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "leadscore: could not write predictive model \"%s\"", name);

	Oid ttypes[12] = {TEXTOID,   INT4OID,   INT4OID,   TEXTOID,   TEXTOID,   TEXTOID,
	                  FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID};
	SPIPlanPtr plan = SPI_prepare("INSERT INTO leadscore.predictive_term (model, version, ord, feature, term, level, "
	                              "coefficient, odds_ratio, std_coefficient, mean, std, count) "
	                              "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	                              12, ttypes);
	if (!plan)
		elog(ERROR, "leadscore: could not prepare the insert of model terms");
	for (size_t i = 0; i < m.terms.size(); i++) {
		const core::Term &t = m.terms[i];
		bool has_level = t.kind == core::TermKind::level || t.kind == core::TermKind::reference_level;
		Datum tv[12] = {name_datum,
		                Int32GetDatum(version),
		                Int32GetDatum((int32) i),
		                CStringGetTextDatum(t.feature.c_str()),
		                CStringGetTextDatum(term_kind_name(t.kind)),
		                has_level ? CStringGetTextDatum(t.level.c_str()) : (Datum) 0,
		                Float8GetDatum(t.coefficient),
		                Float8GetDatum(t.odds_ratio),
		                Float8GetDatum(t.std_coefficient),
		                Float8GetDatum(t.mean),
		                Float8GetDatum(t.std),
		                Int64GetDatum(t.count)};
		char tn[13] = "            ";
		if (!has_level)
			tn[5] = 'n';
		if (SPI_execute_plan(plan, tv, tn, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "leadscore: could not write the terms of predictive model \"%s\"", name);
	}
	SPI_freeplan(plan);
	return version;
}

} // namespace leadscore::pg
