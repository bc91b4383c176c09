// Engagement resets: timed events before state.reset_at count as activity (n_events, last_activity) but in
// no rule; reading before the reset needs another state (valid_at); incremental = definition.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::Event;
using leadscore::core::testing::build;
using leadscore::core::testing::kDay;

namespace {

// Rules: 0 "visit" +2, 1 "demo" +25 once per lead, 2 "open" +1 at most 1 a day.
ModelSpec model(bool decays)
{
	ModelSpec m;
	m.name = "saas";
	if (decays)
		m.half_life = 10.0 * kDay;
	m.event_rules = {rule("visit", 2), rule("demo", 25, std::nullopt, true), rule("open", 1)};
	m.event_rules[2].max_per_period = 1;
	m.event_rules[2].period = kDay;
	m.inactivity = {{"quiet", 30 * kDay, -5}};
	m.validate();
	return m;
}

} // namespace

TEST(Reset, EventsBeforeTheResetAreActivityOnly)
{
	ModelSpec m = model(true);
	LeadState s;
	s.reset(m);
	s.reset_at = 100 * kDay;
	EXPECT_FALSE(apply_event(m, s, 90 * kDay, {true, true, false}, +1));
	EXPECT_EQ(s.n, (std::vector<int64_t>{0, 0, 0}));
	EXPECT_FALSE(s.first[1]);
	EXPECT_EQ(s.n_events, 1);
	EXPECT_EQ(s.last_activity, 90 * kDay);
	// A capped rule's match before the reset needs no rebuild either.
	EXPECT_FALSE(apply_event(m, s, 95 * kDay, {false, false, true}, +1));
	EXPECT_FALSE(apply_event(m, s, 110 * kDay, {true, true, false}, +1));
	EXPECT_EQ(s.n, (std::vector<int64_t>{1, 1, 0}));
	EXPECT_EQ(s.first[1], 110 * kDay);
	// Only the event after the reset scores; the inactivity steps count from the latest activity.
	ScoreResult r = evaluate(m, s, 110 * kDay, true);
	EXPECT_DOUBLE_EQ(r.engagement, 2 + 25);
	EXPECT_EQ(r.rules[0].hits, 1);
	EXPECT_EQ(evaluate(m, s, 140 * kDay).inactivity, -5);
	// Deleting an event before the reset is neither impossible nor a reason to rebuild.
	EXPECT_FALSE(apply_event(m, s, 90 * kDay, {true, true, false}, -1));
	EXPECT_EQ(s.n_events, 2);
	EXPECT_EQ(s.n, (std::vector<int64_t>{1, 1, 0}));
	// An event at the reset's very instant counts.
	EXPECT_FALSE(apply_event(m, s, 100 * kDay, {true, false, false}, +1));
	EXPECT_EQ(s.n[0], 2);
}

TEST(Reset, UntimedEventsAreNotReset)
{
	ModelSpec m = model(false);
	LeadState s;
	s.reset(m);
	s.reset_at = 100 * kDay;
	apply_event(m, s, std::nullopt, {true, false, false}, +1);
	EXPECT_EQ(s.n[0], 1);
}

TEST(Reset, ValidOnlyFromTheReset)
{
	LeadState s;
	EXPECT_TRUE(valid_at(s, 0));
	s.reset_at = 100;
	EXPECT_FALSE(valid_at(s, 99));
	EXPECT_TRUE(valid_at(s, 100));
	s.last_activity = 150;
	EXPECT_FALSE(valid_at(s, 120));
	EXPECT_TRUE(valid_at(s, 150));
}

TEST(Reset, ResetOfTheStateKeepsIt)
{
	ModelSpec m = model(true);
	LeadState s;
	s.reset_at = 7;
	s.reset(m);
	EXPECT_EQ(s.reset_at, 7);
}

// Random inserts (out of order) and deletes with a reset: when apply_event asks for no rebuild, the state
// scores as the definition; when it does, a rebuild (apply_event + PeriodCapBuild) replaces it.
TEST(Reset, IncrementalMatchesTheDefinition)
{
	for (bool decays : {false, true}) {
		ModelSpec m = model(decays);
		std::mt19937_64 rng(777 + decays);
		std::uniform_int_distribution<Micros> time(0, 60 * kDay);
		Micros reset = 30 * kDay;
		std::vector<Event> live;
		LeadState s;
		s.reset(m);
		s.reset_at = reset;
		int rebuilds = 0;
		for (int op = 0; op < 3000; op++) {
			bool rebuild;
			if (live.empty() || rng() % 100 < 60) {
				Event e{time(rng), {rng() % 2 == 0, rng() % 5 == 0, rng() % 3 == 0}};
				live.push_back(e);
				rebuild = apply_event(m, s, e.at, e.matched, +1);
			} else {
				size_t i = rng() % live.size();
				Event e = live[i];
				live.erase(live.begin() + i);
				rebuild = apply_event(m, s, e.at, e.matched, -1);
			}
			if (rebuild) {
				rebuilds++;
				s = build(m, live, reset);
			}
			if (live.empty())
				continue;
			Micros t = 61 * kDay;
			ScoreResult r = evaluate(m, s, t, true);
			// The definition: events at or after the reset; demo once (the earliest); opens 1 a day.
			double visit = 0, demo = 0, open = 0;
			std::optional<Micros> first_demo;
			std::vector<Micros> opens;
			for (const Event &e : live) {
				if (e.at < reset)
					continue;
				double d = decays ? std::exp2(-(double) (t - e.at) / *m.half_life) : 1;
				if (e.matched[0])
					visit += 2 * d;
				if (e.matched[1] && (!first_demo || e.at < *first_demo))
					first_demo = e.at;
				if (e.matched[2])
					opens.push_back(e.at);
			}
			if (first_demo)
				demo = 25 * (decays ? std::exp2(-(double) (t - *first_demo) / *m.half_life) : 1);
			std::sort(opens.begin(), opens.end());
			for (size_t i = 0; i < opens.size(); i++)
				if (i == 0 || period_bucket(opens[i], kDay) != period_bucket(opens[i - 1], kDay))
					open += decays ? std::exp2(-(double) (t - opens[i]) / *m.half_life) : 1;
			ASSERT_NEAR(r.rules[0].decayed, visit, 1e-9 * std::max(1.0, visit)) << "op " << op;
			ASSERT_NEAR(r.rules[1].decayed, demo, 1e-9 * std::max(1.0, demo)) << "op " << op;
			ASSERT_NEAR(r.rules[2].decayed, open, 1e-9 * std::max(1.0, open)) << "op " << op;
		}
		EXPECT_GT(rebuilds, 100);
	}
}
