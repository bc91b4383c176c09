// leadscore core: AUC, lift, calibration and conversion per group (see metrics.h).
#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace leadscore::core {

namespace {

[[noreturn]] void invalid(const std::string &message)
{
	throw Error(kInvalidParameter, message);
}

void check_score(double score)
{
	if (std::isnan(score))
		invalid("a score is NaN");
}

// AUC from (positives, negatives) per distinct score, by ascending score. Pair counts stay exact in a double
// up to 2^53 (e.g. 90 million positives and as many negatives); twice the count keeps the ties' halves whole.
template <typename Groups>
std::optional<double> auc_of(const Groups &groups, int64_t positives, int64_t negatives)
{
	if (positives == 0 || negatives == 0)
		return std::nullopt;
	double twice_wins = 0, below = 0;
	for (const auto &[pos, neg] : groups) {
		twice_wins += (double) pos * (2 * below + (double) neg);
		below += (double) neg;
	}
	return twice_wins / (2 * (double) positives * (double) negatives);
}

std::optional<double> ratio(double num, double den)
{
	if (den == 0)
		return std::nullopt;
	return num / den;
}

} // namespace

std::optional<double> auc(const std::vector<Outcome> &outcomes)
{
	std::vector<Outcome> sorted = outcomes;
	for (const Outcome &o : sorted)
		check_score(o.score);
	std::sort(sorted.begin(), sorted.end(), [](const Outcome &a, const Outcome &b) { return a.score < b.score; });
	std::vector<std::pair<int64_t, int64_t>> groups;
	int64_t positives = 0, negatives = 0;
	for (size_t i = 0; i < sorted.size(); i++) {
		if (i == 0 || sorted[i].score != sorted[i - 1].score)
			groups.emplace_back(0, 0);
		(sorted[i].positive ? groups.back().first : groups.back().second)++;
		(sorted[i].positive ? positives : negatives)++;
	}
	return auc_of(groups, positives, negatives);
}

void AucAccumulator::add(double score, bool positive, int64_t count)
{
	check_score(score);
	if (count < 0)
		invalid("a count is negative");
	if (count == 0)
		return;
	auto &[pos, neg] = counts_[score];
	(positive ? pos : neg) += count;
	(positive ? positives_ : negatives_) += count;
}

void AucAccumulator::merge(const AucAccumulator &other)
{
	for (const auto &[score, counts] : other.counts_) {
		auto &[pos, neg] = counts_[score];
		pos += counts.first;
		neg += counts.second;
	}
	positives_ += other.positives_;
	negatives_ += other.negatives_;
}

std::optional<double> AucAccumulator::auc() const
{
	std::vector<std::pair<int64_t, int64_t>> groups;
	groups.reserve(counts_.size());
	for (const auto &entry : counts_)
		groups.push_back(entry.second);
	return auc_of(groups, positives_, negatives_);
}

std::vector<AucAccumulator::Entry> AucAccumulator::entries() const
{
	std::vector<Entry> result;
	result.reserve(counts_.size());
	for (const auto &[score, counts] : counts_)
		result.push_back({score, counts.first, counts.second});
	return result;
}

AucAccumulator AucAccumulator::from_entries(const std::vector<Entry> &entries)
{
	AucAccumulator acc;
	for (const Entry &e : entries) {
		acc.add(e.score, true, e.positives);
		acc.add(e.score, false, e.negatives);
	}
	return acc;
}

