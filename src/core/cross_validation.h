// leadscore core: the L2 penalty of the logistic regression chosen by k-fold cross-validation, inside the
// database (leadscore.train_cv). No PostgreSQL header may be included here or in any file of src/core.
//
// The rows are split into k folds by their position in the source (row i goes to fold cv_fold(i, k), a
// hash of i: a random-looking split, the same in every call), so the source must give the same rows in the
// same order in every call (a tuplestore replayed does). For each fold, a Trainer sees the rows of the
// other folds; each candidate lambda is fitted on each fold's training rows, and scored on its held-out
// rows: their mean log loss and their AUC. The lambda chosen has the lowest mean held-out log loss over the
// folds (a tie: the larger lambda, the simpler model). Memory: one Trainer per fold (columns^2 each) and,
// while a lambda is scored, 16 bytes per row; passes over the rows: 1 + per lambda (the Newton passes of
// every fold's fit + 1).
#pragma once

#include "train.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace leadscore::core {

struct CvOptions {
	std::vector<double> lambdas; // the candidates, each finite and >= 0; at least one, each once
	int folds = 5;               // 2 to 100

	// Throws Error(kInvalidParameter) on no candidate, a negative, non-finite or repeated one, bad folds.
	void validate() const;
};

// The candidates sklearn's LogisticRegressionCV tries by default (Cs = 10: C from 1e-4 to 1e4 on a log
// scale), as lambda = 1 / C, largest first.
std::vector<double> default_cv_lambdas();

struct CvLambda {
	double lambda = 0;
	std::vector<std::optional<double>> fold_auc; // per fold, on its held-out rows (none: one class only)
	std::vector<double> fold_log_loss;           // per fold, the mean log loss of its held-out rows
	std::optional<double> mean_auc;              // over the folds that have one
	double mean_log_loss = 0;                    // over the folds
	int max_iterations = 0;                      // the most Newton steps a fold's fit took
	bool converged = true;                       // every fold's fit converged
};

struct CvResult {
	std::vector<CvLambda> lambdas;  // in the order of CvOptions::lambdas
	size_t best = 0;                // index of the lambda chosen
	std::vector<int64_t> fold_rows; // held-out rows per fold
	int passes = 0;                 // over the rows
};

// The fold of row i (0-based) among `folds`.
int cv_fold(int64_t row, int folds);

// Cross-validates `options` (its lambda ignored) over the candidates. Throws what a fit throws (e.g. a fold
// whose training rows have one class), the fold named; Error(kDataException) with fewer rows than folds.
CvResult cross_validate(const std::vector<FeatureSpec> &features, const TrainOptions &options, const CvOptions &cv,
                        const RowSource &rows);

} // namespace leadscore::core
