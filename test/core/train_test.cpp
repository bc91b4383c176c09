// Training: a planted model is recovered, the penalty shrinks, tiny fits agree with hand computations,
// prediction and contributions agree, and every misuse is a clear Error.
#include "train.h"
#include "metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace leadscore::core;

namespace {

RowSource source(const std::vector<Row> &rows)
{
	return [&rows](const RowVisitor &visit) {
		for (const Row &row : rows)
			visit(row);
	};
}

Row row(std::vector<Value> values, double label)
{
	return Row{std::move(values), label};
}

const Term &term(const Model &m, const std::string &name)
{
	for (const Term &t : m.terms)
		if (t.name() == name)
			return t;
	throw std::runtime_error("no term " + name);
}

void expect_error(const std::function<void()> &f, const char *sqlstate, const std::string &fragment)
{
	try {
		f();
		FAIL() << "no error, expected " << sqlstate << ": " << fragment;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), sqlstate) << e.what();
		EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
	}
}

// The planted model: log-odds = -1 + 0.05 age + 0.8 has_phone - 0.3 revenue (5 when missing) + 0.6 when
// revenue is missing + 0.7 [plan = pro] + 1.5 [plan = enterprise].
constexpr double kIntercept = -1, kAge = 0.05, kPhone = 0.8, kRevenue = -0.3, kRevenueMissing = 0.6, kPro = 0.7,
				 kEnterprise = 1.5;

const std::vector<FeatureSpec> kPlantedFeatures = {{"age", FeatureKind::numeric},
                                                   {"has_phone", FeatureKind::boolean},
                                                   {"revenue", FeatureKind::numeric},
                                                   {"plan", FeatureKind::categorical}};

const std::vector<Row> &planted_rows()
{
	static const std::vector<Row> rows = [] {
		std::mt19937_64 gen(20240601);
		std::normal_distribution<double> age(30, 10), revenue(5, 2);
		std::uniform_real_distribution<double> u(0, 1);
		std::vector<Row> out;
		for (int i = 0; i < 20000; i++) {
			double a = age(gen);
			double phone = u(gen) < 0.4 ? 1 : 0;
			bool missing = u(gen) < 0.2;
			double r = revenue(gen);
			double p = u(gen);
			std::string plan = p < 0.5 ? "basic" : p < 0.8 ? "pro" : "enterprise";
			double eta = kIntercept + kAge * a + kPhone * phone +
			             (missing ? kRevenue * 5 + kRevenueMissing : kRevenue * r) +
			             (plan == "pro"          ? kPro
			              : plan == "enterprise" ? kEnterprise
			                                     : 0);
			double y = u(gen) < 1 / (1 + std::exp(-eta)) ? 1 : 0;
			out.push_back(row({a, phone, missing ? Value() : Value(r), plan}, y));
		}
		return out;
	}();
	return rows;
}

Model fit_planted(double lambda)
{
	TrainOptions options;
	options.lambda = lambda;
	return train(kPlantedFeatures, options, source(planted_rows()));
}

// x of a term for a row of the planted data (no "(other)" level there).
double term_x(const Term &t, const Row &r)
{
	if (t.kind == TermKind::intercept)
		return 1;
	const Value &v = r.values[t.column];
	bool missing = std::holds_alternative<std::monostate>(v);
	switch (t.kind) {
	case TermKind::value:
		return missing ? t.mean : std::get<double>(v);
	case TermKind::missing_indicator:
		return missing ? 1 : 0;
	default:
		return (missing ? "(missing)" : std::get<std::string>(v)) == t.level ? 1 : 0;
	}
}

double norm(const Model &m)
{
	double s = 0;
	for (size_t i = 1; i < m.terms.size(); i++)
		s += m.terms[i].std_coefficient * m.terms[i].std_coefficient;
	return std::sqrt(s);
}

} // namespace

