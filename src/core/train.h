// leadscore core: predictive scoring, an L2-regularised logistic regression trained by streaming rows.
// No PostgreSQL header may be included here or in any file of src/core.
//
// Training reads the data several times without keeping it: pass 1 (Trainer::add_row) collects the
// statistics of each input column, then every Newton (IRLS) iteration replays the rows through a callback
// of the caller (Trainer::fit). Memory is bounded by columns^2 (the Hessian), never by rows.
//
// Design matrix, built from pass 1:
// - numeric and boolean columns: the value. A missing value is replaced by the mean of the column's values
//   (mean imputation) and, when the column had any missing value in pass 1, an indicator column
//   "<col> is missing" (1 when missing) is added, so that missingness may carry its own effect.
// - categorical columns: one 0/1 column per level, except a reference level (the most frequent, ties by
//   name, "(missing)" and "(other)" only when no other level is left) whose effect is the intercept's, so
//   that coefficients are identifiable without a penalty and read as odds ratios against that level. A
//   missing value is its own level "(missing)" (never grouped). Levels seen fewer than min_level_count
//   times, and the levels beyond the max_levels most frequent ones, are grouped into the level "(other)".
//   A value equal to "(missing)" or "(other)" is the same level as those.
// - every column is standardised, z = (x - mean) / std with the population std of the column as it enters
//   the fit (after imputation), as scikit-learn's StandardScaler does. A constant column (std 0) is kept in
//   the model with coefficient 0.
//
// Objective, on the standardised columns z and with an unpenalised intercept b:
//     sum over rows of log-loss(y, sigmoid(b + w.z)) + lambda / 2 * ||w||^2
// which is scikit-learn's LogisticRegression(C = 1 / lambda) on the standardised design (lambda = 0: the
// maximum-likelihood fit, LogisticRegression(penalty=None)). It is minimised by Newton's method (equivalent
// to IRLS) with a Cholesky solve, and a shorter step when a full one would increase the objective.
#pragma once

#include "score.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace leadscore::core {

// SQLSTATEs of training, besides kInvalidParameter (bad options, value of the wrong kind, label not 0/1).
inline constexpr const char *kDataException = "22000";        // no rows, a single class, singular fit
inline constexpr const char *kNumericOutOfRange = "22003";    // a non-finite value
inline constexpr const char *kProgramLimitExceeded = "54000"; // too many categories or design columns
inline constexpr const char *kQueryCanceled = "57014";        // should_stop returned true

enum class FeatureKind { numeric, boolean, categorical };

struct FeatureSpec {
	std::string name;
	FeatureKind kind = FeatureKind::numeric;
};

// One input value: missing (SQL NULL), a number (numeric columns; boolean columns take 0 or 1) or a
// string (categorical columns).
using Value = std::variant<std::monostate, double, std::string>;

struct Row {
	std::vector<Value> values; // one per FeatureSpec, in order
	double label = 0;          // 1 = converted, 0 = not
};

using RowVisitor = std::function<void(const Row &)>;
// Calls the visitor once per training row, the same rows in each call (their order does not matter). The
// visitor may throw (an Error, e.g. on cancel): the source must let the exception through cleanly.
using RowSource = std::function<void(const RowVisitor &)>;

struct TrainOptions {
	double lambda = 1;                  // L2 penalty on the standardised coefficients (= 1 / C), >= 0
	int max_iterations = 100;           // Newton steps, >= 1
	double step_tolerance = 1e-8;       // converged when max |Newton step| (standardised scale) is below
	double objective_tolerance = 1e-12; // or when a step changes the objective by less than this, relatively
	int64_t min_level_count = 1;        // rarer levels go to "(other)"
	int max_levels = 50;                // levels kept per categorical column, besides "(missing)" and "(other)"
	int64_t max_distinct = 10000;       // more distinct values in a categorical column is an Error (an id?)
	int max_columns = 1000;             // design columns; memory grows as columns^2, each solve as columns^3
	std::function<bool()> should_stop;  // polled in long loops; true throws Error(kQueryCanceled)
	bool training_auc = true;           // FitInfo::auc; costs 32 bytes per row during the fit

	// Throws Error(kInvalidParameter) on a negative or non-finite lambda, or non-positive limits.
	void validate() const;
};

enum class TermKind {
	intercept,
	value,             // the value of a numeric or boolean column
	missing_indicator, // 1 when the numeric or boolean column is missing
	level,             // 1 when the categorical column has this level
	reference_level    // the categorical column's reference level: coefficient 0 by construction
};

