// Incremental lead state: counts, weights relative to ref, rebuild signalling, and exactness against a
// from-scratch rebuild over randomized insert/delete sequences with out-of-order timestamps.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <ostream>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::kDay;

namespace {

ModelSpec model(bool decays)
{
	ModelSpec m;
	m.name = "saas";
	if (decays)
		m.half_life = 30.0 * kDay;
	m.lead_rules = {rule("technology", 10)};
	m.event_rules = {rule("open", 1, 10), rule("pricing", 10), rule("demo", 25, std::nullopt, true),
	                 rule("unsubscribe", -20, 20)};
	m.validate();
	return m;
}

void expect_internal(const std::function<void()> &f)
{
	try {
		f();
		FAIL() << "no error";
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kInternal);
	}
}

struct Event {
	std::optional<Micros> at;
	std::vector<bool> matched;
};

// What the glue does when apply_event asks for it: a fresh state from the lead's current events, in an
// arbitrary order.
LeadState rebuild(const ModelSpec &m, const LeadState &old, std::vector<Event> events, std::mt19937_64 &rng)
{
	LeadState s;
	s.reset(m);
	s.has_lead = old.has_lead;
	s.fit = old.fit;
	s.stage = old.stage;
	std::shuffle(events.begin(), events.end(), rng);
	for (const Event &e : events)
		EXPECT_FALSE(apply_event(m, s, e.at, e.matched, +1));
	return s;
}

// The definition, without any state: each rule's total after decay.
double definition(const ModelSpec &m, const std::vector<Event> &events, size_t r, Micros as_of)
{
	const RuleSpec &spec = m.event_rules[r];
	double sum = 0;
	std::optional<Micros> first;
	bool any = false;
	for (const Event &e : events) {
		if (!e.matched[r])
			continue;
		any = true;
		if (e.at && (!first || *e.at < *first))
			first = e.at;
		sum += e.at && m.half_life ? std::pow(0.5, (double) (as_of - *e.at) / *m.half_life) : 1;
	}
	if (spec.once_per_lead)
		return !any                   ? 0
		       : first && m.half_life ? spec.points * std::pow(0.5, (as_of - *first) / *m.half_life)
		                              : spec.points;
	return spec.points * sum;
}

::testing::AssertionResult close(double actual, double expected, double scale)
{
	if (std::fabs(actual - expected) <= 1e-12 * scale)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << actual << " vs " << expected << " (relative error "
	                                     << std::fabs(actual - expected) / scale << ")";
}

struct Spread {
	bool decays;
	double days;     // event times are spread over this many days
	int untimed_pct; // share of events without time (models without half-life only)
};

void PrintTo(const Spread &spread, std::ostream *os)
{
	*os << (spread.decays ? "half-life 30 days" : "no decay") << ", events over " << spread.days << " days, "
		<< spread.untimed_pct << "% untimed";
}

class Exactness : public ::testing::TestWithParam<Spread> {};

} // namespace

TEST(State, ResetSizesAndKeepsLeadAndStage)
{
	ModelSpec m = model(true);
	LeadState s;
	s.has_lead = true;
	s.stage = "MQL";
	s.n_events = 3;
	s.ref = s.last_activity = 5;
	s.reset(m);
	EXPECT_EQ(s.fit, std::vector<double>(1, 0));
	EXPECT_EQ(s.n, std::vector<int64_t>(4, 0));
	EXPECT_EQ(s.w, std::vector<double>(4, 0));
	EXPECT_EQ(s.first.size(), 4u);
	EXPECT_EQ(s.n_events, 0);
	EXPECT_FALSE(s.ref);
	EXPECT_FALSE(s.last_activity);
	EXPECT_TRUE(s.has_lead);
	EXPECT_EQ(s.stage, "MQL");
}

TEST(State, WeightsAreRelativeToTheLatestEvent)
{
	ModelSpec m = model(true);
	LeadState s;
	EXPECT_FALSE(apply_event(m, s, 30 * kDay, {false, true, true, false}, +1));
	EXPECT_EQ(s.n.size(), 4u); // sized lazily
	EXPECT_EQ(s.ref, 30 * kDay);
	EXPECT_DOUBLE_EQ(s.w[1], 1);
	EXPECT_FALSE(apply_event(m, s, 60 * kDay, {false, true, false, false}, +1));
	EXPECT_EQ(s.ref, 60 * kDay);
	EXPECT_EQ(s.last_activity, 60 * kDay);
	EXPECT_DOUBLE_EQ(s.w[1], 1.5);
	EXPECT_DOUBLE_EQ(s.w[2], 0.5);
	EXPECT_FALSE(apply_event(m, s, 0, {false, true, true, false}, +1));
	EXPECT_EQ(s.ref, 60 * kDay);
	EXPECT_DOUBLE_EQ(s.w[1], 1.75);
	EXPECT_DOUBLE_EQ(s.w[2], 0.75);
	EXPECT_EQ(s.n, (std::vector<int64_t>{0, 3, 2, 0}));
	EXPECT_EQ(s.first[1], 0);
	EXPECT_EQ(s.first[2], 0);
	EXPECT_FALSE(s.first[0]);
	EXPECT_EQ(s.n_events, 3);
	// pricing: 10 x (0.25 + 0.5 + 1) at 60 days, x 0.5 thirty days later.
	EXPECT_DOUBLE_EQ(evaluate(m, s, 90 * kDay).engagement, 10 * 1.75 * 0.5 + 25 * 0.125);
}