TEST(Train, RecoversPlantedModel)
{
	Model m = fit_planted(0);
	EXPECT_TRUE(m.info.converged);
	EXPECT_LE(m.info.iterations, 10);
	EXPECT_EQ(m.info.rows, 20000);
	EXPECT_EQ(m.info.passes, 2 + m.info.iterations); // statistics, start, one per step (no halving needed)

	struct Expected {
		const char *name;
		double coefficient, tolerance;
	};
	// Tolerances are about 3 standard errors of each estimate.
	for (const Expected &e :
	     {Expected{"(intercept)", kIntercept, 0.25}, Expected{"age", kAge, 0.006}, Expected{"has_phone", kPhone, 0.12},
	      Expected{"revenue", kRevenue, 0.03}, Expected{"revenue is missing", kRevenueMissing, 0.15},
	      Expected{"plan = pro", kPro, 0.15}, Expected{"plan = enterprise", kEnterprise, 0.15}}) {
		const Term &t = term(m, e.name);
		EXPECT_NEAR(t.coefficient, e.coefficient, e.tolerance) << e.name;
		EXPECT_DOUBLE_EQ(t.odds_ratio, std::exp(t.coefficient)) << e.name;
		if (t.kind != TermKind::intercept) {
			EXPECT_NEAR(t.std_coefficient, t.coefficient * t.std, 1e-12) << e.name;
		}
	}

	// Layout: intercept, then each column's terms in column order, the reference level first.
	std::vector<std::string> names;
	for (const Term &t : m.terms)
		names.push_back(t.name());
	EXPECT_EQ(names, (std::vector<std::string>{"(intercept)", "age", "has_phone", "revenue", "revenue is missing",
	                                           "plan = basic", "plan = pro", "plan = enterprise"}));
	const Term &basic = term(m, "plan = basic");
	EXPECT_EQ(basic.kind, TermKind::reference_level);
	EXPECT_EQ(basic.coefficient, 0);
	const Term &revenue = term(m, "revenue");
	EXPECT_NEAR(revenue.mean, 5, 0.05);
	EXPECT_NEAR(term(m, "revenue is missing").mean, 0.2, 0.01);
	EXPECT_EQ(revenue.count + term(m, "revenue is missing").count, 20000);
	EXPECT_NO_THROW(m.validate());

	EXPECT_NEAR(m.info.deviance, -2 * m.info.log_likelihood, 1e-9);
	EXPECT_LT(m.info.deviance, m.info.null_deviance);
	EXPECT_NEAR(m.info.objective, -m.info.log_likelihood, 1e-9);
}

// At the optimum the gradient of the objective is 0, term by term: the objective is the one documented.
TEST(Train, OptimalityConditions)
{
	for (double lambda : {0.0, 1.0, 250.0}) {
		Model m = fit_planted(lambda);
		ASSERT_TRUE(m.info.converged);
		std::vector<double> gradient(m.terms.size(), 0);
		double log_likelihood = 0;
		for (const Row &r : planted_rows()) {
			double p = m.predict(r.values).probability;
			log_likelihood += r.label == 1 ? std::log(p) : std::log(1 - p);
			for (size_t i = 0; i < m.terms.size(); i++) {
				const Term &t = m.terms[i];
				double z = i == 0 ? 1 : t.std > 0 ? (term_x(t, r) - t.mean) / t.std : 0;
				gradient[i] += (r.label - p) * z;
			}
		}
		for (size_t i = 0; i < m.terms.size(); i++) {
			const Term &t = m.terms[i];
			if (t.kind == TermKind::reference_level)
				continue; // not a column of the fit
			double penalty = i == 0 ? 0 : lambda * t.std_coefficient;
			// The fit stops at a Newton step below 1e-8: a gradient of about 1e-8 x the Hessian (~ rows / 4).
			EXPECT_NEAR(gradient[i], penalty, 1e-4) << "lambda " << lambda << ", " << t.name();
		}
		EXPECT_NEAR(log_likelihood, m.info.log_likelihood, 1e-6);
		EXPECT_NEAR(m.info.objective, -log_likelihood + lambda / 2 * norm(m) * norm(m), 1e-6);
	}
}

