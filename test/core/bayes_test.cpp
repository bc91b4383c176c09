// Naive Bayes over field values: the model's probability is the textbook (Odoo-like) formula with Laplace
// smoothing, written as a logistic-like Model that predicts, explains and validates as train.h's.
#include "bayes.h"
#include "metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

using namespace leadscore::core;

namespace {

RowSource source(const std::vector<Row> &rows)
{
	return [&rows](const RowVisitor &visit) {
		for (const Row &row : rows)
			visit(row);
	};
}

const std::vector<FeatureSpec> kFeatures = {{"source", FeatureKind::categorical},
                                            {"country", FeatureKind::categorical}};

std::vector<Row> history()
{
	std::vector<Row> rows;
	auto add = [&](const char *source, const char *country, double label, int times) {
		for (int i = 0; i < times; i++)
			rows.push_back(Row{{Value(std::string(source)), country ? Value(std::string(country)) : Value()}, label});
	};
	add("web", "FR", 1, 30);
	add("web", "DE", 0, 20);
	add("web", "FR", 0, 10);
	add("ads", "FR", 1, 5);
	add("ads", "DE", 0, 25);
	add("ads", nullptr, 0, 5);
	add("fair", "DE", 1, 4);
	return rows;
}

// The textbook formula, counted directly from the rows.
double direct(const std::vector<Row> &rows, const std::vector<std::string> &levels_of_row,
              const std::vector<int> &level_counts, double alpha)
{
	double pos = 0, neg = 0;
	for (const Row &r : rows)
		(r.label == 1 ? pos : neg) += 1;
	double lp = std::log(pos), ln = std::log(neg);
	for (size_t c = 0; c < levels_of_row.size(); c++) {
		double cp = 0, cn = 0;
		for (const Row &r : rows) {
			const Value &v = r.values[c];
			std::string level = std::holds_alternative<std::monostate>(v) ? "(missing)" : std::get<std::string>(v);
			if (level == levels_of_row[c])
				(r.label == 1 ? cp : cn) += 1;
		}
		lp += std::log((cp + alpha) / (pos + alpha * level_counts[c]));
		ln += std::log((cn + alpha) / (neg + alpha * level_counts[c]));
	}
	return 1 / (1 + std::exp(ln - lp));
}

} // namespace

TEST(NaiveBayes, TextbookProbabilityWithLaplaceSmoothing)
{
	std::vector<Row> rows = history();
	for (double alpha : {1.0, 0.1}) {
		BayesOptions options;
		options.alpha = alpha;
		BayesTrainer trainer(kFeatures, options);
		for (const Row &r : rows)
			trainer.add_row(r);
		Model m = trainer.fit();
		// Levels: source {web, ads, fair, (other)} = 4; country {FR, DE, (missing), (other)} = 4.
		EXPECT_NEAR(m.predict({std::string("web"), std::string("FR")}).probability,
		            direct(rows, {"web", "FR"}, {4, 4}, alpha), 1e-12);
		EXPECT_NEAR(m.predict({std::string("ads"), Value()}).probability,
		            direct(rows, {"ads", "(missing)"}, {4, 4}, alpha), 1e-12);
		EXPECT_NEAR(m.predict({std::string("fair"), std::string("DE")}).probability,
		            direct(rows, {"fair", "DE"}, {4, 4}, alpha), 1e-12);
		// A value never seen is ignored: the probability given the other values only.
		double lo_fr = std::log(direct(rows, {"web", "FR"}, {4, 4}, alpha) /
		                        (1 - direct(rows, {"web", "FR"}, {4, 4}, alpha)));
		double lo_web = std::log(direct(rows, {"web"}, {4}, alpha) / (1 - direct(rows, {"web"}, {4}, alpha)));
		double prior = std::log(39.0 / 60.0);
		EXPECT_NEAR(m.predict({std::string("radio"), std::string("FR")}).log_odds, lo_fr - lo_web + prior, 1e-12);
	}
}

TEST(NaiveBayes, ModelReadsLikeALogisticOne)
{
	BayesTrainer trainer(kFeatures);
	std::vector<Row> rows = history();
	for (const Row &r : rows)
		trainer.add_row(r);
	Model m = trainer.fit();
	EXPECT_NO_THROW(m.validate());
	EXPECT_EQ(m.terms[0].kind, TermKind::intercept);
	// The reference level of each column is its most frequent one, with coefficient 0.
	EXPECT_EQ(m.terms[1].kind, TermKind::reference_level);
	EXPECT_EQ(m.terms[1].level, "web");
	EXPECT_EQ(m.terms[1].coefficient, 0);
	// Contributions sum to the log-odds, as for a logistic model.
	Explanation e = m.contributions({std::string("ads"), std::string("DE")});
	double sum = e.baseline;
	for (const Contribution &c : e.features)
		sum += c.log_odds;
	EXPECT_NEAR(sum, m.predict({std::string("ads"), std::string("DE")}).log_odds, 1e-12);
	// The training evaluation: likelihood of the rows and their AUC.
	evaluate_training(m, source(rows));
	std::vector<Outcome> outcomes;
	double ll = 0;
	for (const Row &r : rows) {
		Prediction p = m.predict(r.values);
		outcomes.push_back({p.log_odds, r.label == 1});
		ll += r.label == 1 ? std::log(p.probability) : std::log(1 - p.probability);
	}
	EXPECT_NEAR(m.info.log_likelihood, ll, 1e-9);
	EXPECT_NEAR(*m.info.auc, *auc(outcomes), 1e-12);
	EXPECT_GT(m.info.null_deviance, m.info.deviance);
}

TEST(NaiveBayes, RareLevelsGoToOther)
{
	BayesOptions options;
	options.min_level_count = 10;
	BayesTrainer trainer(kFeatures, options);
	for (const Row &r : history())
		trainer.add_row(r);
	Model m = trainer.fit();
	// "fair" (4 leads) joins "(other)": a fair lead and an unseen one score the same.
	EXPECT_DOUBLE_EQ(m.predict({std::string("fair"), std::string("DE")}).log_odds,
	                 m.predict({std::string("radio"), std::string("DE")}).log_odds);
}

TEST(NaiveBayes, Errors)
{
	auto expect_error = [](const std::function<void()> &f, const char *sqlstate, const std::string &fragment) {
		try {
			f();
			FAIL() << "no error, expected " << fragment;
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), sqlstate) << e.what();
			EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
		}
	};
	expect_error([] { BayesTrainer({{"age", FeatureKind::numeric}}); }, kInvalidParameter, "must be categorical");
	expect_error(
		[] {
			BayesOptions o;
			o.alpha = 0;
			BayesTrainer(kFeatures, o);
		},
		kInvalidParameter, "alpha");
	expect_error([] { BayesTrainer(kFeatures).fit(); }, kDataException, "without rows");
	expect_error(
		[] {
			BayesTrainer t(kFeatures);
			t.add_row(Row{{std::string("web"), std::string("FR")}, 1});
			t.fit();
		},
		kDataException, "both classes");
	expect_error(
		[] {
			BayesOptions o;
			o.max_distinct = 2;
			BayesTrainer t(kFeatures, o);
			for (const char *s : {"a", "b", "c"})
				t.add_row(Row{{std::string(s), std::string("FR")}, 1});
		},
		kProgramLimitExceeded, "distinct values");
	expect_error(
		[] {
			BayesTrainer(kFeatures).add_row(Row{{1.0, std::string("FR")}, 1});
		},
		kInvalidParameter, "must be text");
}
