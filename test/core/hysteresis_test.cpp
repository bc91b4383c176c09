// Stage hysteresis (ModelSpec::stage_exit_margin): a lead leaves its stage for a lower one only once its
// score is more than the margin below the stage's min_score; exact in evaluate(), next_stage_change(), the
// time-driven walk (stage_changes) and the lower bound the live trigger stores.
#include "explain.h"
#include "helpers.h"
#include "score.h"
#include "timeline.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::expect_invalid;
using leadscore::core::testing::kDay;
using leadscore::core::testing::kNow;
using leadscore::core::testing::rule;

namespace {

ModelSpec model(double margin)
{
	ModelSpec m;
	m.name = "saas";
	m.event_rules = {rule("demo", 50), rule("visit", 1)};
	m.half_life = 30.0 * kDay;
	m.stages = {{"MQL", 50}, {"cold", -INFINITY}, {"warm", 30}};
	m.stage_exit_margin = margin;
	m.validate();
	return m;
}

LeadState demo_at(const ModelSpec &m, Micros at, const std::optional<std::string> &stage)
{
	LeadState s;
	s.reset(m);
	EXPECT_FALSE(apply_event(m, s, at, {true, false}, +1));
	s.stage = stage;
	return s;
}

} // namespace

TEST(StageFor, ZeroMarginIsTheScoresBand)
{
	ModelSpec m = model(0);
	for (double score : {-5.0, 29.9, 30.0, 49.99, 50.0, 80.0})
		for (auto previous : {std::optional<std::string>(), std::optional<std::string>("MQL"),
		                      std::optional<std::string>("warm"), std::optional<std::string>("gone")})
			EXPECT_EQ(stage_for(m, score, previous), band_for(m.stages, score)) << score;
}

TEST(StageFor, DownOnlyBelowTheMargin)
{
	ModelSpec m = model(10);
	EXPECT_EQ(stage_for(m, 49.9, "MQL"), "MQL");
	EXPECT_EQ(stage_for(m, 40, "MQL"), "MQL");      // exactly the margin below: still held
	EXPECT_EQ(stage_for(m, 39.999, "MQL"), "warm"); // then the stage 39.999 + 10 reaches
	EXPECT_EQ(stage_for(m, 25, "MQL"), "warm");     // a jump below warm's own band: warm holds it (25 + 10 >= 30)
	EXPECT_EQ(stage_for(m, 19.9, "MQL"), "cold");
	EXPECT_EQ(stage_for(m, 45, "warm"), "warm");       // up follows the score...
	EXPECT_EQ(stage_for(m, 50, "warm"), "MQL");        // ...at once
	EXPECT_EQ(stage_for(m, 45, std::nullopt), "warm"); // no stage yet: the score's
	EXPECT_EQ(stage_for(m, 45, "renamed"), "warm");    // a stage the model no longer has: the score's
}

TEST(StageFor, InfiniteMarginNeverGoesDown)
{
	ModelSpec m = model(INFINITY);
	EXPECT_EQ(stage_for(m, -1e300, "MQL"), "MQL");
	EXPECT_EQ(stage_for(m, 60, "warm"), "MQL");
	EXPECT_EQ(stage_for(m, 0, "warm"), "warm");
}

TEST(StageFor, IsIdempotentAndMonotone)
{
	ModelSpec m = model(7);
	for (auto previous : {std::optional<std::string>(), std::optional<std::string>("cold"),
	                      std::optional<std::string>("warm"), std::optional<std::string>("MQL")}) {
		std::optional<std::string> last;
		double last_min = -INFINITY;
		for (double score = -10; score < 70; score += 0.25) {
			std::optional<std::string> st = stage_for(m, score, previous);
			EXPECT_EQ(stage_for(m, score, st), st) << score;
			double min = -INFINITY;
			for (const Band &b : m.stages)
				if (st && b.name == *st)
					min = b.min_score;
			EXPECT_GE(min, last_min) << score; // non-decreasing in the score
			last_min = min;
			last = st;
		}
	}
}

TEST(StageExitMargin, Validated)
{
	ModelSpec m = model(0);
	m.stage_exit_margin = -1;
	expect_invalid(m, "model \"saas\": stage_exit_margin must be 0 or more (Infinity: stages never go down)");
	m.stage_exit_margin = NAN;
	expect_invalid(m, "model \"saas\": stage_exit_margin must be 0 or more (Infinity: stages never go down)");
	m.stage_exit_margin = INFINITY;
	m.validate();
}

