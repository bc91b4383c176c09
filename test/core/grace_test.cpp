// Grace period: the engagement keeps its full value while the lead is active; after `grace` without
// activity the whole engagement halves every half-life. Exact at any read time.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::expect_invalid;
using leadscore::core::testing::kDay;

namespace {

// Half-life 30 days, grace 14 days.
ModelSpec grace_model(std::vector<RuleSpec> events)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 30.0 * kDay;
	m.grace = 14 * kDay;
	m.event_rules = std::move(events);
	m.validate();
	return m;
}

void insert(const ModelSpec &m, LeadState &s, Micros at, std::vector<bool> matched)
{
	EXPECT_FALSE(apply_event(m, s, at, matched, +1));
}

} // namespace

TEST(Grace, FullValueWhileActiveThenHalvesEveryHalfLife)
{
	ModelSpec m = grace_model({rule("pricing", 10)});
	LeadState s;
	insert(m, s, 0, {true});
	insert(m, s, 10 * kDay, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 10 * kDay).engagement, 20);
	// The first event does not decay on its own: the lead is active.
	EXPECT_DOUBLE_EQ(evaluate(m, s, 24 * kDay).engagement, 20);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 54 * kDay).engagement, 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 84 * kDay).engagement, 5);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 39 * kDay).engagement, 20 * std::sqrt(0.5));
	EXPECT_DOUBLE_EQ(grace_factor(m, s, 54 * kDay), 0.5);
	EXPECT_EQ(grace_factor(m, s, 24 * kDay), 1);
	ScoreResult r = evaluate(m, s, 54 * kDay, true);
	ASSERT_EQ(r.rules.size(), 1u);
	EXPECT_EQ(r.rules[0].hits, 2);
	EXPECT_DOUBLE_EQ(r.rules[0].raw, 20);
	EXPECT_DOUBLE_EQ(r.rules[0].decayed, 10);
	EXPECT_DOUBLE_EQ(r.score, 10);
}

TEST(Grace, AnyEventIsActivity)
{
	ModelSpec m = grace_model({rule("pricing", 10)});
	LeadState s;
	insert(m, s, 0, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 44 * kDay).engagement, 5);
	// An event matching no rule still restarts the grace period, and lifts the whole total back.
	insert(m, s, 44 * kDay, {false});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 44 * kDay).engagement, 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 58 * kDay).engagement, 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 88 * kDay).engagement, 5);
}

TEST(Grace, OncePerLeadCountsOnceAndDecaysWithTheTotal)
{
	ModelSpec m = grace_model({rule("demo", 25, std::nullopt, true)});
	LeadState s;
	insert(m, s, 5 * kDay, {true});
	insert(m, s, 0, {true});
	insert(m, s, 16 * kDay, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).engagement, 25);
	ScoreResult r = evaluate(m, s, 60 * kDay, true);
	EXPECT_DOUBLE_EQ(r.engagement, 25 * 0.5);
	EXPECT_EQ(r.rules[0].hits, 3);
	EXPECT_DOUBLE_EQ(r.rules[0].raw, 25);
}

TEST(Grace, CapsApplyAfterTheGraceFactor)
{
	ModelSpec m = grace_model({rule("open", 1, 10), rule("unsubscribe", -20, 20)});
	LeadState s;
	for (int i = 0; i < 15; i++)
		insert(m, s, i * kDay, {true, false});
	insert(m, s, 14 * kDay, {false, true});
	insert(m, s, 14 * kDay, {false, true});
	Micros last = 14 * kDay;
	ScoreResult r = evaluate(m, s, last + 14 * kDay, true);
	EXPECT_DOUBLE_EQ(r.rules[0].decayed, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].capped, 10);
	EXPECT_DOUBLE_EQ(r.rules[1].decayed, -40);
	EXPECT_DOUBLE_EQ(r.rules[1].capped, -20);
	EXPECT_DOUBLE_EQ(r.engagement, -10);
	// One half-life after the grace period: 7.5 (below its cap) and -20 (still capped).
	r = evaluate(m, s, last + 44 * kDay, true);
	EXPECT_DOUBLE_EQ(r.rules[0].capped, 7.5);
	EXPECT_DOUBLE_EQ(r.rules[1].capped, -20);
	EXPECT_DOUBLE_EQ(r.engagement, -12.5);
	// Two: 3.75 and -10.
	EXPECT_DOUBLE_EQ(evaluate(m, s, last + 74 * kDay).engagement, 3.75 - 10);
}

