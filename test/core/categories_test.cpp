// Weighted categories: contribution = weight x clamp(subtotal, -cap, cap), shared by fit and engagement.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace leadscore::core;
using leadscore::core::testing::expect_invalid;

namespace {

RuleSpec rule(const std::string &name, double points, int category = -1, std::optional<double> cap = std::nullopt)
{
	RuleSpec r;
	r.name = name;
	r.points = points;
	r.category = category;
	r.cap = cap;
	return r;
}

CategorySpec category(const std::string &name, double weight, std::optional<double> cap = std::nullopt)
{
	CategorySpec c;
	c.name = name;
	c.weight = weight;
	c.cap = cap;
	return c;
}

void event(const ModelSpec &m, LeadState &s, std::vector<bool> matched)
{
	EXPECT_FALSE(apply_event(m, s, 0, matched, +1));
}

double sum_weighted(const ScoreResult &r)
{
	double sum = 0;
	for (const RuleResult &x : r.rules)
		sum += x.weighted;
	return sum;
}

} // namespace

// The founding documents' B2B example: sector 25%, size 30%, engagement 35%, location 10%.
TEST(Categories, B2BExample)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("sector", 0.25), category("size", 0.30), category("engagement", 0.35),
	                category("location", 0.10)};
	m.lead_rules = {rule("technology", 10, 0), rule("employees_100_500", 15, 1), rule("main_zone", 10, 3)};
	m.event_rules = {rule("webinar", 15, 2), rule("whitepaper", 5, 2)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1, 1, 1});
	event(m, s, {true, false});
	event(m, s, {false, true});
	ScoreResult r = evaluate(m, s, 0, true);
	EXPECT_DOUBLE_EQ(r.score, 2.5 + 4.5 + 7 + 1);
	EXPECT_DOUBLE_EQ(r.fit, 2.5 + 4.5 + 1);
	EXPECT_DOUBLE_EQ(r.engagement, 7);
	ASSERT_EQ(r.rules.size(), 5u);
	EXPECT_DOUBLE_EQ(r.rules[0].weighted, 2.5);
	EXPECT_DOUBLE_EQ(r.rules[1].weighted, 4.5);
	EXPECT_DOUBLE_EQ(r.rules[2].weighted, 1);
	EXPECT_DOUBLE_EQ(r.rules[3].weighted, 0.35 * 15);
	EXPECT_DOUBLE_EQ(r.rules[4].weighted, 0.35 * 5);
	EXPECT_DOUBLE_EQ(r.rules[3].capped, 15);
	EXPECT_DOUBLE_EQ(sum_weighted(r), r.fit + r.engagement);
}

TEST(Categories, RulesWithoutCategoryWeighOne)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("sector", 0.5)};
	m.lead_rules = {rule("technology", 10, 0), rule("gmail", -8)};
	LeadState s;
	set_lead(m, s, {1, 1});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).fit, 5 - 8);
}

TEST(Categories, CapIsSharedBetweenFitAndEngagementInProportion)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("interest", 0.5, 10)};
	m.lead_rules = {rule("industry", 15, 0)};
	m.event_rules = {rule("pricing", 5, 0)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	event(m, s, {true});
	ScoreResult r = evaluate(m, s, 0, true);
	// Subtotal 20 capped to 10: each kind keeps its share (3/4, 1/4) of 0.5 x 10.
	EXPECT_DOUBLE_EQ(r.fit, 3.75);
	EXPECT_DOUBLE_EQ(r.engagement, 1.25);
	EXPECT_DOUBLE_EQ(r.score, 5);
	EXPECT_DOUBLE_EQ(r.rules[0].capped, 15);
	EXPECT_DOUBLE_EQ(r.rules[0].weighted, 3.75);
	EXPECT_DOUBLE_EQ(r.rules[1].weighted, 1.25);
}

TEST(Categories, NegativeSubtotalIsCappedFromBelow)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("risk", 2, 10)};
	m.lead_rules = {rule("gmail", -12, 0)};
	m.event_rules = {rule("unsubscribe", -20, 0), rule("reply", 8, 0)};
	LeadState s;
	set_lead(m, s, {1});
	event(m, s, {true, true});
	ScoreResult r = evaluate(m, s, 0, true);
	// Subtotal -24 capped to -10, x 2 = -20, scaled by 10/24 for every rule.
	EXPECT_DOUBLE_EQ(r.score, -20);
	EXPECT_DOUBLE_EQ(r.fit, 2 * -12 * 10.0 / 24);
	EXPECT_DOUBLE_EQ(r.engagement, 2 * -12 * 10.0 / 24);
	EXPECT_DOUBLE_EQ(r.rules[2].weighted, 2 * 8 * 10.0 / 24);
}

TEST(Categories, ZeroSubtotalContributesNothing)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("mixed", 0.5, 1)};
	m.lead_rules = {rule("good", 5, 0)};
	m.event_rules = {rule("bad", -5, 0)};
	LeadState s;
	set_lead(m, s, {1});
	event(m, s, {true});
	ScoreResult r = evaluate(m, s, 0);
	EXPECT_DOUBLE_EQ(r.fit, 2.5);
	EXPECT_DOUBLE_EQ(r.engagement, -2.5);
	EXPECT_EQ(r.score, 0);
}

TEST(Categories, RuleCapAppliesBeforeCategoryCap)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("email", 1, 12)};
	m.event_rules = {rule("open", 1, 0, 10), rule("click", 2, 0)};
	LeadState s;
	for (int i = 0; i < 15; i++)
		event(m, s, {true, false});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, 10);
	event(m, s, {false, true});
	event(m, s, {false, true});
	EXPECT_DOUBLE_EQ(evaluate(m, s, 0).engagement, 12);
}

TEST(Categories, NoExplainNoRules)
{
	ModelSpec m;
	m.name = "b2b";
	m.lead_rules = {rule("technology", 10)};
	LeadState s;
	set_lead(m, s, {1});
	EXPECT_TRUE(evaluate(m, s, 0).rules.empty());
	EXPECT_EQ(evaluate(m, s, 0, true).rules.size(), 1u);
}

TEST(CategoriesValidation, Errors)
{
	ModelSpec m;
	m.name = "b2b";
	m.categories = {category("sector", INFINITY)};
	expect_invalid(m, "category \"sector\" of model \"b2b\": weight must be finite");
	m.categories = {category("sector", 1, 0)};
	expect_invalid(m, "category \"sector\" of model \"b2b\": cap must be positive and finite");
	m.categories = {category("sector", 1, INFINITY)}; // as leadscore.category's constraint says
	expect_invalid(m, "category \"sector\" of model \"b2b\": cap must be positive and finite");
	m.categories = {category("sector", 1), category("sector", 2)};
	expect_invalid(m, "category \"sector\" of model \"b2b\" is defined twice");
	m.categories = {category("sector", 1)};
	m.lead_rules = {rule("technology", 10, 1)};
	expect_invalid(m, "rule \"technology\" of model \"b2b\": category index 1 does not exist");
	m.lead_rules = {rule("technology", 10, -2)};
	expect_invalid(m, "rule \"technology\" of model \"b2b\": category index -2 does not exist");
	m.lead_rules = {rule("technology", 10, 0)};
	EXPECT_NO_THROW(m.validate());
	// Negative weights are allowed: a category may count against the score.
	m.categories = {category("sector", -1)};
	EXPECT_NO_THROW(m.validate());
}
