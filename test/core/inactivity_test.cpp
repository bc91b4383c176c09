// Inactivity steps: points applied while the latest activity is at least `after` old, the largest step
// reached only; score = clamp(fit + engagement + inactivity, floor, ceiling).
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace leadscore::core;
using leadscore::core::testing::expect_invalid;
using leadscore::core::testing::kDay;

namespace {

RuleSpec rule(const std::string &name, double points, int category = -1)
{
	RuleSpec r;
	r.name = name;
	r.points = points;
	r.category = category;
	return r;
}

// No decay; -10 after 30 days, -25 after 90 days (listed out of order on purpose).
ModelSpec stepped()
{
	ModelSpec m;
	m.name = "saas";
	m.lead_rules = {rule("technology", 20)};
	m.event_rules = {rule("pricing", 10)};
	m.inactivity = {{"dormant", 90 * kDay, -25}, {"quiet", 30 * kDay, -10}};
	m.stages = {{"cold", -INFINITY}, {"warm", 25}, {"hot", 30}};
	m.validate();
	return m;
}

void insert(const ModelSpec &m, LeadState &s, std::optional<Micros> at, std::vector<bool> matched)
{
	EXPECT_FALSE(apply_event(m, s, at, matched, +1));
}

} // namespace

TEST(Inactivity, StepsAreExclusive)
{
	ModelSpec m = stepped();
	LeadState s;
	set_lead(m, s, {1});
	insert(m, s, 0, {true});
	insert(m, s, 5 * kDay, {false});
	Micros last = 5 * kDay;
	EXPECT_EQ(evaluate(m, s, last).score, 30);
	EXPECT_EQ(evaluate(m, s, last + 30 * kDay - 1).score, 30);
	EXPECT_EQ(evaluate(m, s, last + 30 * kDay).score, 20);
	EXPECT_EQ(evaluate(m, s, last + 30 * kDay).inactivity, -10);
	EXPECT_EQ(evaluate(m, s, last + 90 * kDay - 1).score, 20);
	ScoreResult r = evaluate(m, s, last + 90 * kDay);
	EXPECT_EQ(r.score, 5);
	EXPECT_EQ(r.inactivity, -25);
	EXPECT_EQ(r.fit, 20);
	EXPECT_EQ(r.engagement, 10);
	EXPECT_EQ(evaluate(m, s, last + 9000 * kDay).score, 5);
	EXPECT_EQ(inactivity_step(m, s, last + 29 * kDay), -1);
	EXPECT_EQ(inactivity_step(m, s, last + 31 * kDay), 1);
	EXPECT_EQ(inactivity_step(m, s, last + 91 * kDay), 0);
}

TEST(Inactivity, StageFollowsTheScoreAndGradeIgnoresSteps)
{
	ModelSpec m = stepped();
	m.fit_bands = {{"A", 15}};
	m.engagement_bands = {{"1", 10}};
	LeadState s;
	set_lead(m, s, {1});
	insert(m, s, 0, {true});
	EXPECT_EQ(evaluate(m, s, 0).stage, "hot");
	ScoreResult r = evaluate(m, s, 30 * kDay);
	EXPECT_EQ(r.stage, "cold");
	EXPECT_EQ(r.grade, "A1");
}

TEST(Inactivity, NoActivityNoStep)
{
	ModelSpec m = stepped();
	LeadState s;
	set_lead(m, s, {1});
	EXPECT_EQ(evaluate(m, s, 1000 * kDay).score, 20);
	// Untimed events are not activity either.
	insert(m, s, std::nullopt, {true});
	ScoreResult r = evaluate(m, s, 1000 * kDay);
	EXPECT_EQ(r.score, 30);
	EXPECT_EQ(r.inactivity, 0);
	// A timed one is.
	insert(m, s, 0, {false});
	EXPECT_EQ(evaluate(m, s, 1000 * kDay).score, 5);
}

TEST(Inactivity, FloorAndCeilingBoundTheSum)
{
	ModelSpec m = stepped();
	m.floor = 0;
	m.ceiling = 25;
	LeadState s;
	insert(m, s, 0, {true});
	EXPECT_EQ(evaluate(m, s, 0).score, 10);
	EXPECT_EQ(evaluate(m, s, 30 * kDay).score, 0);
	EXPECT_EQ(evaluate(m, s, 90 * kDay).score, 0);
	set_lead(m, s, {1});
	EXPECT_EQ(evaluate(m, s, 0).score, 25);
	EXPECT_EQ(evaluate(m, s, 30 * kDay).score, 20);
}

TEST(Inactivity, StepsOutsideCategories)
{
	ModelSpec m = stepped();
	m.categories = {{"behaviour", 0.5, 4.0}};
	m.event_rules[0].category = 0;
	m.validate();
	LeadState s;
	insert(m, s, 0, {true});
	// 0.5 x min(10, 4) - 10: the category's weight and cap do not touch the step.
	EXPECT_EQ(evaluate(m, s, 30 * kDay).score, 2 - 10);
}