TEST(State, WithoutHalfLifeWeightsAreCounts)
{
	ModelSpec m = model(false);
	LeadState s;
	apply_event(m, s, 50, {true, false, false, false}, +1);
	apply_event(m, s, std::nullopt, {true, false, false, false}, +1);
	apply_event(m, s, 10, {true, false, false, false}, +1);
	EXPECT_EQ(s.w[0], 3);
	EXPECT_EQ(s.n[0], 3);
	EXPECT_EQ(s.ref, 50);
	EXPECT_EQ(s.last_activity, 50);
	EXPECT_EQ(s.first[0], 10);
}

TEST(State, EventsMatchingNoRuleStillCountAsActivity)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 7 * kDay, {false, false, false, false}, +1);
	EXPECT_EQ(s.n_events, 1);
	EXPECT_EQ(s.last_activity, 7 * kDay);
	EXPECT_FALSE(s.empty());
	EXPECT_EQ(evaluate(m, s, 7 * kDay).score, 0);
}

TEST(State, DeletingEverythingLeavesExactZeros)
{
	ModelSpec m = model(true);
	LeadState s;
	std::vector<Micros> times = {3 * kDay, 1 * kDay, 2 * kDay + 12345, 40 * kDay};
	for (Micros at : times)
		apply_event(m, s, at, {true, true, false, false}, +1);
	for (Micros at : times)
		apply_event(m, s, at, {true, true, false, false}, -1);
	EXPECT_EQ(s.n, (std::vector<int64_t>{0, 0, 0, 0}));
	EXPECT_EQ(s.w, (std::vector<double>{0, 0, 0, 0}));
	EXPECT_FALSE(s.first[0]);
	EXPECT_FALSE(s.ref);
	EXPECT_FALSE(s.last_activity);
	EXPECT_EQ(s.n_events, 0);
	EXPECT_TRUE(s.empty());
}

TEST(State, RuleBackToZeroIsExactZero)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 0, {false, true, false, false}, +1);
	apply_event(m, s, 13 * kDay + 7, {true, false, false, false}, +1);
	EXPECT_FALSE(apply_event(m, s, 0, {false, true, false, false}, -1));
	EXPECT_EQ(s.w[1], 0);
	EXPECT_FALSE(s.first[1]);
	EXPECT_EQ(s.n_events, 1);
	EXPECT_EQ(s.ref, 13 * kDay + 7);
}

TEST(State, LeadRow)
{
	ModelSpec m = model(true);
	LeadState s;
	EXPECT_TRUE(s.empty());
	set_lead(m, s, {1});
	EXPECT_TRUE(s.has_lead);
	EXPECT_FALSE(s.empty());
	EXPECT_EQ(s.n.size(), 4u);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).fit, 10);
	clear_lead(m, s);
	EXPECT_FALSE(s.has_lead);
	EXPECT_EQ(s.fit, std::vector<double>{0});
	EXPECT_TRUE(s.empty());
	EXPECT_EQ(evaluate(m, s, 0).fit, 0);
	expect_internal([&] { set_lead(m, s, {1, 0}); });
}

TEST(State, ValidAt)
{
	ModelSpec m = model(false);
	LeadState s;
	EXPECT_TRUE(valid_at(s, 0));
	apply_event(m, s, std::nullopt, {true, false, false, false}, +1);
	EXPECT_TRUE(valid_at(s, -5));
	apply_event(m, s, 100, {true, false, false, false}, +1);
	EXPECT_TRUE(valid_at(s, 100));
	EXPECT_TRUE(valid_at(s, 101));
	EXPECT_FALSE(valid_at(s, 99));
}

TEST(State, FreshStateEvaluatesToZeroAndStaleStateIsAnError)
{
	ModelSpec m = model(true);
	m.stages = {{"cold", -INFINITY}};
	LeadState fresh;
	ScoreResult r = evaluate(m, fresh, 0, true);
	EXPECT_EQ(r.score, 0);
	EXPECT_EQ(r.stage, "cold");
	EXPECT_EQ(r.rules.size(), 5u);
	LeadState s;
	apply_event(m, s, 0, {true, false, false, false}, +1);
	m.event_rules.push_back(rule("webinar", 15));
	expect_internal([&] { evaluate(m, s, 0); });
}