// The example: a lead reaching exactly 50 with decay. Without a margin it records MQL and, a
// microsecond later, warm; with a margin of 10 it stays MQL until the score is below 40.
TEST(StageExitMargin, NoFlapAtTheThreshold)
{
	ModelSpec flat = model(0), held = model(10);
	LeadState s0 = demo_at(flat, kNow, "MQL"), s10 = demo_at(held, kNow, "MQL");
	EXPECT_EQ(evaluate(flat, s0, kNow).stage, "MQL");
	EXPECT_EQ(next_stage_change(flat, s0, kNow), kNow + 1);
	std::optional<Micros> leave = next_stage_change(held, s10, kNow);
	ASSERT_TRUE(leave);
	// 50 x 2^(-dt / 30 days) < 40 from dt = 30 days x log2(50 / 40).
	double expected = kNow + 30.0 * kDay * std::log2(50.0 / 40.0);
	EXPECT_NEAR((double) *leave, expected, 2);
	EXPECT_EQ(evaluate(held, s10, *leave - 1).stage, "MQL");
	EXPECT_EQ(evaluate(held, s10, *leave).stage, "warm");
	EXPECT_LT(evaluate(held, s10, *leave).score, 40);
	EXPECT_GE(evaluate(held, s10, *leave - 1).score, 40);
}

// The time-driven walk searches each change from the stage the last one left: MQL -> warm below 40, warm
// -> cold below 20 (not below 30).
TEST(StageExitMargin, WalkFromStageToStage)
{
	ModelSpec m = model(10);
	LeadState s = demo_at(m, kNow, "MQL");
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kNow + 400 * kDay);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_EQ(changes[0].from, "MQL");
	EXPECT_EQ(changes[0].to, "warm");
	EXPECT_NEAR((double) changes[0].at, kNow + 30.0 * kDay * std::log2(50.0 / 40.0), 2);
	EXPECT_EQ(changes[1].from, "warm");
	EXPECT_EQ(changes[1].to, "cold");
	EXPECT_NEAR((double) changes[1].at, kNow + 30.0 * kDay * std::log2(50.0 / 20.0), 2);
	EXPECT_LT(changes[1].score, 20);
	// Never down: no change at all.
	EXPECT_TRUE(stage_changes(model(INFINITY), s, kNow, kNow + 4000 * kDay).empty());
}

namespace {

// A random lead of model m (demos and visits over the last 60 days, a stage it may hold at t0, entered up to
// 20 days before when min_time), and the checks: the lower bound the live trigger stores is never after the
// next change, which is exact (the stage of t0 until just before it, another at it).
void check_lower_bound(const ModelSpec &m, std::mt19937_64 &rng, bool min_time, int trial)
{
	LeadState s;
	s.reset(m);
	int demos = (int) (rng() % 3), visits = (int) (rng() % 40);
	for (int i = 0; i < demos; i++)
		apply_event(m, s, kNow - (Micros) (rng() % (60 * kDay)), {true, false}, +1);
	for (int i = 0; i < visits; i++)
		apply_event(m, s, kNow - (Micros) (rng() % (60 * kDay)), {false, true}, +1);
	Micros t0 = kNow + (Micros) (rng() % kDay);
	const char *names[] = {"cold", "warm", "MQL"};
	s.stage = names[rng() % 3];
	if (min_time)
		s.stage_since = t0 - (Micros) (rng() % (20 * kDay));
	s.stage = evaluate(m, s, t0).stage; // a stage the lead may hold at t0
	ScoreResult at_t0 = evaluate(m, s, t0);
	std::optional<Micros> next = next_stage_change(m, s, t0);
	std::optional<Micros> bound = stage_change_lower_bound(m, s, t0, at_t0.score);
	if (next) {
		ASSERT_TRUE(bound) << trial;
		EXPECT_LE(*bound, *next) << trial;
		EXPECT_EQ(evaluate(m, s, *next - 1).stage, at_t0.stage) << trial;
		EXPECT_NE(evaluate(m, s, *next).stage, at_t0.stage) << trial;
	}
}

} // namespace

// The live trigger stores a lower bound of the next change: never after it, under any margin.
TEST(StageExitMargin, LowerBoundNeverLate)
{
	std::mt19937_64 rng(42);
	for (int trial = 0; trial < 300; trial++) {
		double margin = std::uniform_real_distribution<double>(0, 30)(rng);
		check_lower_bound(model(trial % 10 == 0 ? INFINITY : margin), rng, false, trial);
	}
}

