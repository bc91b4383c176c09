// Metrics: exact AUC (batch and mergeable), lift per decile with ties kept together, calibration, and
// conversion per group.
#include "metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace leadscore::core;

namespace {

std::vector<Outcome> outcomes(const std::vector<double> &scores, const std::vector<int> &labels)
{
	std::vector<Outcome> out;
	for (size_t i = 0; i < scores.size(); i++)
		out.push_back({scores[i], labels[i] == 1});
	return out;
}

// The definition: pairs (positive, negative), a win 1, a tie 1/2.
double brute_auc(const std::vector<Outcome> &o)
{
	double wins = 0, pairs = 0;
	for (const Outcome &p : o)
		for (const Outcome &n : o)
			if (p.positive && !n.positive) {
				pairs++;
				wins += p.score > n.score ? 1 : p.score == n.score ? 0.5 : 0;
			}
	return wins / pairs;
}

std::vector<Outcome> random_outcomes(unsigned seed, int n, int distinct)
{
	std::mt19937 gen(seed);
	std::uniform_int_distribution<int> score(0, distinct - 1);
	std::uniform_real_distribution<double> u(0, 1);
	std::vector<Outcome> out;
	for (int i = 0; i < n; i++) {
		int s = score(gen);
		out.push_back({s / (double) distinct, u(gen) < 0.2 + 0.6 * s / distinct});
	}
	return out;
}

void expect_invalid(const std::function<void()> &f, const std::string &fragment)
{
	try {
		f();
		FAIL() << "no error, expected: " << fragment;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kInvalidParameter);
		EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
	}
}

} // namespace

TEST(Auc, KnownCases)
{
	EXPECT_DOUBLE_EQ(*auc(outcomes({0.1, 0.2, 0.8, 0.9}, {0, 0, 1, 1})), 1.0);
	EXPECT_DOUBLE_EQ(*auc(outcomes({0.1, 0.2, 0.8, 0.9}, {1, 1, 0, 0})), 0.0);
	EXPECT_DOUBLE_EQ(*auc(outcomes({0.5, 0.5, 0.5, 0.5}, {1, 0, 1, 0})), 0.5);
	// scikit-learn's roc_auc_score example: 3 of the 4 pairs are ordered right.
	EXPECT_DOUBLE_EQ(*auc(outcomes({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1})), 0.75);
	// Positives 0.5 and 0.7, negatives 0.5 and 0.2: 0.5 + 1 + 1 + 1 of 4 pairs.
	EXPECT_DOUBLE_EQ(*auc(outcomes({0.5, 0.7, 0.5, 0.2}, {1, 1, 0, 0})), 0.875);
	EXPECT_DOUBLE_EQ(*auc(outcomes({-INFINITY, INFINITY}, {0, 1})), 1.0);
	EXPECT_FALSE(auc(outcomes({0.1, 0.2}, {1, 1})));
	EXPECT_FALSE(auc({}));
	expect_invalid([] { auc(outcomes({NAN, 0.2}, {1, 0})); }, "NaN");
}

TEST(Auc, MatchesDefinitionWithTies)
{
	for (unsigned seed = 1; seed <= 5; seed++) {
		std::vector<Outcome> o = random_outcomes(seed, 400, 13);
		EXPECT_NEAR(*auc(o), brute_auc(o), 1e-12) << seed;
	}
}

TEST(AucAccumulator, StreamsAndMerges)
{
	std::vector<Outcome> o = random_outcomes(7, 1000, 50);
	AucAccumulator all, left, right;
	for (size_t i = 0; i < o.size(); i++) {
		all.add(o[i].score, o[i].positive);
		(i % 3 == 0 ? left : right).add(o[i].score, o[i].positive);
	}
	EXPECT_DOUBLE_EQ(*all.auc(), *auc(o));
	left.merge(right);
	EXPECT_DOUBLE_EQ(*left.auc(), *auc(o));
	EXPECT_EQ(left.positives() + left.negatives(), 1000);
	EXPECT_EQ(left.entries().size(), 50u);

	AucAccumulator copy = AucAccumulator::from_entries(all.entries());
	EXPECT_DOUBLE_EQ(*copy.auc(), *auc(o));
	EXPECT_EQ(copy.positives(), all.positives());

	AucAccumulator empty;
	EXPECT_FALSE(empty.auc());
	empty.add(0.3, true, 5);
	EXPECT_FALSE(empty.auc());
	empty.add(0.3, false, 2);
	EXPECT_DOUBLE_EQ(*empty.auc(), 0.5);
	expect_invalid([&] { empty.add(NAN, true); }, "NaN");
	expect_invalid([&] { empty.add(0.1, true, -1); }, "negative");
	expect_invalid([] { AucAccumulator::from_entries({{0.1, -1, 0}}); }, "negative");
}

