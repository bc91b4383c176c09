// Cross-validation of the L2 penalty (core/cross_validation.h): folds, the held-out metrics against a
// by-hand computation with the same folds, the choice of lambda, errors.
#include "cross_validation.h"
#include "metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace leadscore::core;

namespace {

// Rows of y ~ Bernoulli(sigmoid(1.5 x1 - x2 + noise columns)): a few informative columns and many noise
// columns, where a penalty helps on held-out rows.
std::vector<Row> make_rows(int n, int noise, unsigned seed)
{
	std::mt19937_64 rng(seed);
	std::normal_distribution<double> normal;
	std::uniform_real_distribution<double> uniform;
	std::vector<Row> rows;
	for (int i = 0; i < n; i++) {
		Row r;
		double x1 = normal(rng), x2 = normal(rng);
		r.values.emplace_back(x1);
		r.values.emplace_back(x2);
		for (int j = 0; j < noise; j++)
			r.values.emplace_back(normal(rng));
		r.label = uniform(rng) < 1 / (1 + std::exp(-(1.5 * x1 - x2))) ? 1 : 0;
		rows.push_back(r);
	}
	return rows;
}

std::vector<FeatureSpec> specs(int noise)
{
	std::vector<FeatureSpec> out = {{"x1", FeatureKind::numeric}, {"x2", FeatureKind::numeric}};
	for (int j = 0; j < noise; j++)
		out.push_back({"noise" + std::to_string(j), FeatureKind::numeric});
	return out;
}

RowSource source(const std::vector<Row> &rows)
{
	return [&rows](const RowVisitor &visit) {
		for (const Row &r : rows)
			visit(r);
	};
}

} // namespace

TEST(CrossValidation, FoldsAreBalancedAndStable)
{
	std::vector<int> count(5, 0);
	for (int64_t i = 0; i < 100000; i++) {
		int f = cv_fold(i, 5);
		ASSERT_GE(f, 0);
		ASSERT_LT(f, 5);
		EXPECT_EQ(f, cv_fold(i, 5));
		count[f]++;
	}
	for (int c : count)
		EXPECT_NEAR(c, 20000, 600);
}

TEST(CrossValidation, DefaultLambdasAreSklearnsCs)
{
	std::vector<double> l = default_cv_lambdas();
	ASSERT_EQ(l.size(), 10u);
	EXPECT_DOUBLE_EQ(l.front(), 1e4);
	EXPECT_NEAR(l.back(), 1e-4, 1e-18);
	for (size_t i = 1; i < l.size(); i++)
		EXPECT_NEAR(std::log10(l[i - 1] / l[i]), 8.0 / 9, 1e-12);
}

// Each (lambda, fold) point equals a model trained by hand on the fold's training rows and scored on its
// held-out rows; the chosen lambda is the one of lowest mean held-out log loss.
TEST(CrossValidation, MatchesFoldsTrainedByHand)
{
	std::vector<Row> rows = make_rows(600, 15, 7);
	TrainOptions options;
	CvOptions cv{{100, 10, 1, 0.01}, 4};
	CvResult result = cross_validate(specs(15), options, cv, source(rows));
	ASSERT_EQ(result.lambdas.size(), 4u);
	int64_t total = 0;
	for (int64_t r : result.fold_rows)
		total += r;
	EXPECT_EQ(total, 600);
	for (size_t c = 0; c < cv.lambdas.size(); c++) {
		const CvLambda &point = result.lambdas[c];
		EXPECT_EQ(point.lambda, cv.lambdas[c]);
		double mean = 0;
		for (int f = 0; f < cv.folds; f++) {
			std::vector<Row> train, held;
			for (size_t i = 0; i < rows.size(); i++)
				(cv_fold((int64_t) i, cv.folds) == f ? held : train).push_back(rows[i]);
			TrainOptions o = options;
			o.lambda = cv.lambdas[c];
			Model m = leadscore::core::train(specs(15), o, source(train));
			double loss = 0;
			std::vector<Outcome> outcomes;
			for (const Row &r : held) {
				Prediction p = m.predict(r.values);
				loss += r.label == 1 ? -std::log(p.probability) : -std::log(1 - p.probability);
				outcomes.push_back({p.log_odds, r.label == 1});
			}
			EXPECT_NEAR(point.fold_log_loss[f], loss / (double) held.size(), 1e-9) << c << " " << f;
			ASSERT_TRUE(point.fold_auc[f]);
			EXPECT_NEAR(*point.fold_auc[f], *auc(outcomes), 1e-12);
			mean += loss / (double) held.size() / cv.folds;
		}
		EXPECT_NEAR(point.mean_log_loss, mean, 1e-9);
	}
	for (const CvLambda &point : result.lambdas)
		EXPECT_GE(point.mean_log_loss, result.lambdas[result.best].mean_log_loss);
	// With 15 noise columns on 450 training rows, some penalty beats none on held-out rows.
	EXPECT_GT(result.lambdas[result.best].lambda, 0.01);
}

TEST(CrossValidation, Errors)
{
	std::vector<Row> rows = make_rows(50, 0, 3);
	TrainOptions options;
	EXPECT_THROW(cross_validate(specs(0), options, CvOptions{{}, 5}, source(rows)), Error);
	EXPECT_THROW(cross_validate(specs(0), options, CvOptions{{1, 1}, 5}, source(rows)), Error);
	EXPECT_THROW(cross_validate(specs(0), options, CvOptions{{-1}, 5}, source(rows)), Error);
	EXPECT_THROW(cross_validate(specs(0), options, CvOptions{{NAN}, 5}, source(rows)), Error);
	EXPECT_THROW(cross_validate(specs(0), options, CvOptions{{1}, 1}, source(rows)), Error);
	std::vector<Row> few(rows.begin(), rows.begin() + 3);
	try {
		cross_validate(specs(0), options, CvOptions{{1}, 5}, source(few));
		ADD_FAILURE() << "3 rows in 5 folds";
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kDataException);
	}
	// A fold whose training rows have a single class: the error names the fold.
	std::vector<Row> one = rows;
	for (Row &r : one)
		r.label = 0;
	one[0].label = 1;
	try {
		cross_validate(specs(0), options, CvOptions{{1}, 5}, source(one));
		ADD_FAILURE() << "a single positive";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("fold "), std::string::npos) << e.what();
	}
}