TEST(Train, PenaltyShrinksCoefficientsButNotTheIntercept)
{
	double previous = INFINITY;
	for (double lambda : {0.0, 100.0, 1000.0, 10000.0}) {
		Model m = fit_planted(lambda);
		EXPECT_LT(norm(m), previous) << lambda;
		previous = norm(m);
	}
	// An overwhelming penalty leaves the intercept-only model: the log-odds of the base rate.
	Model m = fit_planted(1e12);
	EXPECT_LT(norm(m), 1e-6);
	double rate = (double) m.info.positives / (double) m.info.rows;
	EXPECT_NEAR(m.terms[0].std_coefficient, std::log(rate / (1 - rate)), 1e-9);
	EXPECT_NEAR(m.info.deviance, m.info.null_deviance, 1e-6);
}

// x = 0: 1 converted of 4; x = 1: 3 of 4.
std::vector<Row> two_by_two()
{
	std::vector<Row> rows;
	for (int i = 0; i < 4; i++) {
		rows.push_back(row({0.0}, i == 0 ? 1 : 0));
		rows.push_back(row({1.0}, i == 0 ? 0 : 1));
	}
	return rows;
}

TEST(Train, HandComputedMaximumLikelihood)
{
	// Without penalty the fit is saturated: intercept = logit(1/4), coefficient = logit(3/4) - logit(1/4).
	std::vector<Row> rows = two_by_two();
	TrainOptions options;
	options.lambda = 0;
	Model m = train({{"x", FeatureKind::boolean}}, options, source(rows));
	EXPECT_TRUE(m.info.converged);
	EXPECT_NEAR(m.terms[0].coefficient, -std::log(3), 1e-9);
	EXPECT_NEAR(m.terms[1].coefficient, std::log(9), 1e-9);
	EXPECT_NEAR(m.terms[1].odds_ratio, 9, 1e-8);
	EXPECT_DOUBLE_EQ(m.terms[1].mean, 0.5);
	EXPECT_DOUBLE_EQ(m.terms[1].std, 0.5);
	EXPECT_NEAR(m.terms[1].std_coefficient, std::log(3), 1e-9); // per standard deviation (0.5)
	EXPECT_NEAR(m.terms[0].std_coefficient, 0, 1e-9);           // the average lead: a rate of 1/2
	EXPECT_NEAR(m.info.log_likelihood, 2 * std::log(0.25) + 6 * std::log(0.75), 1e-9);
	EXPECT_NEAR(m.info.null_deviance, 16 * std::log(2), 1e-12);
	EXPECT_NEAR(m.predict({1.0}).probability, 0.75, 1e-9);
	EXPECT_NEAR(m.predict({0.0}).log_odds, -std::log(3), 1e-9);
}

TEST(Train, HandComputedPenalty)
{
	// Standardised, z = +-1 and the intercept is 0 by symmetry; the optimum solves 2 (3 - 4 sigmoid(w)) = lambda w.
	// For lambda = 2 / (3 ln 2): w = ln 2, so the coefficient per unit of x is 2 ln 2 and the intercept -ln 2.
	std::vector<Row> rows = two_by_two();
	TrainOptions options;
	options.lambda = 2 / (3 * std::log(2));
	Model m = train({{"x", FeatureKind::boolean}}, options, source(rows));
	EXPECT_TRUE(m.info.converged);
	EXPECT_NEAR(m.terms[1].std_coefficient, std::log(2), 1e-9);
	EXPECT_NEAR(m.terms[1].coefficient, std::log(4), 1e-9);
	EXPECT_NEAR(m.terms[0].coefficient, -std::log(2), 1e-9);
	EXPECT_NEAR(m.terms[0].std_coefficient, 0, 1e-9);
	double ll = 6 * std::log(2.0 / 3) + 2 * std::log(1.0 / 3);
	EXPECT_NEAR(m.info.log_likelihood, ll, 1e-9);
	EXPECT_NEAR(m.info.objective, -ll + std::log(2) / 3, 1e-9);
	EXPECT_NEAR(m.predict({1.0}).probability, 2.0 / 3, 1e-9);
}