TEST(LiftTable, DecilesWithoutTies)
{
	// Scores 1..100, the top 10 all converted, one conversion in each other decile.
	std::vector<Outcome> o;
	for (int s = 1; s <= 100; s++)
		o.push_back({(double) s, s > 90 || s % 10 == 5});
	std::vector<LiftRow> rows = lift_table(o);
	ASSERT_EQ(rows.size(), 10u);
	double overall = 19.0 / 100;
	EXPECT_EQ(rows[0].bucket, 1);
	EXPECT_EQ(rows[0].count, 10);
	EXPECT_EQ(rows[0].positives, 10);
	EXPECT_EQ(*rows[0].min_score, 91);
	EXPECT_EQ(*rows[0].max_score, 100);
	EXPECT_DOUBLE_EQ(*rows[0].conversion_rate, 1.0);
	EXPECT_DOUBLE_EQ(*rows[0].lift, 1 / overall);
	EXPECT_DOUBLE_EQ(*rows[0].capture_rate, 10.0 / 19);
	EXPECT_DOUBLE_EQ(*rows[1].cumulative_lift, (11.0 / 20) / overall);
	for (int k = 1; k < 10; k++) {
		EXPECT_EQ(rows[k].count, 10);
		EXPECT_EQ(rows[k].positives, 1);
		EXPECT_DOUBLE_EQ(*rows[k].lift, 0.1 / overall);
	}
	EXPECT_EQ(rows[9].cumulative_count, 100);
	EXPECT_EQ(rows[9].cumulative_positives, 19);
	EXPECT_DOUBLE_EQ(*rows[9].capture_rate, 1.0);
	EXPECT_DOUBLE_EQ(*rows[9].cumulative_lift, 1.0);
}

TEST(LiftTable, TiesStayTogether)
{
	// Ranks 0-3 are a tie (middle 1.5: bucket 1 of 4 for n = 8), ranks 4-7 another (middle 5.5: bucket 3).
	std::vector<Outcome> o = outcomes({0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1}, {1, 1, 0, 1, 0, 0, 1, 0});
	std::vector<LiftRow> rows = lift_table(o, 4);
	ASSERT_EQ(rows.size(), 4u);
	EXPECT_EQ(rows[0].count, 4);
	EXPECT_EQ(rows[1].count, 0);
	EXPECT_FALSE(rows[1].conversion_rate);
	EXPECT_FALSE(rows[1].lift);
	EXPECT_DOUBLE_EQ(*rows[1].cumulative_lift, *rows[0].lift);
	EXPECT_EQ(rows[2].count, 4);
	EXPECT_EQ(rows[3].count, 0);
	// Independent of the input order.
	std::vector<Outcome> reversed(o.rbegin(), o.rend());
	std::vector<LiftRow> again = lift_table(reversed, 4);
	for (int k = 0; k < 4; k++) {
		EXPECT_EQ(again[k].count, rows[k].count);
		EXPECT_EQ(again[k].positives, rows[k].positives);
	}

	// Random data: counts and positives add up, scores descend from bucket to bucket.
	std::vector<Outcome> r = random_outcomes(3, 1234, 40);
	std::vector<LiftRow> t = lift_table(r);
	int64_t count = 0, positives = 0;
	for (size_t k = 0; k < t.size(); k++) {
		count += t[k].count;
		positives += t[k].positives;
		if (k > 0 && t[k].count > 0 && t[k - 1].count > 0) {
			EXPECT_LT(*t[k].max_score, *t[k - 1].min_score);
		}
	}
	EXPECT_EQ(count, 1234);
	EXPECT_EQ(positives, t.back().cumulative_positives);

	std::vector<LiftRow> none = lift_table({});
	EXPECT_EQ(none.size(), 10u);
	EXPECT_EQ(none[0].count, 0);
	EXPECT_FALSE(lift_table(outcomes({0.1, 0.2}, {0, 0}))[0].lift);
	expect_invalid([] { lift_table({}, 0); }, "buckets");
}