// One coefficient of the model; a model is a list of terms, stored as rows.
struct Term {
	TermKind kind = TermKind::intercept;
	std::string feature;        // input column; "(intercept)" for the intercept
	std::string level;          // level and reference_level terms; "(missing)" and "(other)" included
	int column = -1;            // index into Model::features, -1 for the intercept
	double coefficient = 0;     // original scale: log-odds per unit of the column
	double std_coefficient = 0; // standardised scale: log-odds per standard deviation of the column
	double odds_ratio = 1;      // exp(coefficient)
	double mean = 0;            // of the column (numeric: of its values, also the imputed value)
	double std = 0;             // population std after imputation; 0 for a constant column (coefficient 0)
	int64_t count = 0;          // rows where the value is present, the indicator or the level holds

	// "(intercept)", "age", "age is missing", "plan = pro".
	std::string name() const;
};

// The intercept's coefficient is the log-odds when every numeric column is 0, none is missing and every
// categorical column is at its reference level; its std_coefficient is the log-odds at the mean of every
// standardised column (the "average lead").
struct FitInfo {
	int64_t rows = 0, positives = 0;
	double lambda = 0;
	int iterations = 0; // Newton steps taken
	int passes = 0;     // replays of the rows, the statistics pass included
	bool converged = false;
	double log_likelihood = 0; // at the coefficients
	double deviance = 0;       // -2 log_likelihood
	double null_deviance = 0;  // of the intercept-only model
	double objective = 0;      // -log_likelihood + lambda / 2 * ||w||^2
	std::optional<double> auc; // on the training rows (TrainOptions::training_auc; none with one class)
};

struct Prediction {
	double log_odds = 0;
	double probability = 0;
};

struct Contribution {
	std::string feature;
	std::string level;   // categorical: the level applied (the value, "(other)", "(missing)"); "(missing)" for a
						 // missing numeric value; else empty
	double log_odds = 0; // sum of coefficient x (x - mean) over the column's terms
};

// Contributions are centred: baseline (the log-odds of the average lead) plus the contributions is the
// log-odds, and a column at its mean contributes 0 (for a linear model these are the SHAP values).
struct Explanation {
	double baseline = 0;
	std::vector<Contribution> features; // in the order of Model::features
};

// Plain data: the input columns and the terms (the intercept first, then each column's terms in the order of
// the columns). Prediction reads the intercept's std_coefficient and each term's coefficient and mean (the
// centred form, exact for large means), so a model read back from rows predicts the same.
struct Model {
	std::vector<FeatureSpec> features;
	std::vector<Term> terms;
	FitInfo info;

	// Throws Error(kInvalidParameter) when the terms do not fit the features (e.g. rows edited by hand).
	void validate() const;

	// Values as in training; the label is not needed. A missing numeric value takes the mean; a categorical
	// level unseen in training counts as "(other)" when the model has it, else as the reference level; a
	// missing categorical value as "(missing)" the same way.
	Prediction predict(const std::vector<Value> &values) const;
	Explanation contributions(const std::vector<Value> &values) const;
};

class Trainer {
public:
	// Throws Error(kInvalidParameter) on bad options, duplicate or empty feature names.
	Trainer(std::vector<FeatureSpec> features, TrainOptions options = {});

	// Pass 1: one training row. Throws on a wrong number or kind of values, a non-finite number, a boolean not
	// 0/1, a label not 0/1, too many distinct values in a categorical column.
	void add_row(const Row &row);

	// The Newton iterations, each replaying the rows added by add_row through `rows`. Throws on no rows, a
	// single class, rows that changed between passes, a singular fit (collinear columns or separated classes
	// without a penalty), cancel.
	Model fit(const RowSource &rows) const;

	// The penalty of the next fit (cross-validation fits one trainer's rows under several). Throws
	// Error(kInvalidParameter) unless finite and >= 0.
	void set_lambda(double lambda);

private:
	struct ColumnStats {
		int64_t missing = 0, present = 0;
		double mean = 0, m2 = 0;               // Welford, on present values
		std::map<std::string, int64_t> levels; // categorical: count per distinct value
	};

	std::vector<FeatureSpec> features_;
	TrainOptions options_;
	std::vector<ColumnStats> stats_;
	int64_t rows_ = 0, positives_ = 0;
};

// add_row for every row of `rows`, then fit(rows).
Model train(const std::vector<FeatureSpec> &features, const TrainOptions &options, const RowSource &rows);

} // namespace leadscore::core