std::vector<Row> plans()
{
	// a: 3 of 6, b: 1 of 4, c: 2 of 3, missing: 3 of 4.
	std::vector<Row> rows;
	auto add = [&](Value v, int n, int converted) {
		for (int i = 0; i < n; i++)
			rows.push_back(row({v}, i < converted ? 1 : 0));
	};
	add(std::string("a"), 6, 3);
	add(std::string("b"), 4, 1);
	add(std::string("c"), 3, 2);
	add(Value(), 4, 3);
	return rows;
}

TEST(Train, CategoricalLevels)
{
	std::vector<Row> rows = plans();
	TrainOptions options;
	options.lambda = 0;
	Model m = train({{"plan", FeatureKind::categorical}}, options, source(rows));
	// Saturated: each level's log-odds against the reference "a" (the most frequent, log-odds 0).
	std::vector<std::string> names;
	for (const Term &t : m.terms)
		names.push_back(t.name());
	EXPECT_EQ(names, (std::vector<std::string>{"(intercept)", "plan = a", "plan = (missing)", "plan = b", "plan = c"}));
	EXPECT_NEAR(m.terms[0].coefficient, 0, 1e-9);
	EXPECT_NEAR(term(m, "plan = b").coefficient, -std::log(3), 1e-8);
	EXPECT_NEAR(term(m, "plan = c").coefficient, std::log(2), 1e-8);
	EXPECT_NEAR(term(m, "plan = (missing)").coefficient, std::log(3), 1e-8);
	EXPECT_EQ(term(m, "plan = c").count, 3);
	EXPECT_NEAR(m.predict({Value()}).probability, 0.75, 1e-9);
	// An unseen level counts as the reference when there is no "(other)" level.
	EXPECT_NEAR(m.predict({std::string("zzz")}).probability, 0.5, 1e-9);

	// c is rarer than 4 rows: it becomes "(other)", which also takes unseen levels.
	options.min_level_count = 4;
	m = train({{"plan", FeatureKind::categorical}}, options, source(rows));
	EXPECT_NEAR(term(m, "plan = (other)").coefficient, std::log(2), 1e-8);
	EXPECT_NEAR(m.predict({std::string("c")}).probability, 2.0 / 3, 1e-9);
	EXPECT_NEAR(m.predict({std::string("zzz")}).probability, 2.0 / 3, 1e-9);
	EXPECT_EQ(m.contributions({std::string("zzz")}).features[0].level, "(other)");

	// At most one level besides "(missing)" and "(other)": b and c are grouped.
	options.min_level_count = 1;
	options.max_levels = 1;
	m = train({{"plan", FeatureKind::categorical}}, options, source(rows));
	EXPECT_EQ(term(m, "plan = (other)").count, 7);
	EXPECT_NEAR(term(m, "plan = (other)").coefficient, std::log(3.0 / 4), 1e-8); // 3 of 7 against 1/2
}

TEST(Train, InterceptOnlyAndConstantColumns)
{
	std::vector<Row> rows;
	for (int i = 0; i < 10; i++)
		rows.push_back(row({7.0, Value()}, i < 3 ? 1 : 0));
	TrainOptions options;
	options.lambda = 0;
	Model m = train({{"constant", FeatureKind::numeric}, {"empty", FeatureKind::numeric}}, options, source(rows));
	EXPECT_TRUE(m.info.converged);
	EXPECT_NEAR(m.terms[0].coefficient, std::log(3.0 / 7), 1e-9);
	for (size_t i = 1; i < m.terms.size(); i++) {
		EXPECT_EQ(m.terms[i].std, 0) << m.terms[i].name();
		EXPECT_EQ(m.terms[i].coefficient, 0) << m.terms[i].name();
	}
	EXPECT_EQ(term(m, "constant").mean, 7);
	EXPECT_EQ(term(m, "empty is missing").count, 10);

	Model none = train({}, options, source({row({}, 1), row({}, 0)}));
	EXPECT_EQ(none.terms.size(), 1u);
	EXPECT_NEAR(none.predict({}).probability, 0.5, 1e-12);
}