TEST(Grace, CategoriesApplyAfterTheGraceFactor)
{
	ModelSpec m;
	m.name = "b2b";
	m.half_life = 30.0 * kDay;
	m.grace = 14 * kDay;
	m.categories = {{"engagement", 0.5, 20.0}};
	m.lead_rules = {rule("technology", 10, std::nullopt, false, 0)};
	m.event_rules = {rule("pricing", 10, std::nullopt, false, 0), rule("webinar", 15)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	for (int i = 0; i < 3; i++)
		insert(m, s, 0, {true, false});
	insert(m, s, 0, {false, true});
	// Subtotal 10 + 30 capped at 20, weight 0.5: fit 10 x 20/40 x 0.5 = 2.5, pricing 30 x 20/40 x 0.5 = 7.5.
	ScoreResult r = evaluate(m, s, 14 * kDay, true);
	EXPECT_DOUBLE_EQ(r.fit, 2.5);
	EXPECT_DOUBLE_EQ(r.engagement, 7.5 + 15);
	// After one half-life: subtotal 10 + 15 = 25 still capped at 20; webinar 7.5.
	r = evaluate(m, s, 44 * kDay, true);
	EXPECT_DOUBLE_EQ(r.fit, 10 * 0.8 * 0.5);
	EXPECT_DOUBLE_EQ(r.engagement, 15 * 0.8 * 0.5 + 7.5);
	// After two: subtotal 10 + 7.5 = 17.5 under the cap.
	r = evaluate(m, s, 74 * kDay, true);
	EXPECT_DOUBLE_EQ(r.fit, 5);
	EXPECT_DOUBLE_EQ(r.engagement, 7.5 * 0.5 + 3.75);
	EXPECT_DOUBLE_EQ(r.score, 5 + 3.75 + 3.75);
}

TEST(Grace, WeightsAreCountsAndRebaseDoesNotScale)
{
	ModelSpec m = grace_model({rule("pricing", 10), rule("open", 1)});
	LeadState s;
	insert(m, s, 30 * kDay, {true, false});
	insert(m, s, 60 * kDay, {true, true});
	insert(m, s, 0, {true, false});
	EXPECT_EQ(s.w, (std::vector<double>{3, 1}));
	EXPECT_EQ(s.ref, 60 * kDay);
	EXPECT_EQ(s.last_activity, 60 * kDay);
	EXPECT_EQ(s.first[0], 0);
	rebase(m, s, 30 * kDay);
	EXPECT_EQ(s.w, (std::vector<double>{3, 1}));
	EXPECT_EQ(s.ref, 30 * kDay);
	// Deleting an event that is not the latest needs no rebuild, whatever share of the weight it holds.
	LeadState t;
	insert(m, t, 0, {true, false});
	insert(m, t, 10 * kDay, {true, false});
	insert(m, t, 20 * kDay, {false, true});
	EXPECT_FALSE(apply_event(m, t, 10 * kDay, {true, false}, -1));
	EXPECT_EQ(t.w, (std::vector<double>{1, 1}));
	// The latest activity goes: the grace period counts from a time the state no longer knows.
	EXPECT_TRUE(apply_event(m, t, 20 * kDay, {false, true}, -1));
}

TEST(Grace, UntimedEventsAreRefused)
{
	ModelSpec m = grace_model({rule("import", 5)});
	LeadState s;
	EXPECT_THROW(apply_event(m, s, std::nullopt, {true}, +1), Error);
}

TEST(Grace, WithoutGraceNothingChanges)
{
	// The same events under half-life only: each event decays from its own time.
	ModelSpec m = grace_model({rule("pricing", 10)});
	m.grace.reset();
	LeadState s;
	insert(m, s, 0, {true});
	insert(m, s, 30 * kDay, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).engagement, 15);
	EXPECT_EQ(grace_factor(m, s, 300 * kDay), 1);
}