TEST(Rebuild, DeletingTheLatestActivityWhileOthersRemain)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 10, {true, false, false, false}, +1);
	apply_event(m, s, 20, {false, true, false, false}, +1);
	EXPECT_TRUE(apply_event(m, s, 20, {false, true, false, false}, -1));
	EXPECT_EQ(s.n_events, 1);
	EXPECT_EQ(s.n[1], 0);
}

TEST(Rebuild, DeletingTheOnlyEventNeedsNone)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 20, {true, true, true, true}, +1);
	EXPECT_FALSE(apply_event(m, s, 20, {true, true, true, true}, -1));
	EXPECT_TRUE(s.empty());
}

TEST(Rebuild, LatestTimeSharedByTwoEvents)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 20, {true, false, false, false}, +1);
	apply_event(m, s, 20, {true, false, false, false}, +1);
	// The other event has the same time, but the state cannot tell.
	EXPECT_TRUE(apply_event(m, s, 20, {true, false, false, false}, -1));
}

TEST(Rebuild, DeletingAMiddleEventNeedsNone)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 10 * kDay, {false, false, true, false}, +1);
	apply_event(m, s, 20 * kDay, {false, false, true, false}, +1);
	apply_event(m, s, 30 * kDay, {false, false, true, false}, +1);
	EXPECT_FALSE(apply_event(m, s, 20 * kDay, {false, false, true, false}, -1));
	EXPECT_EQ(s.first[2], 10 * kDay);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 40 * kDay).engagement, 25 * 0.5);
}

TEST(Rebuild, DeletingTheFirstMatchOfARule)
{
	ModelSpec m = model(true);
	for (size_t r = 0; r < 4; r++) {
		std::vector<bool> matched(4, false);
		matched[r] = true;
		LeadState s;
		apply_event(m, s, 10, matched, +1);
		apply_event(m, s, 30, matched, +1);
		apply_event(m, s, 50, {false, false, false, false}, +1);
		EXPECT_TRUE(apply_event(m, s, 10, matched, -1)) << "rule " << r;
		EXPECT_EQ(s.n[r], 1);
	}
}

TEST(Rebuild, DeletingTheLastMatchOfARuleNeedsNone)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 10, {false, false, true, false}, +1);
	apply_event(m, s, 50, {true, false, false, false}, +1);
	EXPECT_FALSE(apply_event(m, s, 10, {false, false, true, false}, -1));
	EXPECT_FALSE(s.first[2]);
}

TEST(Rebuild, DeletingUntimedEventsNeedsNone)
{
	ModelSpec m = model(false);
	LeadState s;
	apply_event(m, s, std::nullopt, {false, false, true, false}, +1);
	apply_event(m, s, std::nullopt, {false, false, true, false}, +1);
	apply_event(m, s, 5, {true, false, false, false}, +1);
	EXPECT_FALSE(apply_event(m, s, std::nullopt, {false, false, true, false}, -1));
	EXPECT_DOUBLE_EQ(evaluate(m, s, 5).engagement, 1 + 25);
	// The last timed event goes: last activity is unknown until the state is rebuilt.
	EXPECT_TRUE(apply_event(m, s, 5, {true, false, false, false}, -1));
}

TEST(Rebuild, DeletingMostOfARuleWeight)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 0, {false, true, false, false}, +1);
	apply_event(m, s, 300 * kDay, {false, true, false, false}, +1);
	apply_event(m, s, 330 * kDay, {false, true, false, false}, +1);
	apply_event(m, s, 400 * kDay, {true, false, false, false}, +1);
	// Relative to 400 days, "pricing" weighs 2^-(400/30) + 2^-(100/30) + 2^-(70/30): removing the middle
	// term takes a third of it.
	EXPECT_FALSE(apply_event(m, s, 300 * kDay, {false, true, false, false}, -1));
	// The remaining 2^-(400/30) is far less than the deleted 2^-(70/30): its low bits were rounded away.
	EXPECT_TRUE(apply_event(m, s, 330 * kDay, {false, true, false, false}, -1));
}

TEST(Rebuild, ImpossibleChangesAreInternalErrors)
{
	ModelSpec m = model(true);
	LeadState s;
	expect_internal([&] { apply_event(m, s, 0, {false, false, false, false}, -1); });
	apply_event(m, s, 10, {true, false, false, false}, +1);
	LeadState before = s;
	expect_internal([&] { apply_event(m, s, 10, {true, true, false, false}, -1); });
	expect_internal([&] { apply_event(m, s, 10, {true, false, false}, +1); });
	expect_internal([&] { apply_event(m, s, 10, {true, false, false, false}, 0); });
	expect_internal([&] { apply_event(m, s, 10, {true, false, false, false}, 2); });
	// Refused changes leave the state as it was.
	EXPECT_EQ(s.n, before.n);
	EXPECT_EQ(s.w, before.w);
	EXPECT_EQ(s.n_events, before.n_events);
}

