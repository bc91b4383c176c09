// leadscore core: how well scores rank and predict conversions (AUC, lift per decile, calibration,
// conversion per group). No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include "score.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace leadscore::core {

// A scored lead and whether it converted. Scores may be infinite, never NaN (Error(kInvalidParameter)).
struct Outcome {
	double score = 0;
	bool positive = false;
};

// Area under the ROC curve: the probability that a random positive scores above a random negative, a tie
// counting 1/2 (the Mann-Whitney statistic). Exact, O(n log n). None when a class is absent.
std::optional<double> auc(const std::vector<Outcome> &outcomes);

// Exact AUC over a stream, mergeable (a parallel aggregate's partial states). It counts positives and
// negatives per distinct score, so its size is the number of distinct scores: round the scores to bound it.
class AucAccumulator {
public:
	struct Entry {
		double score = 0;
		int64_t positives = 0, negatives = 0;
	};

	void add(double score, bool positive, int64_t count = 1);
	void merge(const AucAccumulator &other);
	std::optional<double> auc() const;
	int64_t positives() const { return positives_; }
	int64_t negatives() const { return negatives_; }

	// The state, by ascending score, to store it and rebuild it with from_entries.
	std::vector<Entry> entries() const;
	// Throws Error(kInvalidParameter) on a NaN score or negative counts.
	static AucAccumulator from_entries(const std::vector<Entry> &entries);

private:
	std::map<double, std::pair<int64_t, int64_t>> counts_; // score -> (positives, negatives)
	int64_t positives_ = 0, negatives_ = 0;
};

// One bucket of the lift table; rates and lifts are none where undefined (empty bucket, no positive at all).
struct LiftRow {
	int bucket = 0; // 1 = the highest scores
	int64_t count = 0, positives = 0;
	std::optional<double> min_score, max_score;
	std::optional<double> conversion_rate;                  // positives / count
	std::optional<double> lift;                             // conversion_rate / the overall conversion rate
	int64_t cumulative_count = 0, cumulative_positives = 0; // this bucket and the higher ones
	std::optional<double> cumulative_lift;
	std::optional<double> capture_rate; // cumulative_positives / all positives (the gains curve)
};

// Lift per bucket of scores, descending (buckets = 10: deciles). Ties are kept together, so that the table
// does not depend on the order of the input: a run of equal scores goes wholly to the bucket that holds the
// middle of its ranks (rank r of n, counted from 0 by descending score, is in bucket floor(r * buckets / n) + 1).
// Buckets may therefore differ in size, and be empty when many scores tie. Always `buckets` rows.
// Throws Error(kInvalidParameter) on buckets < 1 or a NaN score.
std::vector<LiftRow> lift_table(const std::vector<Outcome> &outcomes, int buckets = 10);

struct CalibrationBin {
	double lower = 0, upper = 0; // predicted probabilities in [lower, upper), the last bin with 1
	int64_t count = 0, positives = 0;
	std::optional<double> mean_predicted; // none when empty
	std::optional<double> observed_rate;  // positives / count, none when empty
};

// Calibration table: `bins` bins of equal width over [0, 1] (bin floor(p * bins), p = 1 in the last), all
// returned, empty ones included. Scores are probabilities: Error(kInvalidParameter) outside [0, 1].
std::vector<CalibrationBin> calibration(const std::vector<Outcome> &outcomes, int bins = 10);

// A lead's group (e.g. its stage; none when it has no stage) and whether it converted.
struct GroupOutcome {
	std::optional<std::string> group;
	bool positive = false;
};

struct GroupRate {
	std::optional<std::string> group;
	int64_t count = 0, positives = 0;
	std::optional<double> conversion_rate; // none when empty
};

// Conversion rate per group: first the groups of `order` in that order, present or not (the stages of a
// model, lowest first), then the other groups by name, then the leads without a group, if any.
// Throws Error(kInvalidParameter) when `order` lists a group twice.
std::vector<GroupRate> conversion_by_group(const std::vector<GroupOutcome> &outcomes,
                                           const std::vector<std::string> &order = {});

} // namespace leadscore::core