TEST(Train, ContributionsSumToLogOdds)
{
	Model m = fit_planted(1);
	for (size_t i = 0; i < 50; i++) {
		const Row &r = planted_rows()[i * 97];
		Prediction p = m.predict(r.values);
		Explanation e = m.contributions(r.values);
		ASSERT_EQ(e.features.size(), 4u);
		double sum = e.baseline;
		for (const Contribution &c : e.features)
			sum += c.log_odds;
		EXPECT_DOUBLE_EQ(sum, p.log_odds);
		EXPECT_NEAR(p.probability, 1 / (1 + std::exp(-p.log_odds)), 1e-15);
		// The original-scale coefficients give the same log-odds.
		double direct = m.terms[0].coefficient;
		for (size_t k = 1; k < m.terms.size(); k++)
			direct += m.terms[k].coefficient * term_x(m.terms[k], r);
		EXPECT_NEAR(direct, p.log_odds, 1e-9);
	}
	EXPECT_DOUBLE_EQ(m.contributions({30.0, 0.0, Value(), std::string("pro")}).baseline, m.terms[0].std_coefficient);
	Explanation e = m.contributions({30.0, 0.0, Value(), std::string("pro")});
	EXPECT_EQ(e.features[2].feature, "revenue");
	EXPECT_EQ(e.features[2].level, "(missing)");
	EXPECT_EQ(e.features[3].level, "pro");
	EXPECT_EQ(e.features[0].level, "");
}

// The training AUC comes from the last Newton pass, at the final coefficients: it equals the AUC of the
// model's predictions of the training rows, and the log-likelihood their log-loss. Also when not converged.
TEST(Train, TrainingAucAndLogLikelihoodAreThoseOfTheFinalModel)
{
	for (int iterations : {1, 100}) {
		TrainOptions options;
		options.max_iterations = iterations;
		Model m = train(kPlantedFeatures, options, source(planted_rows()));
		std::vector<Outcome> outcomes;
		double log_likelihood = 0;
		for (const Row &r : planted_rows()) {
			Prediction p = m.predict(r.values);
			outcomes.push_back({p.log_odds, r.label == 1});
			log_likelihood += r.label == 1 ? std::log(p.probability) : std::log(1 - p.probability);
		}
		ASSERT_TRUE(m.info.auc.has_value());
		EXPECT_NEAR(*m.info.auc, *auc(outcomes), 1e-12);
		EXPECT_NEAR(m.info.log_likelihood, log_likelihood, 1e-6 * std::fabs(log_likelihood));
	}
	TrainOptions off;
	off.training_auc = false;
	EXPECT_FALSE(train(kPlantedFeatures, off, source(planted_rows())).info.auc.has_value());
}

// A rare class with a large effect: the full Newton steps overshoot and are shortened, the fit still reaches
// the saturated optimum (1 of 100 converted without x, 4 of 5 with it).
TEST(Train, ShortensOvershootingSteps)
{
	std::vector<Row> rows;
	for (int i = 0; i < 100; i++)
		rows.push_back(row({0.0}, i == 0));
	for (int i = 0; i < 5; i++)
		rows.push_back(row({1.0}, i != 0));
	TrainOptions options;
	options.lambda = 0;
	Model m = train({{"x", FeatureKind::boolean}}, options, source(rows));
	EXPECT_TRUE(m.info.converged);
	EXPECT_GT(m.info.passes, m.info.iterations + 2);
	EXPECT_NEAR(m.terms[0].coefficient, std::log(1.0 / 99), 1e-8);
	EXPECT_NEAR(m.terms[1].coefficient, std::log(4.0) - std::log(1.0 / 99), 1e-8);
}