// After a partial rebuild lowered ref (rebase), an event later than ref may still be deleted by the same
// statement: exact by weights, but the latest activity must be rebuilt.
TEST(Rebuild, DeletingAnEventLaterThanRefAsksForARebuild)
{
	ModelSpec m = model(true);
	LeadState s;
	apply_event(m, s, 10, {true, false, false, false}, +1);
	apply_event(m, s, 20, {true, false, false, false}, +1);
	rebase(m, s, 10);
	EXPECT_TRUE(apply_event(m, s, 20, {true, false, false, false}, -1));
	EXPECT_EQ(s.n[0], 1);
}

// Random inserts and deletes, out of order, with the glue's behaviour on a rebuild request. When no
// rebuild is asked for, the incremental state must match a from-scratch rebuild, and scores must match
// the definition, to a relative error below 1e-12.
TEST_P(Exactness, IncrementalStateMatchesRebuild)
{
	const Spread spread = GetParam();
	const ModelSpec m = model(spread.decays);
	std::mt19937_64 rng(20240601 + (int) spread.days + spread.untimed_pct);
	std::uniform_int_distribution<Micros> time(0, (Micros) (spread.days * kDay));
	std::uniform_int_distribution<int> pct(0, 99);
	std::vector<Event> live;
	LeadState s;
	set_lead(m, s, {1});
	int rebuilds = 0, checks = 0;

	for (int op = 0; op < 4000; op++) {
		bool rebuild_needed;
		if (live.empty() || (live.size() < 40 && pct(rng) < 55)) {
			Event e;
			if (pct(rng) >= spread.untimed_pct)
				e.at = time(rng);
			for (size_t r = 0; r < m.event_rules.size(); r++)
				e.matched.push_back(pct(rng) < 40);
			// Now and then, the same time as an existing event.
			if (!live.empty() && pct(rng) < 5)
				e.at = live[rng() % live.size()].at;
			rebuild_needed = apply_event(m, s, e.at, e.matched, +1);
			EXPECT_FALSE(rebuild_needed);
			live.push_back(e);
		} else {
			size_t i = rng() % live.size();
			Event e = live[i];
			live.erase(live.begin() + i);
			rebuild_needed = apply_event(m, s, e.at, e.matched, -1);
		}

		LeadState fresh = rebuild(m, s, live, rng);
		ASSERT_EQ(s.n, fresh.n) << "op " << op;
		ASSERT_EQ(s.n_events, fresh.n_events);
		if (rebuild_needed) {
			rebuilds++;
			s = fresh;
			continue;
		}
		checks++;
		ASSERT_EQ(s.first, fresh.first) << "op " << op;
		ASSERT_EQ(s.ref, fresh.ref) << "op " << op;
		ASSERT_EQ(s.last_activity, fresh.last_activity) << "op " << op;
		for (size_t r = 0; r < s.w.size(); r++)
			ASSERT_TRUE(close(s.w[r], fresh.w[r], fresh.w[r])) << "op " << op << " rule " << r;

		Micros as_of = s.last_activity.value_or(0) + time(rng) / 4;
		ASSERT_TRUE(valid_at(s, as_of));
		ScoreResult got = evaluate(m, s, as_of, true), want = evaluate(m, fresh, as_of, true);
		double scale = 0;
		for (size_t i = 0; i < got.rules.size(); i++) {
			const RuleResult &x = got.rules[i];
			scale += std::fabs(want.rules[i].weighted);
			ASSERT_TRUE(close(x.decayed, want.rules[i].decayed, std::fabs(want.rules[i].decayed)))
				<< "op " << op << " rule " << i;
			if (x.is_event) {
				double d = definition(m, live, x.index, as_of);
				ASSERT_TRUE(close(x.decayed, d, std::fabs(d))) << "op " << op << " rule " << i;
			}
		}
		ASSERT_TRUE(close(got.score, want.score, scale)) << "op " << op;
	}
	// Both paths were exercised.
	EXPECT_GT(rebuilds, 100);
	EXPECT_GT(checks, 1000);
}

std::string spread_name(const ::testing::TestParamInfo<Spread> &info)
{
	return std::string(info.param.decays ? "HalfLife" : "NoDecay") + "Over" + std::to_string((int) info.param.days) +
	       "DaysUntimed" + std::to_string(info.param.untimed_pct);
}

INSTANTIATE_TEST_SUITE_P(State, Exactness,
                         ::testing::Values(Spread{true, 200, 0}, Spread{true, 3000, 0}, Spread{false, 200, 0},
                                           Spread{false, 200, 30}),
                         spread_name);