std::vector<LiftRow> lift_table(const std::vector<Outcome> &outcomes, int buckets)
{
	if (buckets < 1)
		invalid("the number of buckets must be at least 1");
	std::vector<Outcome> sorted = outcomes;
	for (const Outcome &o : sorted)
		check_score(o.score);
	std::sort(sorted.begin(), sorted.end(), [](const Outcome &a, const Outcome &b) { return a.score > b.score; });

	std::vector<LiftRow> rows(buckets);
	for (int k = 0; k < buckets; k++)
		rows[k].bucket = k + 1;
	int64_t n = (int64_t) sorted.size(), total_positives = 0;
	for (int64_t first = 0; first < n;) {
		int64_t last = first;
		while (last + 1 < n && sorted[last + 1].score == sorted[first].score)
			last++;
		// The middle rank is (first + last) / 2: its bucket is floor((first + last) * buckets / (2 n)).
		int64_t k = std::min<int64_t>((first + last) * buckets / (2 * n), buckets - 1);
		LiftRow &row = rows[k];
		for (int64_t i = first; i <= last; i++) {
			row.count++;
			row.positives += sorted[i].positive;
		}
		double score = sorted[first].score;
		row.max_score = row.max_score ? std::max(*row.max_score, score) : score;
		row.min_score = row.min_score ? std::min(*row.min_score, score) : score;
		first = last + 1;
	}
	for (const LiftRow &row : rows)
		total_positives += row.positives;

	std::optional<double> overall = ratio((double) total_positives, (double) n);
	int64_t cum_count = 0, cum_positives = 0;
	for (LiftRow &row : rows) {
		cum_count += row.count;
		cum_positives += row.positives;
		row.cumulative_count = cum_count;
		row.cumulative_positives = cum_positives;
		row.conversion_rate = ratio((double) row.positives, (double) row.count);
		std::optional<double> cum_rate = ratio((double) cum_positives, (double) cum_count);
		if (overall && *overall > 0) {
			if (row.conversion_rate)
				row.lift = *row.conversion_rate / *overall;
			if (cum_rate)
				row.cumulative_lift = *cum_rate / *overall;
			row.capture_rate = (double) cum_positives / (double) total_positives;
		}
	}
	return rows;
}

std::vector<CalibrationBin> calibration(const std::vector<Outcome> &outcomes, int bins)
{
	if (bins < 1)
		invalid("the number of bins must be at least 1");
	std::vector<CalibrationBin> result(bins);
	std::vector<double> sums(bins, 0);
	for (int k = 0; k < bins; k++) {
		result[k].lower = (double) k / bins;
		result[k].upper = (double) (k + 1) / bins;
	}
	for (const Outcome &o : outcomes) {
		if (!(o.score >= 0 && o.score <= 1))
			invalid("a predicted probability is outside [0, 1]: " + std::to_string(o.score));
		int k = std::min((int) (o.score * bins), bins - 1);
		result[k].count++;
		result[k].positives += o.positive;
		sums[k] += o.score;
	}
	for (int k = 0; k < bins; k++) {
		result[k].mean_predicted = ratio(sums[k], (double) result[k].count);
		result[k].observed_rate = ratio((double) result[k].positives, (double) result[k].count);
	}
	return result;
}

std::vector<GroupRate> conversion_by_group(const std::vector<GroupOutcome> &outcomes,
                                           const std::vector<std::string> &order)
{
	std::map<std::string, std::pair<int64_t, int64_t>> counts; // group -> (count, positives)
	std::pair<int64_t, int64_t> ungrouped{0, 0};
	for (const GroupOutcome &o : outcomes) {
		auto &c = o.group ? counts[*o.group] : ungrouped;
		c.first++;
		c.second += o.positive;
	}

	std::vector<GroupRate> result;
	auto emit = [&](std::optional<std::string> group, std::pair<int64_t, int64_t> c) {
		result.push_back({std::move(group), c.first, c.second, ratio((double) c.second, (double) c.first)});
	};
	std::set<std::string> listed;
	for (const std::string &group : order) {
		if (!listed.insert(group).second)
			invalid("group \"" + group + "\" is listed twice");
		auto it = counts.find(group);
		emit(group, it != counts.end() ? it->second : std::pair<int64_t, int64_t>{0, 0});
	}
	for (const auto &[group, c] : counts)
		if (!listed.count(group))
			emit(group, c);
	if (ungrouped.first > 0)
		emit(std::nullopt, ungrouped);
	return result;
}

} // namespace leadscore::core
