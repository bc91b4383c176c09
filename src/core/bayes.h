// leadscore core: a naive Bayes trainer over categorical field values, modelled on Odoo CRM's predictive lead
// scoring (frequencies of each field value among won and lost leads). No PostgreSQL header may be included
// here or in any file of src/core.
//
// P(converted | values) = P(1) prod_f P(v_f | 1) / (P(1) prod_f P(v_f | 1) + P(0) prod_f P(v_f | 0)), each
// P(v | class) smoothed: (count(v, class) + alpha) / (count(class) + alpha x levels_f) (Laplace, alpha = 1).
// The levels of a column are chosen as train.h's one-hot levels: NULL is "(missing)", rare levels and those
// beyond max_levels go to "(other)"; every column also has "(other)" for values unseen in training: when no
// training row went there, such a value is ignored (weight 0, as Odoo does), else it counts as those rows.
//
// The result is a plain Model (train.h) over categorical features: its log-odds is
//     log P(1)/P(0) + sum_f w(v_f),   w(v) = log P(v | 1) - log P(v | 0)
// written with the most frequent level of each column as reference (coefficient 0, its w folded into the
// intercept), so that it is stored, read back, predicted and explained exactly as a logistic model.
#pragma once

#include "train.h"

namespace leadscore::core {

struct BayesOptions {
	double alpha = 1;             // additive smoothing, > 0
	int64_t min_level_count = 1;  // rarer levels go to "(other)"
	int max_levels = 50;          // levels kept per column, besides "(missing)" and "(other)"
	int64_t max_distinct = 10000; // more distinct values in a column is an Error (an id?)
	std::function<bool()> should_stop;

	// Throws Error(kInvalidParameter) on alpha <= 0 or non-finite, non-positive limits.
	void validate() const;
};

class BayesTrainer {
public:
	// Every feature must be categorical (Error(kInvalidParameter) otherwise: cast numbers to text, or bin them).
	BayesTrainer(std::vector<FeatureSpec> features, BayesOptions options = {});

	// One training row (a single pass: the counts are all the model needs). Same checks as Trainer::add_row.
	void add_row(const Row &row);

	// Throws on no rows or a single class. info: rows, positives, iterations 0, converged; the likelihood
	// fields are left to evaluate_training.
	Model fit() const;

private:
	struct Counts {
		int64_t positives = 0, negatives = 0;
	};
	std::vector<FeatureSpec> features_;
	BayesOptions options_;
	std::vector<std::map<std::string, Counts>> levels_; // per column: level -> counts
	int64_t rows_ = 0, positives_ = 0;
};

// The model's log-likelihood, deviance, null deviance and AUC on the rows (one pass), into model.info.
void evaluate_training(Model &model, const RowSource &rows);

} // namespace leadscore::core
