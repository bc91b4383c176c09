// Decay: 0.5^(d / half_life) of every event's points, exact at any read time.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace leadscore::core;
using leadscore::core::testing::kDay;

namespace {

RuleSpec event_rule(const std::string &name, double points, bool once = false)
{
	RuleSpec r;
	r.name = name;
	r.points = points;
	r.once_per_lead = once;
	return r;
}

ModelSpec model(std::optional<double> half_life_days, std::vector<RuleSpec> events)
{
	ModelSpec m;
	m.name = "saas";
	if (half_life_days)
		m.half_life = *half_life_days * kDay;
	m.event_rules = std::move(events);
	m.validate();
	return m;
}

void insert(const ModelSpec &m, LeadState &s, std::optional<Micros> at, std::vector<bool> matched)
{
	EXPECT_FALSE(apply_event(m, s, at, matched, +1));
}

} // namespace

TEST(Decay, HalfLifeValues)
{
	ModelSpec m = model(30, {});
	EXPECT_DOUBLE_EQ(decay(m, 0), 1);
	EXPECT_DOUBLE_EQ(decay(m, 30 * kDay), 0.5);
	EXPECT_DOUBLE_EQ(decay(m, 60 * kDay), 0.25);
	EXPECT_DOUBLE_EQ(decay(m, 15 * kDay), std::sqrt(0.5));
	EXPECT_DOUBLE_EQ(decay(m, 300 * kDay), std::ldexp(1.0, -10));
}

TEST(Decay, NoDecayBeforeTheEventOrWithoutHalfLife)
{
	EXPECT_EQ(decay(model(30, {}), -5 * kDay), 1);
	EXPECT_EQ(decay(model(std::nullopt, {}), 1000 * kDay), 1);
}

TEST(Decay, PointsHalveEveryHalfLife)
{
	ModelSpec m = model(30, {event_rule("pricing", 10)});
	LeadState s;
	insert(m, s, 0, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).engagement, 5);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 60 * kDay).engagement, 2.5);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 60 * kDay).score, 2.5);
}

TEST(Decay, EachEventDecaysFromItsOwnTime)
{
	ModelSpec m = model(30, {event_rule("webinar", 15), event_rule("pricing", 10)});
	LeadState s;
	// Out of order on purpose: the later event arrives first.
	insert(m, s, 60 * kDay, {false, true});
	insert(m, s, 0, {true, false});
	insert(m, s, 30 * kDay, {false, true});
	ScoreResult r = evaluate(m, s, 90 * kDay, true);
	EXPECT_DOUBLE_EQ(r.engagement, 15 * 0.125 + 10 * 0.25 + 10 * 0.5);
	ASSERT_EQ(r.rules.size(), 2u);
	EXPECT_EQ(r.rules[0].hits, 1);
	EXPECT_DOUBLE_EQ(r.rules[0].raw, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].decayed, 15 * 0.125);
	EXPECT_EQ(r.rules[1].hits, 2);
	EXPECT_DOUBLE_EQ(r.rules[1].raw, 20);
	EXPECT_DOUBLE_EQ(r.rules[1].decayed, 7.5);
}

TEST(Decay, WithoutHalfLifeEveryEventCountsFully)
{
	ModelSpec m = model(std::nullopt, {event_rule("pricing", 10)});
	LeadState s;
	insert(m, s, 0, {true});
	insert(m, s, 500 * kDay, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 10000 * kDay).engagement, 20);
}

TEST(Decay, UntimedEventsNeverDecayAndCountAtEveryTime)
{
	ModelSpec m = model(std::nullopt, {event_rule("import", 5)});
	LeadState s;
	insert(m, s, std::nullopt, {true});
	insert(m, s, std::nullopt, {true});
	EXPECT_EQ(s.n_events, 2);
	EXPECT_FALSE(s.last_activity);
	EXPECT_TRUE(valid_at(s, -1000 * kDay));
	EXPECT_DOUBLE_EQ(evaluate(m, s, -1000 * kDay).engagement, 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 1000 * kDay).engagement, 10);
}

TEST(Decay, UntimedEventsAreRefusedByDecayingModels)
{
	ModelSpec m = model(30, {event_rule("import", 5)});
	LeadState s;
	try {
		apply_event(m, s, std::nullopt, {true}, +1);
		FAIL() << "untimed event accepted";
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kInvalidParameter);
		EXPECT_STREQ(e.what(), "model \"saas\" decays with time: its events need a time");
	}
	EXPECT_EQ(s.n_events, 0);
}

TEST(Decay, OncePerLeadCountsTheEarliestEventOnly)
{
	ModelSpec m = model(30, {event_rule("demo", 25, true)});
	LeadState s;
	insert(m, s, 60 * kDay, {true});
	insert(m, s, 30 * kDay, {true});
	insert(m, s, 90 * kDay, {true});
	ScoreResult r = evaluate(m, s, 90 * kDay, true);
	EXPECT_DOUBLE_EQ(r.engagement, 25 * 0.25);
	EXPECT_EQ(r.rules[0].hits, 3);
	EXPECT_DOUBLE_EQ(r.rules[0].raw, 25);
	EXPECT_DOUBLE_EQ(r.rules[0].decayed, 25 * 0.25);
}

TEST(Decay, OncePerLeadWithUntimedEventsOnlyDoesNotDecay)
{
	ModelSpec m = model(std::nullopt, {event_rule("demo", 25, true)});
	LeadState s;
	insert(m, s, std::nullopt, {true});
	insert(m, s, std::nullopt, {true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, 25);
}

TEST(Decay, VeryOldEventsFadeToZeroWithoutNaN)
{
	ModelSpec m = model(1, {event_rule("open", 1)});
	LeadState s;
	insert(m, s, 0, {true});
	insert(m, s, 5000 * kDay, {true});
	ScoreResult r = evaluate(m, s, 5000 * kDay);
	EXPECT_DOUBLE_EQ(r.engagement, 1);
	EXPECT_EQ(evaluate(m, s, 100000 * kDay).engagement, 0);
}

TEST(Decay, HalfLifeMustBePositive)
{
	for (double hl : {0.0, -1.0, (double) NAN, (double) INFINITY}) {
		ModelSpec m;
		m.name = "saas";
		m.half_life = hl;
		try {
			m.validate();
			FAIL() << "half_life " << hl << " accepted";
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), kInvalidParameter);
			EXPECT_STREQ(e.what(), "model \"saas\": half_life must be positive");
		}
	}
}