TEST(Train, IterationLimit)
{
	TrainOptions options;
	options.lambda = 0;
	options.max_iterations = 1;
	Model m = train(kPlantedFeatures, options, source(planted_rows()));
	EXPECT_FALSE(m.info.converged);
	EXPECT_EQ(m.info.iterations, 1);
}

TEST(TrainErrors, Data)
{
	std::vector<FeatureSpec> f = {{"x", FeatureKind::numeric}};
	std::vector<Row> none;
	expect_error([&] { Trainer(f).fit(source(none)); }, kDataException, "without rows");
	std::vector<Row> ones = {row({1.0}, 1), row({2.0}, 1)};
	expect_error([&] { train(f, {}, source(ones)); }, kDataException, "all 2 training rows have label 1");

	Trainer t(f);
	expect_error([&] { t.add_row(row({NAN}, 0)); }, kNumericOutOfRange, "column \"x\": value nan is not finite");
	expect_error([&] { t.add_row(row({INFINITY}, 0)); }, kNumericOutOfRange, "not finite");
	expect_error([&] { t.add_row(row({1.0}, 2)); }, kInvalidParameter, "label must be 0 or 1");
	expect_error([&] { t.add_row(row({1.0}, NAN)); }, kInvalidParameter, "label must be 0 or 1");
	expect_error([&] { t.add_row(row({std::string("a")}, 0)); }, kInvalidParameter, "is numeric: its values must be");
	expect_error([&] { t.add_row(row({1.0, 2.0}, 0)); }, kInvalidParameter, "has 2 values for 1 columns");

	Trainer b({{"flag", FeatureKind::boolean}, {"plan", FeatureKind::categorical}});
	expect_error([&] { b.add_row(row({0.5, Value()}, 0)); }, kInvalidParameter, "is boolean");
	expect_error([&] { b.add_row(row({1.0, 3.0}, 0)); }, kInvalidParameter, "\"plan\" is categorical");
}

TEST(TrainErrors, OptionsAndFeatures)
{
	TrainOptions o;
	o.lambda = -1;
	expect_error([&] { Trainer({}, o); }, kInvalidParameter, "lambda");
	o.lambda = NAN;
	expect_error([&] { Trainer({}, o); }, kInvalidParameter, "lambda");
	o = {};
	o.max_iterations = 0;
	expect_error([&] { Trainer({}, o); }, kInvalidParameter, "max_iterations");
	o = {};
	o.max_levels = 0;
	expect_error([&] { Trainer({}, o); }, kInvalidParameter, "max_levels");
	expect_error([&] { Trainer({{"x"}, {"x"}}); }, kInvalidParameter, "\"x\" is listed twice");
	expect_error([&] { Trainer({{""}}); }, kInvalidParameter, "empty name");
}

TEST(TrainErrors, Limits)
{
	TrainOptions o;
	o.max_distinct = 5;
	Trainer t({{"email", FeatureKind::categorical}}, o);
	for (int i = 0; i < 5; i++)
		t.add_row(row({std::to_string(i)}, i % 2));
	expect_error([&] { t.add_row(row({std::string("5")}, 0)); }, kProgramLimitExceeded,
	             "column \"email\" has more than 5 distinct values: too many categories");

	std::vector<Row> rows;
	for (int i = 0; i < 20; i++)
		rows.push_back(row({std::to_string(i % 10)}, i % 2));
	o = {};
	o.max_columns = 5;
	expect_error(
		[&] {
			train({{"plan", FeatureKind::categorical}}, o, source(rows));
		},
		kProgramLimitExceeded, "the model would have 10 columns, more than max_columns (5)");
}

