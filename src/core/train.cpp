// leadscore core: streaming L2-regularised logistic regression (see train.h).
#include "train.h"

#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

namespace leadscore::core {

namespace {

const std::string kMissingLevel = "(missing)";
const std::string kOtherLevel = "(other)";
const std::string kInterceptName = "(intercept)";

// The statistics pass and each Newton pass poll should_stop this often (rows).
constexpr int64_t kPollRows = 1024;
// A step that increases the objective is shortened at most this many times (by 2 to 10 each time).
constexpr int kMaxBacktracks = 20;

std::string quoted(const std::string &name)
{
	return "\"" + name + "\"";
}

[[noreturn]] void fail(const char *sqlstate, const std::string &message)
{
	throw Error(sqlstate, message);
}

void poll(const TrainOptions &options)
{
	if (options.should_stop && options.should_stop())
		fail(kQueryCanceled, "canceling statement due to user request");
}

std::string kind_name(FeatureKind kind)
{
	switch (kind) {
	case FeatureKind::numeric:
		return "numeric";
	case FeatureKind::boolean:
		return "boolean";
	case FeatureKind::categorical:
		return "categorical";
	}
	return "unknown";
}

// Checks a value against its column's kind; the glue converts SQL types, so a mismatch is its bug or a
// column whose kind was declared wrong.
// The error of a value that check_value refuses: out of the hot path.
[[noreturn, gnu::cold, gnu::noinline]] void refuse_value(const FeatureSpec &feature, const Value &value)
{
	std::string what = "column " + quoted(feature.name);
	if (feature.kind == FeatureKind::categorical)
		fail(kInvalidParameter, what + " is categorical: its values must be text");
	if (!std::holds_alternative<double>(value))
		fail(kInvalidParameter, what + " is " + kind_name(feature.kind) + ": its values must be numbers");
	double x = std::get<double>(value);
	if (!std::isfinite(x))
		fail(kNumericOutOfRange, what + ": value " + std::to_string(x) + " is not finite");
	fail(kInvalidParameter, what + " is boolean: value " + std::to_string(x) + " is neither 0 nor 1");
}

// Runs for every value of every pass.
inline void check_value(const FeatureSpec &feature, const Value &value)
{
	if (std::holds_alternative<std::monostate>(value))
		return;
	if (feature.kind == FeatureKind::categorical) {
		if (!std::holds_alternative<std::string>(value))
			refuse_value(feature, value);
		return;
	}
	const double *x = std::get_if<double>(&value);
	if (!x || !std::isfinite(*x) || (feature.kind == FeatureKind::boolean && *x != 0 && *x != 1))
		refuse_value(feature, value);
}

void check_row(const std::vector<FeatureSpec> &features, const Row &row)
{
	if (row.values.size() != features.size())
		fail(kInvalidParameter, "a training row has " + std::to_string(row.values.size()) + " values for " +
		                            std::to_string(features.size()) + " columns");
	if (row.label != 0 && row.label != 1)
		fail(kInvalidParameter, "label must be 0 or 1, not " + std::to_string(row.label));
	for (size_t c = 0; c < features.size(); c++)
		check_value(features[c], row.values[c]);
}

void check_features(const std::vector<FeatureSpec> &features)
{
	std::set<std::string> names;
	for (const FeatureSpec &f : features) {
		if (f.name.empty())
			fail(kInvalidParameter, "a feature column has an empty name");
		if (f.name == kInterceptName)
			fail(kInvalidParameter, "a feature column cannot be named " + quoted(kInterceptName));
		if (!names.insert(f.name).second)
			fail(kInvalidParameter, "feature column " + quoted(f.name) + " is listed twice");
	}
}

// log(1 + e^x) without overflow.
double softplus(double x)
{
	return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

double sigmoid(double x)
{
	if (x >= 0)
		return 1 / (1 + std::exp(-x));
	double e = std::exp(x);
	return e / (1 + e);
}

// The design matrix of train.h, as positions in the dense vector z of a row (position 0 is the intercept).
// Only columns with a non-zero std get a position: a constant column cannot be estimated.
struct FeatureDesign {
	int value = -1, indicator = -1;              // numeric and boolean
	std::unordered_map<std::string, int> levels; // categorical: level -> position, -1 = none (reference)
	int other = -1;                              // position for unseen levels, -1 = reference
	std::vector<int> positions;                  // categorical: every position of the column's levels
};

struct Design {
	std::vector<Term> terms;   // coefficients filled after the fit
	std::vector<int> position; // per term; -1 for a reference level or a constant column
	std::vector<double> zero;  // per position: z where the column's x is 0
	std::vector<double> one;   // per position: z where the column's x is 1
	std::vector<double> mean, sd;
	std::vector<double> shift; // per position: x~ = x - shift is what run_pass accumulates (see there)
	std::vector<FeatureDesign> features;

	size_t size() const { return zero.size(); }

	int add(Term term)
	{
		int pos = -1;
		if (term.std > 0) {
			pos = (int) zero.size();
			zero.push_back(-term.mean / term.std);
			one.push_back((1 - term.mean) / term.std);
			mean.push_back(term.mean);
			sd.push_back(term.std);
			shift.push_back(term.kind == TermKind::value ? term.mean : 0);
		}
		terms.push_back(std::move(term));
		position.push_back(pos);
		return pos;
	}

	// The non-zero x~ = x - shift of a checked row, by ascending position (the intercept left out): a numeric
	// value centred on its mean (an imputed one is 0), a missing indicator or a categorical level that holds (1).
	void encode_sparse(const std::vector<FeatureSpec> &specs, const std::vector<Value> &values, std::vector<int> &idx,
	                   std::vector<double> &val) const
	{
		idx.clear();
		val.clear();
		for (size_t c = 0; c < specs.size(); c++) {
			const FeatureDesign &f = features[c];
			const Value &v = values[c];
			bool missing = std::holds_alternative<std::monostate>(v);
			if (specs[c].kind != FeatureKind::categorical) {
				if (f.value >= 0 && !missing) {
					idx.push_back(f.value);
					val.push_back(std::get<double>(v) - shift[f.value]);
				}
				if (f.indicator >= 0 && missing) {
					idx.push_back(f.indicator);
					val.push_back(1);
				}
				continue;
			}
			auto it = f.levels.find(missing ? kMissingLevel : std::get<std::string>(v));
			int p = it != f.levels.end() ? it->second : f.other;
			if (p >= 0) {
				idx.push_back(p);
				val.push_back(1);
			}
		}
	}

	// z of a checked row.
	void encode(const std::vector<FeatureSpec> &specs, const std::vector<Value> &values, std::vector<double> &z) const
	{
		z[0] = 1;
		for (size_t c = 0; c < specs.size(); c++) {
			const FeatureDesign &f = features[c];
			const Value &v = values[c];
			bool missing = std::holds_alternative<std::monostate>(v);
			if (specs[c].kind != FeatureKind::categorical) {
				// A missing value is imputed with the mean: z = 0.
				if (f.value >= 0)
					z[f.value] = missing ? 0 : (std::get<double>(v) - mean[f.value]) / sd[f.value];
				if (f.indicator >= 0)
					z[f.indicator] = missing ? one[f.indicator] : zero[f.indicator];
				continue;
			}
			for (int p : f.positions)
				z[p] = zero[p];
			auto it = f.levels.find(missing ? kMissingLevel : std::get<std::string>(v));
			int p = it != f.levels.end() ? it->second : f.other;
			if (p >= 0)
				z[p] = one[p];
		}
	}
};

Term make_term(TermKind kind, const FeatureSpec &feature, int column, std::string level, double mean, double sd,
               int64_t count)
{
	Term t;
	t.kind = kind;
	t.feature = feature.name;
	t.level = std::move(level);
	t.column = column;
	t.mean = mean;
	t.std = sd;
	t.count = count;
	return t;
}

// A 0/1 column that holds on `count` of `rows` rows.
Term indicator_term(TermKind kind, const FeatureSpec &feature, int column, std::string level, int64_t count,
                    int64_t rows)
{
	double p = (double) count / (double) rows;
	return make_term(kind, feature, column, std::move(level), p, std::sqrt(p * (1 - p)), count);
}

// Statistics of one pass over the rows at coefficients b (standardised scale, b[0] the intercept).
struct Pass {
	int64_t rows = 0, positives = 0;
	double log_likelihood = 0;
	double objective = 0;
	std::vector<double> gradient;  // of the log-likelihood minus the penalty: the Newton system's right side
	std::vector<double> hessian;   // of the objective, lower triangle, row-major q x q
	std::vector<Outcome> outcomes; // (log-odds, label) of every row, when TrainOptions::training_auc
};

// The sums are taken on x~ = x - shift, sparse (categorical levels and missing indicators are mostly 0, and
// numeric columns are centred on their mean so that no precision is lost), and turned into the standardised
// scale z = c x~ + d (c = 1 / sd, d = -(mean - shift) / sd; z0 = x~0 = 1) once per pass:
//     g_z[j] = c_j G[j] + d_j G[0],  H_z[j][k] = c_j c_k H[j][k] + c_j d_k H[j][0] + d_j c_k H[k][0] + d_j d_k H[0][0]
// so a row costs (non-zeros)^2 rather than columns^2.
Pass run_pass(const std::vector<FeatureSpec> &specs, const Design &design, const TrainOptions &options,
              const RowSource &rows, const std::vector<double> &b, int64_t expected_rows)
{
	size_t q = design.size();
	Pass pass;
	std::vector<double> c(q, 1), d(q, 0), beta(q, 0);
	for (size_t j = 1; j < q; j++) {
		c[j] = 1 / design.sd[j];
		d[j] = -(design.mean[j] - design.shift[j]) / design.sd[j];
	}
	beta[0] = b[0];
	for (size_t j = 1; j < q; j++) {
		beta[j] = b[j] * c[j];
		beta[0] += b[j] * d[j];
	}
	std::vector<double> g(q, 0), h(q * q, 0);
	std::vector<int> idx;
	std::vector<double> val;
	idx.reserve(q);
	val.reserve(q);
	if (options.training_auc)
		pass.outcomes.reserve(expected_rows);
	rows([&](const Row &row) {
		if (++pass.rows % kPollRows == 0)
			poll(options);
		check_row(specs, row);
		design.encode_sparse(specs, row.values, idx, val);
		size_t nz = idx.size();
		double eta = beta[0];
		for (size_t a = 0; a < nz; a++)
			eta += beta[idx[a]] * val[a];
		double y = row.label;
		pass.positives += y == 1;
		pass.log_likelihood -= softplus(eta) - y * eta;
		if (options.training_auc)
			pass.outcomes.push_back({eta, y == 1});
		double mu = sigmoid(eta);
		double w = mu * (1 - mu);
		double r = y - mu;
		double *hp = h.data();
		g[0] += r;
		hp[0] += w;
		if (nz + 1 == q) {
			// Every position present (dense numeric rows): idx[a] = a + 1, a plain loop the compiler vectorises.
			const double *x = val.data();
			for (size_t a = 0; a < nz; a++) {
				g[a + 1] += r * x[a];
				double wx = w * x[a];
				double *hj = hp + (a + 1) * q;
				hj[0] += wx;
				double *hk = hj + 1;
				for (size_t e = 0; e <= a; e++)
					hk[e] += wx * x[e];
			}
			return;
		}
		for (size_t a = 0; a < nz; a++) {
			size_t j = idx[a];
			double xa = val[a];
			g[j] += r * xa;
			double wx = w * xa;
			double *hj = hp + j * q;
			hj[0] += wx;
			for (size_t e = 0; e <= a; e++)
				hj[idx[e]] += wx * val[e];
		}
	});
	pass.gradient.assign(q, 0);
	pass.hessian.assign(q * q, 0);
	for (size_t j = 0; j < q; j++) {
		pass.gradient[j] = c[j] * g[j] + d[j] * g[0];
		for (size_t k = 0; k <= j; k++)
			pass.hessian[j * q + k] = c[j] * c[k] * h[j * q + k] + c[j] * d[k] * h[j * q] + d[j] * c[k] * h[k * q] +
			                          d[j] * d[k] * h[0];
	}
	double penalty = 0;
	for (size_t j = 1; j < q; j++) {
		penalty += b[j] * b[j];
		pass.gradient[j] -= options.lambda * b[j];
		pass.hessian[j * q + j] += options.lambda;
	}
	pass.objective = -pass.log_likelihood + options.lambda / 2 * penalty;
	return pass;
}

// Solves A x = g for the symmetric positive definite A given by its lower triangle (row-major q x q) by a
// Cholesky factorisation; false when A is not numerically positive definite.
bool cholesky_solve(std::vector<double> a, size_t q, std::vector<double> g, std::vector<double> &x,
                    const TrainOptions &options)
{
	for (size_t j = 0; j < q; j++) {
		poll(options);
		double *aj = a.data() + j * q;
		double diagonal = aj[j];
		double d = diagonal;
		for (size_t k = 0; k < j; k++)
			d -= aj[k] * aj[k];
		// A pivot lost to rounding means a column is (nearly) a combination of the previous ones.
		if (!(d > 1e-12 * diagonal) || !std::isfinite(d))
			return false;
		d = std::sqrt(d);
		aj[j] = d;
		for (size_t i = j + 1; i < q; i++) {
			double *ai = a.data() + i * q;
			double s = ai[j];
			for (size_t k = 0; k < j; k++)
				s -= ai[k] * aj[k];
			ai[j] = s / d;
		}
	}
	// L y = g, then L' x = y.
	for (size_t i = 0; i < q; i++) {
		const double *ai = a.data() + i * q;
		for (size_t k = 0; k < i; k++)
			g[i] -= ai[k] * g[k];
		g[i] /= ai[i];
	}
	for (size_t i = q; i-- > 0;) {
		for (size_t k = i + 1; k < q; k++)
			g[i] -= a[k * q + i] * g[k];
		g[i] /= a[i * q + i];
	}
	x = std::move(g);
	return true;
}

} // namespace

void TrainOptions::validate() const
{
	if (!(std::isfinite(lambda) && lambda >= 0))
		fail(kInvalidParameter, "lambda must be a finite number >= 0");
	if (max_iterations < 1)
		fail(kInvalidParameter, "max_iterations must be at least 1");
	if (!(step_tolerance >= 0) || !(objective_tolerance >= 0))
		fail(kInvalidParameter, "tolerances must be >= 0");
	if (min_level_count < 1 || max_levels < 1 || max_distinct < 1 || max_columns < 1)
		fail(kInvalidParameter, "min_level_count, max_levels, max_distinct and max_columns must be at least 1");
}

std::string Term::name() const
{
	switch (kind) {
	case TermKind::intercept:
		return kInterceptName;
	case TermKind::value:
		return feature;
	case TermKind::missing_indicator:
		return feature + " is missing";
	case TermKind::level:
	case TermKind::reference_level:
		return feature + " = " + level;
	}
	return feature;
}

Trainer::Trainer(std::vector<FeatureSpec> features, TrainOptions options)
	: features_(std::move(features)), options_(std::move(options)), stats_(features_.size())
{
	options_.validate();
	check_features(features_);
}

void Trainer::set_lambda(double lambda)
{
	TrainOptions changed = options_;
	changed.lambda = lambda;
	changed.validate();
	options_ = std::move(changed);
}

void Trainer::add_row(const Row &row)
{
	if ((rows_ + 1) % kPollRows == 0)
		poll(options_);
	check_row(features_, row);
	for (size_t c = 0; c < features_.size(); c++) {
		ColumnStats &s = stats_[c];
		const Value &v = row.values[c];
		if (features_[c].kind == FeatureKind::categorical) {
			bool missing = std::holds_alternative<std::monostate>(v);
			const std::string &level = missing ? kMissingLevel : std::get<std::string>(v);
			s.levels[level]++;
			// A column with that many values is an identifier or free text: its levels would not generalise.
			if ((int64_t) s.levels.size() > options_.max_distinct)
				fail(kProgramLimitExceeded, "column " + quoted(features_[c].name) + " has more than " +
				                                std::to_string(options_.max_distinct) +
				                                " distinct values: too many categories (leave the column out or "
				                                "raise max_distinct)");
		} else if (std::holds_alternative<std::monostate>(v))
			s.missing++;
		else {
			double x = std::get<double>(v);
			s.present++;
			double delta = x - s.mean;
			s.mean += delta / (double) s.present;
			s.m2 += delta * (x - s.mean);
		}
	}
	rows_++;
	positives_ += row.label == 1;
}

Model Trainer::fit(const RowSource &rows) const
{
	if (rows_ == 0)
		fail(kDataException, "cannot train a model without rows");
	if (positives_ == 0 || positives_ == rows_)
		fail(kDataException, "all " + std::to_string(rows_) + " training rows have label " +
		                         (positives_ == 0 ? "0" : "1") + ": both classes are needed");

	Design design;
	FeatureSpec intercept{kInterceptName, FeatureKind::numeric};
	// The intercept is the one column with mean 0 and std 1 (z = 1): it is position 0.
	design.add(make_term(TermKind::intercept, intercept, -1, "", 0, 1, rows_));
	design.zero[0] = design.one[0] = 1;
	design.features.resize(features_.size());
	double n = (double) rows_;
	for (size_t c = 0; c < features_.size(); c++) {
		const FeatureSpec &spec = features_[c];
		const ColumnStats &s = stats_[c];
		FeatureDesign &f = design.features[c];
		int column = (int) c;
		if (spec.kind != FeatureKind::categorical) {
			// Imputed rows sit at the mean: they add nothing to the sum of squares, only to the count.
			f.value = design.add(make_term(TermKind::value, spec, column, "", s.mean, std::sqrt(s.m2 / n), s.present));
			if (s.missing > 0)
				f.indicator = design.add(
					indicator_term(TermKind::missing_indicator, spec, column, "", s.missing, rows_));
			continue;
		}

		std::vector<std::pair<std::string, int64_t>> levels;
		int64_t missing = 0, other = 0;
		for (const auto &[level, count] : s.levels) {
			if (level == kMissingLevel)
				missing = count;
			else if (level == kOtherLevel)
				other = count;
			else
				levels.emplace_back(level, count);
		}
		auto by_count = [](const auto &a, const auto &b) {
			return a.second != b.second ? a.second > b.second : a.first < b.first;
		};
		std::sort(levels.begin(), levels.end(), by_count);
		size_t kept = 0;
		while (kept < levels.size() && kept < (size_t) options_.max_levels &&
		       levels[kept].second >= options_.min_level_count)
			kept++;
		for (size_t i = kept; i < levels.size(); i++)
			other += levels[i].second;
		levels.resize(kept);
		// The reference is the most frequent named level (small standard errors for the others, and odds
		// ratios against a real level); "(missing)" or "(other)" only when there is no named level.
		if (missing > 0)
			levels.emplace_back(kMissingLevel, missing);
		if (other > 0)
			levels.emplace_back(kOtherLevel, other);
		std::sort(levels.begin() + (kept > 0 ? 1 : 0), levels.end(), by_count);
		for (size_t i = 0; i < levels.size(); i++) {
			const auto &[level, count] = levels[i];
			if (i == 0) {
				// No position: its mean and std stay in the model as the level's share of the rows.
				design.terms.push_back(indicator_term(TermKind::reference_level, spec, column, level, count, rows_));
				design.position.push_back(-1);
				f.levels[level] = -1;
				continue;
			}
			int pos = design.add(indicator_term(TermKind::level, spec, column, level, count, rows_));
			f.levels[level] = pos;
			if (pos >= 0)
				f.positions.push_back(pos);
			if (level == kOtherLevel)
				f.other = pos;
		}
	}
	size_t q = design.size();
	if (q > (size_t) options_.max_columns)
		fail(kProgramLimitExceeded, "the model would have " + std::to_string(q) + " columns, more than max_columns (" +
		                                std::to_string(options_.max_columns) +
		                                "): lower max_levels or leave columns out");

	int passes = 1;
	auto replay = [&](const std::vector<double> &b) {
		Pass pass = run_pass(features_, design, options_, rows, b, rows_);
		passes++;
		if (pass.rows != rows_ || pass.positives != positives_)
			fail(kDataException, "the training rows changed between passes: " + std::to_string(rows_) + " rows (" +
			                         std::to_string(positives_) + " positive) at first, " + std::to_string(pass.rows) +
			                         " (" + std::to_string(pass.positives) + ") now");
		return pass;
	};
	auto singular = [&]() {
		fail(kDataException, "cannot fit the model: columns are collinear or separate the classes perfectly "
		                     "(use lambda > 0 or leave columns out)");
	};

	// Start from the intercept-only model: the first Newton step is then small for the intercept.
	double base_rate = (double) positives_ / n;
	std::vector<double> b(q, 0), step;
	b[0] = std::log(base_rate / (1 - base_rate));
	Pass current = replay(b);
	FitInfo info;
	while (true) {
		if (!cholesky_solve(current.hessian, q, current.gradient, step, options_))
			singular();
		double largest = 0;
		for (double s : step)
			largest = std::max(largest, std::fabs(s));
		if (!std::isfinite(largest))
			singular();
		if (largest <= options_.step_tolerance) {
			info.converged = true;
			break;
		}
		if (info.iterations == options_.max_iterations)
			break;

		// Newton overshoots far from the optimum (large effects, rare classes): shorten the step until the
		// objective does not increase beyond rounding. Each try is a pass over the rows, so the new length is
		// the minimum of the parabola through f(0), f'(0) and f(t) rather than a blind halving.
		double slack = 1e-13 * current.objective;
		double slope = 0; // f'(0) along the step: -g' H^-1 g < 0
		for (size_t j = 0; j < q; j++)
			slope -= current.gradient[j] * step[j];
		double t = 1;
		std::vector<double> next_b(q);
		Pass next;
		bool decreased = false;
		for (int h = 0; h <= kMaxBacktracks; h++) {
			for (size_t j = 0; j < q; j++)
				next_b[j] = b[j] + t * step[j];
			next = replay(next_b);
			if (next.objective <= current.objective + slack) {
				decreased = true;
				break;
			}
			double shorter = -slope * t * t / (2 * (next.objective - current.objective - slope * t));
			t = std::isfinite(shorter) ? std::clamp(shorter, t / 10, t / 2) : t / 2;
		}
		if (!decreased)
			break;
		info.iterations++;
		double change = std::fabs(current.objective - next.objective);
		b = std::move(next_b);
		current = std::move(next);
		// A much shortened step says nothing about how close the optimum is.
		if (t == 1 && change <= options_.objective_tolerance * current.objective) {
			info.converged = true;
			break;
		}
	}

	Model model;
	model.features = features_;
	model.terms = std::move(design.terms);
	double intercept_shift = 0;
	for (size_t i = 1; i < model.terms.size(); i++) {
		Term &t = model.terms[i];
		int pos = design.position[i];
		if (pos < 0)
			continue;
		t.std_coefficient = b[pos];
		t.coefficient = b[pos] / t.std;
		t.odds_ratio = std::exp(t.coefficient);
		intercept_shift += t.coefficient * t.mean;
	}
	Term &icpt = model.terms[0];
	icpt.std_coefficient = b[0];
	icpt.coefficient = b[0] - intercept_shift;
	icpt.odds_ratio = std::exp(icpt.coefficient);

	info.rows = rows_;
	info.positives = positives_;
	info.lambda = options_.lambda;
	info.passes = passes;
	info.log_likelihood = current.log_likelihood;
	info.deviance = -2 * current.log_likelihood;
	info.null_deviance = -2 * (base_rate * std::log(base_rate) + (1 - base_rate) * std::log(1 - base_rate)) * n;
	info.objective = current.objective;
	// The last pass ran at the final coefficients: its log-odds are the model's predictions of the rows.
	if (options_.training_auc)
		info.auc = auc(current.outcomes);
	model.info = info;
	return model;
}

Model train(const std::vector<FeatureSpec> &features, const TrainOptions &options, const RowSource &rows)
{
	Trainer trainer(features, options);
	rows([&](const Row &row) { trainer.add_row(row); });
	return trainer.fit(rows);
}

void Model::validate() const
{
	auto invalid = [](const std::string &message) { fail(kInvalidParameter, "invalid model: " + message); };
	check_features(features);
	if (terms.empty() || terms[0].kind != TermKind::intercept || terms[0].column != -1)
		invalid("the first term must be the intercept");
	int last = -1;
	std::set<std::pair<int, std::string>> seen; // (column, kind-or-level)
	std::vector<int> references(features.size(), 0);
	for (size_t i = 0; i < terms.size(); i++) {
		const Term &t = terms[i];
		if (!std::isfinite(t.coefficient) || !std::isfinite(t.std_coefficient) || !std::isfinite(t.mean) ||
		    !std::isfinite(t.std))
			invalid("term " + quoted(t.name()) + " has a non-finite number");
		if (i == 0)
			continue;
		if (t.kind == TermKind::intercept || t.column < last || t.column >= (int) features.size() || t.column < 0)
			invalid("term " + quoted(t.name()) + " is out of order");
		last = t.column;
		const FeatureSpec &f = features[t.column];
		if (t.feature != f.name)
			invalid("term " + quoted(t.name()) + " names column " + quoted(t.feature) + ", not " + quoted(f.name));
		bool categorical = t.kind == TermKind::level || t.kind == TermKind::reference_level;
		if (categorical != (f.kind == FeatureKind::categorical))
			invalid("term " + quoted(t.name()) + " does not fit the kind of column " + quoted(f.name));
		std::string key = categorical ? "=" + t.level : t.kind == TermKind::value ? "value" : "missing";
		if (!seen.emplace(t.column, key).second)
			invalid("term " + quoted(t.name()) + " is listed twice");
		if (t.kind == TermKind::reference_level) {
			references[t.column]++;
			if (t.coefficient != 0)
				invalid("reference level " + quoted(t.name()) + " must have coefficient 0");
		}
	}
	for (size_t c = 0; c < features.size(); c++)
		if (references[c] > 1)
			invalid("column " + quoted(features[c].name) + " has several reference levels");
}

namespace {

// The centred contributions of Explanation; explanation may be null (predict).
double log_odds_of(const Model &model, const std::vector<Value> &values, Explanation *explanation)
{
	if (values.size() != model.features.size())
		fail(kInvalidParameter, "model has " + std::to_string(model.features.size()) + " columns, got " +
		                            std::to_string(values.size()) + " values");
	if (model.terms.empty() || model.terms[0].kind != TermKind::intercept)
		fail(kInvalidParameter, "invalid model: the first term must be the intercept");
	const std::vector<Term> &terms = model.terms;
	double log_odds = terms[0].std_coefficient;
	if (explanation) {
		explanation->baseline = log_odds;
		explanation->features.clear();
	}
	size_t i = 1;
	for (size_t c = 0; c < model.features.size(); c++) {
		const FeatureSpec &spec = model.features[c];
		const Value &v = values[c];
		check_value(spec, v);
		size_t end = i;
		while (end < terms.size() && terms[end].column == (int) c)
			end++;
		bool missing = std::holds_alternative<std::monostate>(v);
		double sum = 0;
		std::string level;
		if (spec.kind != FeatureKind::categorical) {
			for (size_t k = i; k < end; k++) {
				const Term &t = terms[k];
				if (t.kind == TermKind::value && !missing)
					sum += t.coefficient * (std::get<double>(v) - t.mean);
				else if (t.kind == TermKind::missing_indicator)
					sum += t.coefficient * ((missing ? 1 : 0) - t.mean);
			}
			if (missing)
				level = kMissingLevel;
		} else {
			level = missing ? kMissingLevel : std::get<std::string>(v);
			size_t applied = end;
			for (size_t k = i; k < end && applied == end; k++)
				if (terms[k].level == level)
					applied = k;
			for (size_t k = i; k < end && applied == end; k++)
				if (terms[k].level == kOtherLevel)
					applied = k;
			if (applied != end)
				level = terms[applied].level;
			for (size_t k = i; k < end; k++)
				sum += terms[k].coefficient * ((k == applied ? 1 : 0) - terms[k].mean);
		}
		log_odds += sum;
		if (explanation)
			explanation->features.push_back({spec.name, level, sum});
		i = end;
	}
	if (i != terms.size())
		fail(kInvalidParameter, "invalid model: term " + quoted(terms[i].name()) + " is out of order");
	return log_odds;
}

} // namespace

Prediction Model::predict(const std::vector<Value> &values) const
{
	double log_odds = log_odds_of(*this, values, nullptr);
	return {log_odds, sigmoid(log_odds)};
}

Explanation Model::contributions(const std::vector<Value> &values) const
{
	Explanation explanation;
	log_odds_of(*this, values, &explanation);
	return explanation;
}

} // namespace leadscore::core