TEST(Inactivity, ExplainListsEveryStep)
{
	ModelSpec m = stepped();
	LeadState s;
	set_lead(m, s, {1});
	insert(m, s, 0, {true});
	ScoreResult r = evaluate(m, s, 45 * kDay, true);
	ASSERT_EQ(r.rules.size(), 4u);
	EXPECT_FALSE(r.rules[0].is_inactivity);
	EXPECT_FALSE(r.rules[1].is_inactivity);
	EXPECT_TRUE(r.rules[1].is_event);
	const RuleResult &dormant = r.rules[2], &quiet = r.rules[3];
	EXPECT_TRUE(dormant.is_inactivity);
	EXPECT_FALSE(dormant.is_event);
	EXPECT_EQ(dormant.index, 0);
	EXPECT_EQ(dormant.hits, 0);
	EXPECT_EQ(dormant.weighted, 0);
	EXPECT_TRUE(quiet.is_inactivity);
	EXPECT_EQ(quiet.index, 1);
	EXPECT_EQ(quiet.hits, 1);
	EXPECT_EQ(quiet.raw, -10);
	EXPECT_EQ(quiet.decayed, -10);
	EXPECT_EQ(quiet.capped, -10);
	EXPECT_EQ(quiet.weighted, -10);
	double sum = 0;
	for (const RuleResult &x : r.rules)
		sum += x.weighted;
	EXPECT_EQ(sum, r.score);
	// Without explain, no lines.
	EXPECT_TRUE(evaluate(m, s, 45 * kDay).rules.empty());
}

TEST(Inactivity, WithDecayAndGrace)
{
	ModelSpec m = stepped();
	m.half_life = 30.0 * kDay;
	m.grace = 14 * kDay;
	m.validate();
	LeadState s;
	insert(m, s, 0, {true});
	// 10 x 0.5^(16/30) - 10
	EXPECT_DOUBLE_EQ(evaluate(m, s, 30 * kDay).score, 10 * std::pow(0.5, 16.0 / 30) - 10);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 104 * kDay).score, 10 * 0.125 - 25);
}

TEST(InactivityValidation, Errors)
{
	ModelSpec m = stepped();
	m.inactivity = {{"quiet", 0, -10}};
	expect_invalid(m, "inactivity rule \"quiet\" of model \"saas\": the interval must be positive");
	m.inactivity = {{"quiet", -kDay, -10}};
	expect_invalid(m, "inactivity rule \"quiet\" of model \"saas\": the interval must be positive");
	m.inactivity = {{"quiet", kDay, NAN}};
	expect_invalid(m, "inactivity rule \"quiet\" of model \"saas\": points must be finite");
	m.inactivity = {{"quiet", kDay, -INFINITY}};
	expect_invalid(m, "inactivity rule \"quiet\" of model \"saas\": points must be finite");
	m.inactivity = {{"quiet", 30 * kDay, -10}, {"silent", 30 * kDay, -15}};
	expect_invalid(m,
	               "inactivity rule \"silent\" of model \"saas\" has the same interval as inactivity rule \"quiet\"");
	m.inactivity = {{"quiet", 30 * kDay, -10}, {"quiet", 90 * kDay, -25}};
	expect_invalid(m, "inactivity rule \"quiet\" of model \"saas\" is defined twice");
	m.inactivity = {{"pricing", 30 * kDay, -10}};
	expect_invalid(m,
	               "inactivity rule \"pricing\" of model \"saas\": a rule or category of the model has the same name");
	m.inactivity = {{"technology", 30 * kDay, -10}};
	expect_invalid(
		m, "inactivity rule \"technology\" of model \"saas\": a rule or category of the model has the same name");
	m.categories = {{"behaviour", 1, std::nullopt}};
	m.inactivity = {{"behaviour", 30 * kDay, -10}};
	expect_invalid(
		m, "inactivity rule \"behaviour\" of model \"saas\": a rule or category of the model has the same name");
	// Positive points are allowed (a re-engagement model may reward silence).
	m.inactivity = {{"rested", 30 * kDay, 5}};
	m.validate();
}

// A table of the three decay modes, as in docs/time.md: one lead (fit 20; webinar 15, pricing 10 and demo 25 on day 0, nothing after) under
// three decay modes, read on days 0, 30, 60 and 90.
TEST(TimeTable, ScoreOverNinetyDays)
{
	ModelSpec base;
	base.name = "saas";
	base.lead_rules = {rule("technology", 20)};
	base.event_rules = {rule("webinar", 15), rule("pricing", 10), rule("demo", 25)};
	ModelSpec half_life = base, grace = base, steps = base;
	half_life.half_life = 30.0 * kDay;
	grace.half_life = 30.0 * kDay;
	grace.grace = 14 * kDay;
	steps.inactivity = {{"quiet", 30 * kDay, -10}, {"dormant", 90 * kDay, -25}};
	const ModelSpec *models[] = {&half_life, &grace, &steps};
	const char *names[] = {"half-life 30 days", "grace 14 days + half-life 30 days",
	                       "no decay, -10 after 30 days, -25 after 90 days"};
	const double expected[3][4] = {
		{70, 45, 32.5, 26.25},
		{70, 20 + 50 * std::pow(0.5, 16.0 / 30), 20 + 50 * std::pow(0.5, 46.0 / 30),
	     20 + 50 * std::pow(0.5, 76.0 / 30)},
		{70, 60, 60, 45},
	};
	std::printf("%-48s %8s %8s %8s %8s\n", "mode", "day 0", "day 30", "day 60", "day 90");
	for (int i = 0; i < 3; i++) {
		models[i]->validate();
		LeadState s;
		set_lead(*models[i], s, {1});
		insert(*models[i], s, 0, {true, true, true});
		std::printf("%-48s", names[i]);
		for (int d = 0; d < 4; d++) {
			double score = evaluate(*models[i], s, d * 30 * kDay).score;
			std::printf(" %8.2f", score);
			EXPECT_NEAR(score, expected[i][d], 1e-12) << names[i] << ", day " << d * 30;
		}
		std::printf("\n");
	}
}