TEST(Calibration, Bins)
{
	std::vector<Outcome> o = outcomes({0.05, 0.15, 0.12, 0.95, 1.0, 0.0, 0.5}, {0, 1, 0, 1, 1, 0, 0});
	std::vector<CalibrationBin> bins = calibration(o, 10);
	ASSERT_EQ(bins.size(), 10u);
	EXPECT_EQ(bins[0].count, 2); // 0.0 and 0.05
	EXPECT_DOUBLE_EQ(*bins[0].mean_predicted, 0.025);
	EXPECT_DOUBLE_EQ(*bins[0].observed_rate, 0.0);
	EXPECT_EQ(bins[1].count, 2);
	EXPECT_DOUBLE_EQ(*bins[1].mean_predicted, (0.15 + 0.12) / 2);
	EXPECT_DOUBLE_EQ(*bins[1].observed_rate, 0.5);
	EXPECT_EQ(bins[9].count, 2); // 0.95 and 1.0: the last bin includes 1
	EXPECT_DOUBLE_EQ(bins[9].lower, 0.9);
	EXPECT_DOUBLE_EQ(bins[9].upper, 1.0);
	EXPECT_EQ(bins[5].count, 1);
	EXPECT_EQ(bins[3].count, 0);
	EXPECT_FALSE(bins[3].mean_predicted);
	EXPECT_FALSE(bins[3].observed_rate);

	// Counts, predicted sums and positives add up to the input's.
	std::vector<Outcome> r = random_outcomes(11, 999, 97);
	int64_t count = 0, positives = 0, expected_positives = 0;
	double predicted = 0, expected_predicted = 0;
	for (const Outcome &x : r) {
		expected_predicted += x.score;
		expected_positives += x.positive;
	}
	for (const CalibrationBin &b : calibration(r, 7)) {
		count += b.count;
		positives += b.positives;
		if (b.count)
			predicted += *b.mean_predicted * (double) b.count;
	}
	EXPECT_EQ(count, 999);
	EXPECT_EQ(positives, expected_positives);
	EXPECT_NEAR(predicted, expected_predicted, 1e-9);

	expect_invalid([] { calibration(outcomes({1.5}, {1})); }, "outside [0, 1]");
	expect_invalid([] { calibration(outcomes({NAN}, {1})); }, "outside [0, 1]");
	expect_invalid([] { calibration({}, 0); }, "bins");
}

TEST(ConversionByGroup, OrderedGroupsThenOthersThenNone)
{
	std::vector<GroupOutcome> o = {{"MQL", true},    {"MQL", false},       {"lead", false}, {"zeta", true},
	                               {"alpha", false}, {std::nullopt, true}, {"MQL", true}};
	std::vector<GroupRate> rates = conversion_by_group(o, {"lead", "MQL", "SQL"});
	ASSERT_EQ(rates.size(), 6u);
	EXPECT_EQ(*rates[0].group, "lead");
	EXPECT_EQ(rates[0].count, 1);
	EXPECT_DOUBLE_EQ(*rates[0].conversion_rate, 0.0);
	EXPECT_EQ(*rates[1].group, "MQL");
	EXPECT_EQ(rates[1].count, 3);
	EXPECT_EQ(rates[1].positives, 2);
	EXPECT_DOUBLE_EQ(*rates[1].conversion_rate, 2.0 / 3);
	EXPECT_EQ(*rates[2].group, "SQL"); // listed, no lead
	EXPECT_EQ(rates[2].count, 0);
	EXPECT_FALSE(rates[2].conversion_rate);
	EXPECT_EQ(*rates[3].group, "alpha");
	EXPECT_EQ(*rates[4].group, "zeta");
	EXPECT_FALSE(rates[5].group);
	EXPECT_DOUBLE_EQ(*rates[5].conversion_rate, 1.0);

	EXPECT_EQ(conversion_by_group({}).size(), 0u);
	expect_invalid([] { conversion_by_group({}, {"a", "a"}); }, "\"a\" is listed twice");
}
