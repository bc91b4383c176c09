// Caps bound the size of a rule's total after decay; floor and ceiling bound the score.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::expect_invalid;
using leadscore::core::testing::kDay;

namespace {

// Applies `count` events matching event rule `index` at time `at`.
void events(const ModelSpec &m, LeadState &s, size_t index, int count, Micros at)
{
	std::vector<bool> matched(m.event_rules.size(), false);
	matched[index] = true;
	for (int i = 0; i < count; i++)
		EXPECT_FALSE(apply_event(m, s, at, matched, +1));
}

class Caps : public ::testing::Test {
protected:
	void SetUp() override
	{
		m.name = "saas";
		m.half_life = 30.0 * kDay;
		m.event_rules = {rule("email_open", 1, 10), rule("unsubscribe", -20, 20)};
		m.validate();
	}
	ModelSpec m;
	LeadState s;
};

} // namespace

TEST_F(Caps, PositiveRuleIsCapped)
{
	events(m, s, 0, 15, 0);
	ScoreResult r = evaluate(m, s, 0, true);
	EXPECT_DOUBLE_EQ(r.engagement, 10);
	EXPECT_EQ(r.rules[0].hits, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].raw, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].decayed, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].capped, 10);
	EXPECT_DOUBLE_EQ(r.rules[0].weighted, 10);
}

TEST_F(Caps, BelowTheCapNothingChanges)
{
	events(m, s, 0, 5, 0);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, 5);
}

TEST_F(Caps, CapAppliesAfterDecay)
{
	events(m, s, 0, 15, 0);
	// 15 x 0.5 = 7.5 is under the cap: the cap does not bound the total before decay.
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).engagement, 7.5);
	events(m, s, 0, 15, 0);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).engagement, 10);
}

TEST_F(Caps, NegativeRuleIsCappedFromBelow)
{
	events(m, s, 1, 1, 0);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, -20);
	events(m, s, 1, 2, 0);
	ScoreResult r = evaluate(m, s, 0, true);
	EXPECT_DOUBLE_EQ(r.engagement, -20);
	EXPECT_DOUBLE_EQ(r.rules[1].decayed, -60);
	EXPECT_DOUBLE_EQ(r.rules[1].capped, -20);
	// Decayed below the cap: -60 x 0.25 = -15.
	EXPECT_DOUBLE_EQ(evaluate(m, s, 60 * kDay).engagement, -15);
}

TEST_F(Caps, CapsOfRulesAreIndependent)
{
	events(m, s, 0, 15, 0);
	events(m, s, 1, 3, 0);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).score, 10 - 20);
}

TEST(CapsOfLeadRules, FitRuleIsCapped)
{
	ModelSpec m;
	m.name = "saas";
	m.lead_rules = {rule("big", 50, 30), rule("gmail", -40, 25)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1, 0});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).fit, 30);
	set_lead(m, s, {1, 1});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).fit, 5);
}

TEST(FloorAndCeiling, ClampTheScoreOnly)
{
	ModelSpec m;
	m.name = "saas";
	m.floor = 0;
	m.ceiling = 100;
	m.lead_rules = {rule("fit", 80), rule("spam", -200)};
	m.event_rules = {rule("demo", 25)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1, 0});
	events(m, s, 0, 2, 0);
	ScoreResult r = evaluate(m, s, 0);
	EXPECT_DOUBLE_EQ(r.score, 100);
	EXPECT_DOUBLE_EQ(r.fit, 80);
	EXPECT_DOUBLE_EQ(r.engagement, 50);
	set_lead(m, s, {1, 1});
	r = evaluate(m, s, 0);
	EXPECT_DOUBLE_EQ(r.score, 0);
	EXPECT_DOUBLE_EQ(r.fit, -120);
	set_lead(m, s, {0, 0});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).score, 50);
}

TEST(FloorAndCeiling, OneSidedBounds)
{
	ModelSpec m;
	m.name = "saas";
	m.floor = -10;
	m.lead_rules = {rule("spam", -200), rule("fit", 500)};
	LeadState s;
	set_lead(m, s, {1, 0});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).score, -10);
	set_lead(m, s, {0, 1});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).score, 500);
}

TEST(CapsValidation, RuleErrors)
{
	ModelSpec m;
	m.name = "saas";
	m.event_rules = {rule("pricing", INFINITY)};
	expect_invalid(m, "rule \"pricing\" of model \"saas\": points must be finite");
	m.event_rules = {rule("pricing", NAN)};
	expect_invalid(m, "rule \"pricing\" of model \"saas\": points must be finite");
	m.event_rules = {rule("pricing", 10, 0)};
	expect_invalid(m, "rule \"pricing\" of model \"saas\": cap must be positive and finite");
	m.event_rules = {};
	m.lead_rules = {rule("size", 10, -5)};
	expect_invalid(m, "rule \"size\" of model \"saas\": cap must be positive and finite");
	m.lead_rules = {rule("size", 10, NAN)};
	expect_invalid(m, "rule \"size\" of model \"saas\": cap must be positive and finite");
	// As leadscore.rule's constraint says: an infinite cap is no cap, and refused.
	m.lead_rules = {rule("size", 10, INFINITY)};
	expect_invalid(m, "rule \"size\" of model \"saas\": cap must be positive and finite");
	m.lead_rules = {rule("size", 10)};
	m.event_rules = {rule("size", 5)};
	expect_invalid(m, "rule \"size\" of model \"saas\" is defined twice");
}

TEST(CapsValidation, FloorAndCeiling)
{
	ModelSpec m;
	m.name = "saas";
	m.floor = 10;
	m.ceiling = 5;
	expect_invalid(m, "model \"saas\": floor is above ceiling");
	m.ceiling = NAN;
	expect_invalid(m, "model \"saas\": floor and ceiling must be finite");
	m.ceiling = INFINITY; // leadscore.model refuses it too: no ceiling is NULL
	expect_invalid(m, "model \"saas\": floor and ceiling must be finite");
	m.ceiling = 20;
	m.floor = -INFINITY;
	expect_invalid(m, "model \"saas\": floor and ceiling must be finite");
	m.floor = m.ceiling = 5;
	EXPECT_NO_THROW(m.validate());
}