// explain says when the stage is held above the score's own band, for no points (the lines still sum to
// the score); not when the stage is the score's own.
TEST(StageExitMargin, ExplainSaysTheStageIsHeld)
{
	ModelSpec m = model(10);
	LeadState s = demo_at(m, kNow, "MQL");
	Micros later = kNow + 5 * kDay; // 50 x 2^(-5/30) = 44.5: held in MQL
	ScoreResult r = evaluate(m, s, later, true);
	ASSERT_EQ(r.stage, "MQL");
	std::vector<ExplainLine> lines = explain_lines(m, s, r);
	ASSERT_FALSE(lines.empty());
	EXPECT_EQ(lines.back().kind, "stage");
	EXPECT_EQ(lines.back().name, "(stage held: MQL)");
	EXPECT_EQ(lines.back().weighted, 0);
	EXPECT_FALSE(lines.back().points.has_value());
	double sum = 0;
	for (const ExplainLine &line : lines)
		sum += line.weighted;
	EXPECT_NEAR(sum, r.score, 1e-9);
	ScoreResult now = evaluate(m, s, kNow, true);
	for (const ExplainLine &line : explain_lines(m, s, now))
		EXPECT_NE(line.kind, "stage");
}

// ------------------------------------------------------------------------------------------------
// Minimum time in stage (ModelSpec::stage_min_time): a lead goes to a lower stage no earlier than
// stage_min_time after it entered its stage (LeadState::stage_since), alone or with a margin.

namespace {

ModelSpec min_time_model(double margin, Micros min_time)
{
	ModelSpec m = model(margin);
	m.stage_min_time = min_time;
	m.validate();
	return m;
}

} // namespace

TEST(StageMinTime, StageFor)
{
	ModelSpec m = min_time_model(0, 14 * kDay);
	EXPECT_EQ(stage_for(m, 10, "MQL", kNow, kNow + kDay), "MQL");          // held: entered a day ago
	EXPECT_EQ(stage_for(m, 10, "MQL", kNow, kNow + 14 * kDay - 1), "MQL"); // up to the last microsecond
	EXPECT_EQ(stage_for(m, 10, "MQL", kNow, kNow + 14 * kDay), "cold");    // then the score's stage
	EXPECT_EQ(stage_for(m, 35, "MQL", kNow, kNow + 14 * kDay), "warm");
	EXPECT_EQ(stage_for(m, 80, "warm", kNow, kNow + kDay), "MQL");         // up is never held
	EXPECT_EQ(stage_for(m, 10, "MQL", std::nullopt, kNow + kDay), "cold"); // entered at an unknown time
	EXPECT_EQ(stage_for(m, 10, std::nullopt, kNow, kNow + kDay), "cold");  // no stage yet
	EXPECT_EQ(stage_for(m, 10, "renamed", kNow, kNow + kDay), "cold");     // a stage the model lost
	ModelSpec both = min_time_model(10, 14 * kDay);
	EXPECT_EQ(stage_for(both, 45, "MQL", kNow, kNow + 20 * kDay), "MQL"); // time over, the margin holds
	EXPECT_EQ(stage_for(both, 35, "MQL", kNow, kNow + 20 * kDay), "warm");
	EXPECT_EQ(stage_for(both, 5, "MQL", kNow, kNow + 13 * kDay), "MQL"); // time holds below the margin
	// A lead that entered its stage at the end of time: no overflow, held.
	EXPECT_EQ(stage_for(m, 10, "MQL", std::numeric_limits<Micros>::max() - 5, kNow), "MQL");
}

TEST(StageMinTime, Validated)
{
	ModelSpec m = model(0);
	m.stage_min_time = 0;
	expect_invalid(m, "model \"saas\": stage_min_time must be positive");
	m.stage_min_time = -kDay;
	expect_invalid(m, "model \"saas\": stage_min_time must be positive");
}