TEST(GraceValidation, Errors)
{
	ModelSpec m;
	m.name = "saas";
	m.grace = 14 * kDay;
	expect_invalid(m, "model \"saas\": a grace period needs a half_life");
	m.half_life = 30.0 * kDay;
	m.validate();
	m.grace = 0;
	expect_invalid(m, "model \"saas\": grace must be positive");
	m.grace = -kDay;
	expect_invalid(m, "model \"saas\": grace must be positive");
	m.half_life.reset();
	expect_invalid(m, "model \"saas\": grace must be positive");
}

// Random inserts and deletes, out of order, with the glue's rebuild on request: the grace model's score
// equals its definition computed from the live events (relative error below 1e-12).
TEST(Grace, IncrementalStateMatchesTheDefinition)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 7.0 * kDay;
	m.grace = 3 * kDay;
	m.categories = {{"behaviour", 0.7, 25.0}};
	m.event_rules = {rule("open", 1, 10), rule("pricing", 10, std::nullopt, false, 0),
	                 rule("demo", 25, std::nullopt, true, 0), rule("unsubscribe", -20, 20)};
	m.validate();
	struct Event {
		Micros at;
		std::vector<bool> matched;
	};
	std::mt19937_64 rng(3141);
	std::uniform_int_distribution<Micros> time(0, 100 * kDay);
	std::uniform_int_distribution<int> pct(0, 99);
	std::vector<Event> live;
	LeadState s;
	int rebuilds = 0;
	for (int op = 0; op < 3000; op++) {
		if (live.empty() || (live.size() < 30 && pct(rng) < 55)) {
			Event e{time(rng), {}};
			for (size_t r = 0; r < 4; r++)
				e.matched.push_back(pct(rng) < 40);
			EXPECT_FALSE(apply_event(m, s, e.at, e.matched, +1));
			live.push_back(e);
		} else {
			size_t i = rng() % live.size();
			Event e = live[i];
			live.erase(live.begin() + i);
			if (apply_event(m, s, e.at, e.matched, -1)) {
				rebuilds++;
				s = LeadState();
				for (const Event &x : live)
					EXPECT_FALSE(apply_event(m, s, x.at, x.matched, +1));
			}
		}
		Micros last = 0;
		for (const Event &e : live)
			last = std::max(last, e.at);
		Micros as_of = last + time(rng) / 2;
		ASSERT_TRUE(valid_at(s, as_of));
		double f = std::pow(0.5, std::max<double>(0, (double) (as_of - last - 3 * kDay)) / (7.0 * kDay));
		std::vector<double> total(4, 0);
		for (size_t r = 0; r < 4; r++) {
			int64_t hits = 0;
			for (const Event &e : live)
				hits += e.matched[r];
			total[r] = m.event_rules[r].points * (double) (m.event_rules[r].once_per_lead ? hits > 0 : hits) * f;
		}
		double sub = total[1] + total[2];
		double want = std::clamp(total[0], -10.0, 10.0) + std::clamp(total[3], -20.0, 20.0) +
		              0.7 * std::clamp(sub, -25.0, 25.0);
		double got = evaluate(m, s, as_of).score;
		ASSERT_NEAR(got, want, 1e-12 * (std::fabs(want) + 1)) << "op " << op;
	}
	EXPECT_GT(rebuilds, 100);
}