TEST(TrainErrors, Singular)
{
	// Collinear columns: no unique maximum-likelihood fit, a penalty makes it unique.
	std::vector<Row> rows;
	for (int i = 0; i < 20; i++)
		rows.push_back(row({(double) (i % 7), (double) (i % 7)}, i % 3 == 0));
	std::vector<FeatureSpec> f = {{"x"}, {"copy"}};
	TrainOptions o;
	o.lambda = 0;
	expect_error([&] { train(f, o, source(rows)); }, kDataException, "collinear");
	o.lambda = 1;
	Model m = train(f, o, source(rows));
	EXPECT_TRUE(m.info.converged);
	EXPECT_NEAR(m.terms[1].coefficient, m.terms[2].coefficient, 1e-9);

	// Separated classes: with a penalty, a finite fit.
	std::vector<Row> separated;
	for (int i = 0; i < 20; i++)
		separated.push_back(row({(double) i}, i >= 10));
	Model s = train({{"x"}}, {}, source(separated));
	EXPECT_TRUE(s.info.converged);
	EXPECT_GT(s.terms[1].coefficient, 0);
	EXPECT_GT(s.predict({19.0}).probability, 0.9);
	// Without a penalty the likelihood has no maximum: the weights of the rows vanish as the coefficient grows.
	o.lambda = 0;
	expect_error([&] { train({{"x"}}, o, source(separated)); }, kDataException, "separate the classes perfectly");
}

TEST(TrainErrors, RowsChangedBetweenPasses)
{
	std::vector<Row> rows = two_by_two();
	Trainer t({{"x", FeatureKind::boolean}});
	for (const Row &r : rows)
		t.add_row(r);
	rows.pop_back();
	expect_error([&] { t.fit(source(rows)); }, kDataException,
	             "changed between passes: 8 rows (4 positive) at first, 7 (3) now");
}

TEST(TrainErrors, Cancel)
{
	int polls = 0;
	TrainOptions o;
	o.should_stop = [&polls] { return ++polls > 3; };
	// Polled during the statistics pass, then in the Newton passes and solves.
	expect_error([&] { train(kPlantedFeatures, o, source(planted_rows())); }, kQueryCanceled, "canceling statement");
	EXPECT_EQ(polls, 4);

	int limit = 40;
	polls = 0;
	o.should_stop = [&] { return ++polls > limit; };
	Trainer t(kPlantedFeatures, o);
	for (const Row &r : planted_rows())
		t.add_row(r);
	expect_error([&] { t.fit(source(planted_rows())); }, kQueryCanceled, "canceling statement due to user request");
	EXPECT_EQ(polls, limit + 1);
}

TEST(ModelData, ValidateAndPredictErrors)
{
	Model m = fit_planted(1);
	expect_error([&] { m.predict({1.0}); }, kInvalidParameter, "model has 4 columns, got 1 values");
	expect_error([&] { m.predict({1.0, 1.0, 1.0, 1.0}); }, kInvalidParameter, "\"plan\" is categorical");
	expect_error([&] { m.predict({NAN, 1.0, 1.0, Value()}); }, kNumericOutOfRange, "not finite");

	Model bad = m;
	std::swap(bad.terms[1], bad.terms[3]);
	expect_error([&] { bad.validate(); }, kInvalidParameter, "invalid model: term \"has_phone\" is out of order");
	bad = m;
	bad.terms[5].coefficient = 1;
	expect_error([&] { bad.validate(); }, kInvalidParameter, "reference level \"plan = basic\" must have");
	bad = m;
	bad.terms[2].feature = "phone";
	expect_error([&] { bad.validate(); }, kInvalidParameter, "names column \"phone\", not \"has_phone\"");
	bad = m;
	bad.terms.erase(bad.terms.begin());
	expect_error([&] { bad.validate(); }, kInvalidParameter, "the first term must be the intercept");
	expect_error([&] { bad.predict({1.0, 1.0, 1.0, Value()}); }, kInvalidParameter, "intercept");
}
