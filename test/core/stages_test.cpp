// Stages and grades: the highest band whose lower bound the score reaches.
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::expect_invalid;

namespace {

const std::vector<Band> kStages = {{"SQL", 50}, {"lead", 0}, {"opportunity", 80}, {"MQL", 20}};

} // namespace

TEST(BandFor, HighestBandReached)
{
	EXPECT_EQ(band_for(kStages, 0), "lead");
	EXPECT_EQ(band_for(kStages, 19.999), "lead");
	EXPECT_EQ(band_for(kStages, 20), "MQL");
	EXPECT_EQ(band_for(kStages, 50), "SQL");
	EXPECT_EQ(band_for(kStages, 79), "SQL");
	EXPECT_EQ(band_for(kStages, 1e300), "opportunity");
	EXPECT_EQ(band_for(kStages, INFINITY), "opportunity");
}

TEST(BandFor, NoBandReached)
{
	EXPECT_EQ(band_for(kStages, -0.5), std::nullopt);
	EXPECT_EQ(band_for({}, 10), std::nullopt);
	EXPECT_EQ(band_for(kStages, NAN), std::nullopt);
}

TEST(BandFor, MinusInfinityBandCatchesEveryScore)
{
	std::vector<Band> bands = kStages;
	bands.push_back({"cold", -INFINITY});
	EXPECT_EQ(band_for(bands, -0.5), "cold");
	EXPECT_EQ(band_for(bands, -1e308), "cold");
	EXPECT_EQ(band_for(bands, -INFINITY), "cold");
	EXPECT_EQ(band_for(bands, 0), "lead");
	EXPECT_EQ(band_for(bands, NAN), std::nullopt);
}

TEST(BandFor, EqualLowerBoundsTakeTheLaterBand)
{
	EXPECT_EQ(band_for({{"a", 10}, {"b", 10}}, 10), "b");
	EXPECT_EQ(band_for({{"b", 10}, {"a", 10}}, 12), "a");
}

TEST(BandFor, TiersOfTheFoundingDocuments)
{
	std::vector<Band> tiers = {{"low", -INFINITY}, {"medium", 10}, {"high", 15}};
	EXPECT_EQ(band_for(tiers, 9.99), "low");
	EXPECT_EQ(band_for(tiers, 10), "medium");
	EXPECT_EQ(band_for(tiers, 14.9), "medium");
	EXPECT_EQ(band_for(tiers, 20), "high");
}

class Stages : public ::testing::Test {
protected:
	void SetUp() override
	{
		m.name = "saas";
		m.lead_rules = {rule("technology", 30), rule("gmail", -40)};
		m.event_rules = {rule("demo", 25)};
		m.stages = kStages;
		m.fit_bands = {{"C", -INFINITY}, {"A", 25}, {"B", 10}};
		m.engagement_bands = {{"1", 50}, {"2", 20}, {"3", 0}};
		m.validate();
	}
	ModelSpec m;
	LeadState s;
};

TEST_F(Stages, StageFollowsTheScore)
{
	EXPECT_EQ(evaluate(m, s, 0).stage, "lead");
	set_lead(m, s, {1, 0});
	EXPECT_EQ(evaluate(m, s, 0).stage, "MQL");
	apply_event(m, s, 0, {true}, +1);
	EXPECT_EQ(evaluate(m, s, 0).stage, "SQL");
	apply_event(m, s, 0, {true}, +1);
	EXPECT_EQ(evaluate(m, s, 0).stage, "opportunity");
	set_lead(m, s, {1, 1});
	EXPECT_EQ(evaluate(m, s, 0).stage, "MQL");
	set_lead(m, s, {0, 1});
	EXPECT_EQ(evaluate(m, s, 0).stage, "lead");
	clear_lead(m, s);
	EXPECT_EQ(evaluate(m, s, 0).stage, "SQL");
	apply_event(m, s, 0, {true}, -1);
	apply_event(m, s, 0, {true}, -1);
	EXPECT_EQ(evaluate(m, s, 0).stage, "lead");
}

TEST_F(Stages, StageOfTheClampedScore)
{
	m.ceiling = 60;
	set_lead(m, s, {1, 0});
	apply_event(m, s, 0, {true}, +1);
	apply_event(m, s, 0, {true}, +1);
	ScoreResult r = evaluate(m, s, 0);
	EXPECT_DOUBLE_EQ(r.score, 60);
	EXPECT_EQ(r.stage, "SQL");
}

TEST_F(Stages, GradeJoinsFitAndEngagementBands)
{
	set_lead(m, s, {1, 0});
	apply_event(m, s, 0, {true}, +1);
	apply_event(m, s, 0, {true}, +1);
	EXPECT_EQ(evaluate(m, s, 0).grade, "A1");
	apply_event(m, s, 0, {true}, -1);
	EXPECT_EQ(evaluate(m, s, 0).grade, "A2");
	set_lead(m, s, {1, 1});
	EXPECT_EQ(evaluate(m, s, 0).grade, "C2");
}

TEST_F(Stages, NoGradeWhenAnAxisHasNoBand)
{
	set_lead(m, s, {1, 1});
	apply_event(m, s, 0, {true}, +1);
	EXPECT_EQ(evaluate(m, s, 0).grade, "C2");
	m.engagement_bands = {{"1", 50}};
	EXPECT_EQ(evaluate(m, s, 0).grade, std::nullopt);
	m.engagement_bands = {};
	EXPECT_EQ(evaluate(m, s, 0).grade, std::nullopt);
	m.engagement_bands = {{"1", -INFINITY}};
	m.fit_bands = {};
	EXPECT_EQ(evaluate(m, s, 0).grade, std::nullopt);
	m.stages = {};
	EXPECT_EQ(evaluate(m, s, 0).stage, std::nullopt);
}

TEST(StagesValidation, Errors)
{
	ModelSpec m;
	m.name = "saas";
	m.stages = {{"MQL", 20}, {"SQL", 50}, {"MQL", 30}};
	expect_invalid(m, "stage \"MQL\" of model \"saas\" is defined twice");
	m.stages = {{"MQL", NAN}};
	expect_invalid(m, "stage \"MQL\" of model \"saas\": min_score must not be NaN or +Infinity");
	m.stages = {{"MQL", INFINITY}}; // as leadscore.stage's constraint says: a band no score reaches
	expect_invalid(m, "stage \"MQL\" of model \"saas\": min_score must not be NaN or +Infinity");
	m.stages = {{"cold", -INFINITY}, {"MQL", 20}};
	EXPECT_NO_THROW(m.validate());
	m.fit_bands = {{"A", 20}, {"A", 10}};
	expect_invalid(m, "fit grade band \"A\" of model \"saas\" is defined twice");
	m.fit_bands = {{"A", 20}};
	m.engagement_bands = {{"1", 20}, {"1", 10}};
	expect_invalid(m, "engagement grade band \"1\" of model \"saas\" is defined twice");
	// The same name on different axes is fine: "A" fit and "A" engagement make grade "AA".
	m.engagement_bands = {{"A", 20}};
	EXPECT_NO_THROW(m.validate());
}
