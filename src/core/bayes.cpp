// leadscore core: naive Bayes over categorical field values (see bayes.h).
#include "bayes.h"

#include "metrics.h"

#include <algorithm>
#include <cmath>

namespace leadscore::core {

namespace {

const std::string kMissing = "(missing)";
const std::string kOther = "(other)";

[[noreturn]] void fail(const char *sqlstate, const std::string &message)
{
	throw Error(sqlstate, message);
}

std::string quoted(const std::string &name)
{
	return "\"" + name + "\"";
}

} // namespace

void BayesOptions::validate() const
{
	if (!(std::isfinite(alpha) && alpha > 0))
		fail(kInvalidParameter, "alpha must be a finite number > 0");
	if (min_level_count < 1 || max_levels < 1 || max_distinct < 1)
		fail(kInvalidParameter, "min_level_count, max_levels and max_distinct must be at least 1");
}

BayesTrainer::BayesTrainer(std::vector<FeatureSpec> features, BayesOptions options)
	: features_(std::move(features)), options_(std::move(options)), levels_(features_.size())
{
	options_.validate();
	// The same name checks as the logistic trainer's.
	TrainOptions check;
	Trainer names(features_, check);
	for (const FeatureSpec &f : features_)
		if (f.kind != FeatureKind::categorical)
			fail(kInvalidParameter, "naive Bayes counts field values: column " + quoted(f.name) +
			                            " must be categorical (cast it to text, or bin it)");
}

void BayesTrainer::add_row(const Row &row)
{
	if ((rows_ + 1) % 1024 == 0 && options_.should_stop && options_.should_stop())
		fail(kQueryCanceled, "canceling statement due to user request");
	if (row.values.size() != features_.size())
		fail(kInvalidParameter, "a training row has " + std::to_string(row.values.size()) + " values for " +
		                            std::to_string(features_.size()) + " columns");
	if (row.label != 0 && row.label != 1)
		fail(kInvalidParameter, "label must be 0 or 1, not " + std::to_string(row.label));
	bool positive = row.label == 1;
	for (size_t c = 0; c < features_.size(); c++) {
		const Value &v = row.values[c];
		if (!std::holds_alternative<std::monostate>(v) && !std::holds_alternative<std::string>(v))
			fail(kInvalidParameter, "column " + quoted(features_[c].name) + " is categorical: its values must be text");
		const std::string &level = std::holds_alternative<std::monostate>(v) ? kMissing : std::get<std::string>(v);
		Counts &counts = levels_[c][level];
		(positive ? counts.positives : counts.negatives)++;
		if ((int64_t) levels_[c].size() > options_.max_distinct)
			fail(kProgramLimitExceeded, "column " + quoted(features_[c].name) + " has more than " +
			                                std::to_string(options_.max_distinct) +
			                                " distinct values: too many categories (leave the column out or raise "
			                                "max_distinct)");
	}
	rows_++;
	positives_ += positive;
}

Model BayesTrainer::fit() const
{
	if (rows_ == 0)
		fail(kDataException, "cannot train a model without rows");
	if (positives_ == 0 || positives_ == rows_)
		fail(kDataException, "all " + std::to_string(rows_) + " training rows have label " +
		                         (positives_ == 0 ? "0" : "1") + ": both classes are needed");
	const double n = (double) rows_, pos = (double) positives_, neg = n - pos, alpha = options_.alpha;

	Model model;
	model.features = features_;
	Term intercept;
	intercept.kind = TermKind::intercept;
	intercept.feature = "(intercept)";
	intercept.count = rows_;
	double log_odds = std::log(pos / neg); // intercept on the original scale
	double centred = 0;                    // sum of coefficient x mean, for the average lead
	std::vector<Term> terms;
	for (size_t c = 0; c < features_.size(); c++) {
		// Levels as the logistic trainer chooses them: by count, ties by name; "(missing)" kept apart.
		std::vector<std::pair<std::string, Counts>> named;
		Counts missing, other;
		bool has_missing = false;
		for (const auto &[level, counts] : levels_[c]) {
			if (level == kMissing) {
				missing = counts;
				has_missing = true;
			} else if (level == kOther) {
				other.positives += counts.positives;
				other.negatives += counts.negatives;
			} else
				named.emplace_back(level, counts);
		}
		auto total = [](const Counts &k) { return k.positives + k.negatives; };
		std::sort(named.begin(), named.end(), [&](const auto &a, const auto &b) {
			return total(a.second) != total(b.second) ? total(a.second) > total(b.second) : a.first < b.first;
		});
		size_t kept = 0;
		while (kept < named.size() && kept < (size_t) options_.max_levels &&
		       total(named[kept].second) >= options_.min_level_count)
			kept++;
		for (size_t i = kept; i < named.size(); i++) {
			other.positives += named[i].second.positives;
			other.negatives += named[i].second.negatives;
		}
		named.resize(kept);
		if (has_missing)
			named.emplace_back(kMissing, missing);
		named.emplace_back(kOther, other); // always: where values unseen in training go
		// With no named level the most frequent of "(missing)" and "(other)" is the reference.
		std::sort(named.begin() + (kept > 0 ? 1 : 0), named.end(), [&](const auto &a, const auto &b) {
			return total(a.second) != total(b.second) ? total(a.second) > total(b.second) : a.first < b.first;
		});
		double levels = (double) named.size();
		// A value never seen in training ("(other)" without rows) says nothing: weight 0, as Odoo ignores it.
		// (Its smoothed estimate, log((neg + a L) / (pos + a L)), would pull every unseen value to 50/50.)
		auto weight = [&](const Counts &k) {
			if (k.positives + k.negatives == 0)
				return 0.0;
			return std::log(((double) k.positives + alpha) / (pos + alpha * levels)) -
			       std::log(((double) k.negatives + alpha) / (neg + alpha * levels));
		};
		double reference = weight(named[0].second);
		log_odds += reference;
		for (size_t i = 0; i < named.size(); i++) {
			Term t;
			t.kind = i == 0 ? TermKind::reference_level : TermKind::level;
			t.feature = features_[c].name;
			t.level = named[i].first;
			t.column = (int) c;
			t.count = total(named[i].second);
			t.mean = (double) t.count / n;
			t.std = std::sqrt(t.mean * (1 - t.mean));
			t.coefficient = i == 0 ? 0 : weight(named[i].second) - reference;
			t.std_coefficient = t.coefficient * t.std;
			t.odds_ratio = std::exp(t.coefficient);
			centred += t.coefficient * t.mean;
			terms.push_back(std::move(t));
		}
	}
	intercept.coefficient = log_odds;
	intercept.std_coefficient = log_odds + centred;
	intercept.odds_ratio = std::exp(log_odds);
	intercept.mean = 1;
	model.terms.push_back(std::move(intercept));
	for (Term &t : terms)
		model.terms.push_back(std::move(t));
	model.info.rows = rows_;
	model.info.positives = positives_;
	model.info.lambda = 0;
	model.info.iterations = 0;
	model.info.passes = 1;
	model.info.converged = true;
	model.validate();
	return model;
}

void evaluate_training(Model &model, const RowSource &rows)
{
	std::vector<Outcome> outcomes;
	outcomes.reserve(model.info.rows);
	double log_likelihood = 0;
	int64_t n = 0, positives = 0;
	rows([&](const Row &row) {
		Prediction p = model.predict(row.values);
		bool y = row.label == 1;
		outcomes.push_back({p.log_odds, y});
		// log sigmoid(+-z) without overflow.
		double z = y ? p.log_odds : -p.log_odds;
		log_likelihood -= z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
		n++;
		positives += y;
	});
	model.info.log_likelihood = log_likelihood;
	model.info.deviance = -2 * log_likelihood;
	if (n > 0 && positives > 0 && positives < n) {
		double rate = (double) positives / (double) n;
		model.info.null_deviance = -2 * (double) n * (rate * std::log(rate) + (1 - rate) * std::log(1 - rate));
	}
	model.info.objective = -log_likelihood;
	model.info.auc = auc(outcomes);
}

} // namespace leadscore::core