// The example with a minimum time: the lead reaching exactly 50 stays MQL for 14 days, then goes to
// the stage its score gives at that very microsecond (a jump: 50 x 2^(-14/30) = 36.1, warm).
TEST(StageMinTime, ExitAtTheEndOfTheMinimum)
{
	ModelSpec m = min_time_model(0, 14 * kDay);
	LeadState s = demo_at(m, kNow, "MQL");
	s.stage_since = kNow;
	EXPECT_EQ(next_stage_change(m, s, kNow), kNow + 14 * kDay);
	EXPECT_EQ(evaluate(m, s, kNow + 14 * kDay - 1).stage, "MQL");
	EXPECT_EQ(evaluate(m, s, kNow + 14 * kDay).stage, "warm");
	// The walk: warm entered at day 14; the score falls below 30 at day 22.1, but warm holds until day 28.
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kNow + 400 * kDay);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_EQ(changes[0].at, kNow + 14 * kDay);
	EXPECT_EQ(changes[0].to, "warm");
	EXPECT_EQ(changes[1].at, kNow + 28 * kDay);
	EXPECT_EQ(changes[1].from, "warm");
	EXPECT_EQ(changes[1].to, "cold");
	EXPECT_LT(changes[1].score, 30);
	// A score falling below the band only after the minimum: at its own instant, as without one.
	ModelSpec short_min = min_time_model(0, kDay);
	LeadState w = demo_at(short_min, kNow, "MQL");
	w.stage_since = kNow - 30 * kDay; // in MQL for long: the minimum is over
	std::optional<Micros> leave = next_stage_change(short_min, w, kNow);
	EXPECT_EQ(leave, kNow + 1);
	// With a margin too: out of MQL once both hold (below 40 from day 9.66; the minimum is 14 days).
	ModelSpec both = min_time_model(10, 14 * kDay);
	LeadState b = demo_at(both, kNow, "MQL");
	b.stage_since = kNow;
	EXPECT_EQ(next_stage_change(both, b, kNow), kNow + 14 * kDay);
	ModelSpec both_short = min_time_model(10, 5 * kDay);
	LeadState c = demo_at(both_short, kNow, "MQL");
	c.stage_since = kNow;
	std::optional<Micros> margin_exit = next_stage_change(both_short, c, kNow);
	ASSERT_TRUE(margin_exit);
	EXPECT_NEAR((double) *margin_exit, kNow + 30.0 * kDay * std::log2(50.0 / 40.0), 2);
}

// The lower bound the live trigger stores is never after the next change, under a minimum time and a margin.
TEST(StageMinTime, LowerBoundNeverLate)
{
	std::mt19937_64 rng(7);
	for (int trial = 0; trial < 400; trial++) {
		double margin = trial % 3 == 0 ? 0 : std::uniform_real_distribution<double>(0, 30)(rng);
		check_lower_bound(min_time_model(margin, (Micros) (1 + rng() % (20 * kDay))), rng, true, trial);
	}
}

// A stage's own margin and minimum time (ModelSpec::stage_holds) in place of the model's: MQL held 14 days and
// down to 40; warm by the model's (none: it follows the score).
TEST(StageHolds, PerStage)
{
	ModelSpec m = model(0);
	m.stage_holds = {{"MQL", 10.0, 14 * kDay}};
	m.validate();
	EXPECT_TRUE(m.stage_has_memory());
	EXPECT_EQ(stage_for(m, 10, "MQL", kNow, kNow + kDay), "MQL");      // MQL's minimum
	EXPECT_EQ(stage_for(m, 45, "MQL", kNow, kNow + 20 * kDay), "MQL"); // MQL's margin
	EXPECT_EQ(stage_for(m, 35, "MQL", kNow, kNow + 20 * kDay), "warm");
	EXPECT_EQ(stage_for(m, 29.9, "warm", kNow, kNow + kDay), "cold"); // warm: the model's (nothing)
	LeadState s = demo_at(m, kNow, "MQL");
	s.stage_since = kNow;
	// Out of MQL at day 14 (score 36.2 < 40), then warm follows the score: cold at day 22.1.
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kNow + 400 * kDay);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_EQ(changes[0].at, kNow + 14 * kDay);
	EXPECT_EQ(changes[0].to, "warm");
	EXPECT_NEAR((double) changes[1].at, kNow + 30.0 * kDay * std::log2(50.0 / 30.0), 2);
	EXPECT_EQ(changes[1].to, "cold");
	// A stage never left for a lower one, under a model that lets the others go.
	ModelSpec never = model(0);
	never.stage_holds = {{"MQL", INFINITY, std::nullopt}};
	never.validate();
	EXPECT_TRUE(stage_changes(never, demo_at(never, kNow, "MQL"), kNow, kNow + 4000 * kDay).empty());
	// Refused: a negative or NaN margin, a minimum of 0.
	ModelSpec bad = model(0);
	bad.stage_holds = {{"MQL", -1.0, std::nullopt}};
	expect_invalid(bad,
	               "model \"saas\": stage \"MQL\": exit_margin must be 0 or more (Infinity: the stage is never left "
	               "for a lower one)");
	bad.stage_holds = {{"MQL", std::nullopt, 0}};
	expect_invalid(bad, "model \"saas\": stage \"MQL\": min_time must be positive");
	// Random leads: the lower bound is never late, the next change exact.
	std::mt19937_64 rng(11);
	for (int trial = 0; trial < 300; trial++) {
		ModelSpec r = model(trial % 2 ? 0 : 5);
		r.stage_holds = {{"MQL", trial % 3 ? std::optional<double>(12.0) : std::nullopt,
		                  (Micros) (1 + rng() % (10 * kDay))},
		                 {"warm", std::nullopt, trial % 4 ? std::optional<Micros>(kDay) : std::nullopt}};
		r.validate();
		check_lower_bound(r, rng, true, trial);
	}
}
