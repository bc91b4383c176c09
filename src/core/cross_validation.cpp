// leadscore core: cross-validation of the L2 penalty (see cross_validation.h).
#include "cross_validation.h"

#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace leadscore::core {

namespace {

[[noreturn]] void fail(const char *sqlstate, const std::string &message)
{
	throw Error(sqlstate, message);
}

std::string number(double x)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%g", x);
	return buf;
}

// splitmix64: a bijection of the 64-bit integers whose outputs look random.
uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

// Mean log loss of a probability for a label, the probability kept off 0 and 1 as scikit-learn's log_loss.
double log_loss(double p, double label)
{
	const double eps = 1e-15;
	p = std::min(std::max(p, eps), 1 - eps);
	return label == 1 ? -std::log(p) : -std::log(1 - p);
}

} // namespace

void CvOptions::validate() const
{
	if (lambdas.empty())
		fail(kInvalidParameter, "cross-validation needs at least one lambda");
	std::set<double> seen;
	for (double l : lambdas) {
		if (!(std::isfinite(l) && l >= 0))
			fail(kInvalidParameter, "every lambda must be a finite number >= 0");
		if (!seen.insert(l).second)
			fail(kInvalidParameter, "lambda " + number(l) + " is listed twice");
	}
	if (folds < 2 || folds > 100)
		fail(kInvalidParameter, "folds must be between 2 and 100");
}

std::vector<double> default_cv_lambdas()
{
	std::vector<double> out;
	for (int i = 0; i < 10; i++)
		out.push_back(std::pow(10.0, 4 - 8.0 * i / 9)); // 1 / C for C = logspace(-4, 4, 10)
	return out;
}

int cv_fold(int64_t row, int folds)
{
	return (int) (mix((uint64_t) row) % (uint64_t) folds);
}

CvResult cross_validate(const std::vector<FeatureSpec> &features, const TrainOptions &options, const CvOptions &cv,
                        const RowSource &rows)
{
	cv.validate();
	int k = cv.folds;
	TrainOptions fold_options = options;
	fold_options.training_auc = false; // scored on the held-out rows instead
	fold_options.lambda = cv.lambdas[0];
	std::vector<Trainer> trainers;
	trainers.reserve(k);
	for (int f = 0; f < k; f++)
		trainers.emplace_back(features, fold_options);

	CvResult result;
	result.fold_rows.assign(k, 0);
	// Pass 1: each fold's trainer counts the rows of the other folds.
	int64_t n = 0;
	rows([&](const Row &row) {
		int fold = cv_fold(n++, k);
		result.fold_rows[fold]++;
		for (int f = 0; f < k; f++)
			if (f != fold)
				trainers[f].add_row(row);
	});
	result.passes = 1;
	if (n < k)
		fail(kDataException, "cross-validation over " + std::to_string(k) + " folds needs at least " +
		                         std::to_string(k) + " rows, the query has " + std::to_string(n));

	std::vector<double> scores((size_t) n), labels((size_t) n);
	for (double lambda : cv.lambdas) {
		CvLambda point;
		point.lambda = lambda;
		std::vector<Model> models;
		for (int f = 0; f < k; f++) {
			RowSource training = [&rows, f, k](const RowVisitor &visit) {
				int64_t i = 0;
				rows([&](const Row &row) {
					if (cv_fold(i++, k) != f)
						visit(row);
				});
			};
			trainers[f].set_lambda(lambda);
			try {
				models.push_back(trainers[f].fit(training));
			} catch (const Error &e) {
				throw Error(e.sqlstate(), "fold " + std::to_string(f + 1) + " of " + std::to_string(k) + ", lambda " +
				                              number(lambda) + ": " + e.what());
			}
			result.passes += models.back().info.passes - 1; // (its statistics pass was the shared one)
			point.max_iterations = std::max(point.max_iterations, models.back().info.iterations);
			point.converged = point.converged && models.back().info.converged;
		}
		// One pass: each row scored by the model of the folds it was held out of.
		int64_t i = 0;
		rows([&](const Row &row) {
			int fold = cv_fold(i, k);
			scores[(size_t) i] = models[fold].predict(row.values).log_odds;
			labels[(size_t) i] = row.label;
			i++;
		});
		result.passes++;
		if (i != n)
			fail(kDataException,
			     "the training rows changed between passes: " + std::to_string(n) + " rows, then " + std::to_string(i));
		std::vector<std::vector<Outcome>> outcomes(k);
		std::vector<double> loss(k, 0);
		for (int64_t r = 0; r < n; r++) {
			int fold = cv_fold(r, k);
			double p = 1 / (1 + std::exp(-scores[(size_t) r]));
			loss[fold] += log_loss(p, labels[(size_t) r]);
			outcomes[fold].push_back(Outcome{scores[(size_t) r], labels[(size_t) r] == 1});
		}
		double auc_sum = 0;
		int auc_folds = 0;
		for (int f = 0; f < k; f++) {
			point.fold_log_loss.push_back(loss[f] / (double) result.fold_rows[f]);
			point.mean_log_loss += point.fold_log_loss.back() / k;
			point.fold_auc.push_back(auc(outcomes[f]));
			if (point.fold_auc.back()) {
				auc_sum += *point.fold_auc.back();
				auc_folds++;
			}
		}
		if (auc_folds > 0)
			point.mean_auc = auc_sum / auc_folds;
		result.lambdas.push_back(std::move(point));
	}
	for (size_t c = 1; c < result.lambdas.size(); c++) {
		const CvLambda &a = result.lambdas[c], &b = result.lambdas[result.best];
		if (a.mean_log_loss < b.mean_log_loss || (a.mean_log_loss == b.mean_log_loss && a.lambda > b.lambda))
			result.best = c;
	}
	return result;
}

} // namespace leadscore::core
