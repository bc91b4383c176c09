// The leads the hottest-leads search keeps: the n best (or all at or above min_score), and when it may
// stop, against a sort of every score offered.
#include "hot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

using namespace leadscore::core;

namespace {

HotLead lead(double score, int id)
{
	HotLead h;
	h.score = score;
	h.lead = std::to_string(id);
	return h;
}

std::vector<double> scores(const std::vector<HotLead> &leads)
{
	std::vector<double> s;
	for (const HotLead &h : leads)
		s.push_back(h.score);
	return s;
}

} // namespace

TEST(HotLeads, KeepsTheNBestBestFirst)
{
	HotLeads hot(3, std::nullopt);
	for (double s : {5.0, 1.0, 9.0, 7.0, 3.0, 8.0})
		hot.offer(lead(s, (int) s));
	EXPECT_EQ(scores(hot.take_best_first()), (std::vector<double>{9, 8, 7}));
}

TEST(HotLeads, MinScoreWithoutN)
{
	HotLeads hot(std::nullopt, 4.0);
	for (double s : {5.0, 1.0, 4.0, 3.999, 8.0, -2.0})
		hot.offer(lead(s, 0));
	EXPECT_EQ(scores(hot.take_best_first()), (std::vector<double>{8, 5, 4}));
}

TEST(HotLeads, TieWithTheWorstKeptIsNotTaken)
{
	HotLeads hot(2, std::nullopt);
	hot.offer(lead(5, 1));
	hot.offer(lead(3, 2));
	EXPECT_FALSE(hot.wanted(3)); // strictly more than the worst kept
	hot.offer(lead(3, 3));
	std::vector<HotLead> best = hot.take_best_first();
	ASSERT_EQ(best.size(), 2u);
	EXPECT_EQ(best[1].lead, "2"); // the first one found stays
}

TEST(HotLeads, NanScoresAreNeverKeptWithMinScore)
{
	HotLeads hot(std::nullopt, 0.0);
	EXPECT_FALSE(hot.wanted(std::nan("")));
	hot.offer(lead(std::nan(""), 1));
	EXPECT_EQ(hot.size(), 0u);
}

TEST(HotLeads, ZeroNKeepsNothing)
{
	HotLeads hot(0, std::nullopt);
	EXPECT_FALSE(hot.wanted(100));
	hot.offer(lead(100, 1));
	EXPECT_EQ(hot.size(), 0u);
}

TEST(HotLeads, WhenItMayStop)
{
	HotLeads none(3, std::nullopt);
	EXPECT_FALSE(none.done(-1e300)); // fewer than n kept: never, whatever the bound
	HotLeads hot(2, std::nullopt);
	hot.offer(lead(10, 1));
	hot.offer(lead(6, 2));
	EXPECT_TRUE(hot.done(6)); // no unread lead can beat the worst kept
	EXPECT_TRUE(hot.done(5));
	EXPECT_FALSE(hot.done(6.5)); // one could
	HotLeads above(std::nullopt, 4.0);
	EXPECT_TRUE(above.done(3.9)); // no unread lead can reach min_score
	EXPECT_FALSE(above.done(4.0));
	HotLeads all(std::nullopt, std::nullopt);
	EXPECT_FALSE(all.done(-1e300)); // every lead is wanted: read them all
}

// Random scores (with repeats): the n best kept are the n largest of all offered, for any n.
TEST(HotLeads, AgreesWithASort)
{
	std::mt19937 rng(11);
	for (int round = 0; round < 200; round++) {
		int count = (int) (rng() % 300);
		std::optional<int64_t> n;
		if (round % 3 != 0)
			n = 1 + (int64_t) (rng() % 40);
		std::optional<double> min_score;
		if (round % 4 == 1)
			min_score = (double) (rng() % 50);
		HotLeads hot(n, min_score);
		std::vector<double> all;
		for (int i = 0; i < count; i++) {
			double s = (double) (rng() % 100) - 20;
			all.push_back(s);
			hot.offer(lead(s, i));
		}
		std::sort(all.begin(), all.end(), std::greater<double>());
		std::vector<double> expected;
		for (double s : all)
			if ((!min_score || s >= *min_score) && (!n || (int64_t) expected.size() < *n))
				expected.push_back(s);
		ASSERT_EQ(scores(hot.take_best_first()), expected) << "round " << round;
	}
}
