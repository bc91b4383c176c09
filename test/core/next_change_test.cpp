// Stage changes caused by time alone: next_stage_change agrees exactly with evaluate(), on chosen cases and
// against a brute-force scan of random models and states.
#include "helpers.h"
#include "score.h"
#include "timeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::kMinute;
using leadscore::core::testing::kDay;
using leadscore::core::testing::kNow;

namespace {

std::optional<std::string> stage(const ModelSpec &m, const LeadState &s, Micros t)
{
	return evaluate(m, s, t).stage;
}

// The change is where evaluate() says it is: the old stage one microsecond before, the new one at it.
void expect_change_at(const ModelSpec &m, const LeadState &s, Micros t0, Micros t)
{
	EXPECT_GT(t, t0);
	EXPECT_EQ(stage(m, s, t - 1), stage(m, s, t0));
	EXPECT_NE(stage(m, s, t), stage(m, s, t0));
}

void events(const ModelSpec &m, LeadState &s, size_t index, int count, Micros at)
{
	std::vector<bool> matched(m.event_rules.size(), false);
	matched[index] = true;
	for (int i = 0; i < count; i++)
		EXPECT_FALSE(apply_event(m, s, at, matched, +1));
}

ModelSpec base_model()
{
	ModelSpec m;
	m.name = "saas";
	m.lead_rules = {rule("technology", 20)};
	m.event_rules = {rule("pricing", 10)};
	m.stages = {{"cold", -INFINITY}, {"warm", 25}, {"hot", 30}};
	return m;
}

} // namespace

TEST(NextStageChange, NoStagesNoChange)
{
	ModelSpec m = base_model();
	m.stages.clear();
	m.half_life = 30.0 * kDay;
	m.validate();
	LeadState s;
	events(m, s, 0, 3, kNow);
	EXPECT_FALSE(next_stage_change(m, s, kNow));
	EXPECT_TRUE(stage_changes(m, s, kNow, kEndOfTime - 1).empty());
}

TEST(NextStageChange, WithoutDecayOnlyStepsChangeTheStage)
{
	ModelSpec m = base_model();
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 1, kNow);
	EXPECT_FALSE(next_stage_change(m, s, kNow));
	EXPECT_TRUE(score_breakpoints(m, s, kNow).empty());

	m.inactivity = {{"dormant", 90 * kDay, -25}, {"quiet", 30 * kDay, -10}};
	m.validate();
	// 30, then 20 (cold) from exactly 30 days after the last activity, then 5 (still cold).
	EXPECT_EQ(next_stage_change(m, s, kNow), kNow + 30 * kDay);
	EXPECT_EQ(next_stage_change(m, s, kNow + 30 * kDay - 1), kNow + 30 * kDay);
	EXPECT_FALSE(next_stage_change(m, s, kNow + 30 * kDay));
	EXPECT_EQ(score_breakpoints(m, s, kNow), (std::vector<Micros>{kNow + 30 * kDay, kNow + 90 * kDay}));

	// With a stage between the steps, both steps change it.
	m.stages.push_back({"lukewarm", 10});
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kEndOfTime - 1);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_EQ(changes[0].at, kNow + 30 * kDay);
	EXPECT_EQ(changes[0].from, "hot");
	EXPECT_EQ(changes[0].to, "lukewarm");
	EXPECT_EQ(changes[0].score, 20);
	EXPECT_EQ(changes[1].at, kNow + 90 * kDay);
	EXPECT_EQ(changes[1].from, "lukewarm");
	EXPECT_EQ(changes[1].to, "cold");
	EXPECT_EQ(changes[1].score, 5);
	// (t0, t1]: a change at t1 is included, one after t1 is not.
	EXPECT_EQ(stage_changes(m, s, kNow, kNow + 90 * kDay).size(), 2u);
	EXPECT_EQ(stage_changes(m, s, kNow, kNow + 90 * kDay - 1).size(), 1u);
	EXPECT_EQ(stage_changes(m, s, kNow + 30 * kDay, kNow + 90 * kDay).size(), 1u);
}

TEST(NextStageChange, DecayBelowAThreshold)
{
	ModelSpec m = base_model();
	m.half_life = 30.0 * kDay;
	m.validate();
	LeadState s;
	events(m, s, 0, 5, kNow - 3 * kDay);
	// 50 x 2^(-t / 30 days) < 30 after 30 days x log2(5/3), < 25 after 30 days.
	std::optional<Micros> t = next_stage_change(m, s, kNow);
	ASSERT_TRUE(t);
	expect_change_at(m, s, kNow, *t);
	EXPECT_NEAR((double) (*t - kNow + 3 * kDay), 30 * kDay * std::log2(5.0 / 3), 2);
	std::optional<Micros> u = next_stage_change(m, s, *t);
	ASSERT_TRUE(u);
	expect_change_at(m, s, *t, *u);
	EXPECT_NEAR((double) (*u - kNow + 3 * kDay), 30 * kDay, 2);
	EXPECT_EQ(stage(m, s, *u), "cold");
	EXPECT_FALSE(next_stage_change(m, s, *u));
}

TEST(NextStageChange, NegativePointsRiseBackAboveAThreshold)
{
	ModelSpec m = base_model();
	m.half_life = 10.0 * kDay;
	m.lead_rules = {rule("technology", 40)};
	m.event_rules = {rule("unsubscribe", -20)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 1, kNow);
	// 40 - 20 x 2^(-t / 10 days): 20 (cold), reaches 25 after 10 x log2(4/3) days, 30 after 10 days.
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kEndOfTime - 1);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_NEAR((double) (changes[0].at - kNow), 10 * kDay * std::log2(4.0 / 3), 2);
	EXPECT_EQ(changes[0].to, "warm");
	EXPECT_NEAR((double) (changes[1].at - kNow), 10 * kDay, 2);
	EXPECT_EQ(changes[1].to, "hot");
	expect_change_at(m, s, kNow, changes[0].at);
	expect_change_at(m, s, changes[0].at, changes[1].at);
}

TEST(NextStageChange, GracePeriodDelaysTheChange)
{
	ModelSpec m = base_model();
	m.half_life = 30.0 * kDay;
	m.grace = 14 * kDay;
	m.validate();
	LeadState s;
	events(m, s, 0, 5, kNow - 20 * kDay);
	std::vector<bool> none(1, false);
	apply_event(m, s, kNow, none, +1); // activity matching no rule
	std::optional<Micros> t = next_stage_change(m, s, kNow);
	ASSERT_TRUE(t);
	expect_change_at(m, s, kNow, *t);
	EXPECT_NEAR((double) (*t - kNow - 14 * kDay), 30 * kDay * std::log2(5.0 / 3), 2);
}

// A capped rule against an uncapped negative one: the score rises while the cap binds, then falls.
TEST(NextStageChange, CapMakesTheScoreTurnBack)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 10.0 * kDay;
	m.event_rules = {rule("open", 10, 60), rule("complaint", -40)};
	m.stages = {{"cold", -INFINITY}, {"warm", 30}};
	m.validate();
	LeadState s;
	events(m, s, 0, 10, kNow);
	events(m, s, 1, 1, kNow);
	// min(100v, 60) - 40v with v = 2^(-t / 10 days): 20 at v = 1, 30 at v = 0.75, peak 36 at v = 0.6,
	// 30 again at v = 0.5.
	std::vector<Micros> cuts = score_breakpoints(m, s, kNow);
	ASSERT_FALSE(cuts.empty());
	EXPECT_NEAR((double) (cuts[0] - kNow), 10 * kDay * std::log2(1 / 0.6), 2);
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kEndOfTime - 1);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_NEAR((double) (changes[0].at - kNow), 10 * kDay * std::log2(1 / 0.75), 2);
	EXPECT_EQ(changes[0].to, "warm");
	EXPECT_NEAR((double) (changes[1].at - kNow), 10 * kDay, 2);
	EXPECT_EQ(changes[1].to, "cold");

	// A threshold just under the peak: warm for a moment only, found from the breakpoint.
	m.stages[1].min_score = 35.999999;
	changes = stage_changes(m, s, kNow, kEndOfTime - 1);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_LT(changes[0].at, cuts[0]);
	EXPECT_GT(changes[1].at, cuts[0]);
	EXPECT_LT(changes[1].at - changes[0].at, 10 * kMinute);
}

// A capped category holding rules of both signs, with the cap binding first and a floor.
TEST(NextStageChange, CategoryCapWithMixedSigns)
{
	ModelSpec m;
	m.name = "b2b";
	m.half_life = 10.0 * kDay;
	m.floor = 0;
	m.categories = {{"behaviour", 0.5, 30.0}};
	m.lead_rules = {rule("technology", 10, std::nullopt, false, 0)};
	m.event_rules = {rule("pricing", 10, std::nullopt, false, 0), rule("spam", -5, std::nullopt, false, 0)};
	m.stages = {{"cold", -INFINITY}, {"warm", 12}};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 6, kNow);
	events(m, s, 1, 2, kNow);
	// subtotal 10 + 50v, capped at 30 until v = 0.4, then 0.5 x (10 + 50v) < 12 when v < 0.28.
	std::vector<Micros> cuts = score_breakpoints(m, s, kNow);
	ASSERT_FALSE(cuts.empty());
	EXPECT_NEAR((double) (cuts[0] - kNow), 10 * kDay * std::log2(1 / 0.4), 2);
	std::optional<Micros> t = next_stage_change(m, s, kNow);
	ASSERT_TRUE(t);
	expect_change_at(m, s, kNow, *t);
	EXPECT_NEAR((double) (*t - kNow), 10 * kDay * std::log2(1 / 0.28), 2);
}

// A change exactly at a breakpoint: the score leaves the threshold at the instant the cap stops binding.
TEST(NextStageChange, ChangeAtACapBreakpoint)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 10.0 * kDay;
	m.event_rules = {rule("open", 1, 10)};
	m.stages = {{"cold", -INFINITY}, {"hot", 10}};
	m.validate();
	LeadState s;
	events(m, s, 0, 20, kNow);
	std::optional<Micros> t = next_stage_change(m, s, kNow);
	ASSERT_TRUE(t);
	expect_change_at(m, s, kNow, *t);
	EXPECT_NEAR((double) (*t - kNow), 10 * kDay, 2);
}

// The limit of the score is the threshold itself: the change happens when the decayed part rounds away.
TEST(NextStageChange, ThresholdReachedOnlyByRounding)
{
	ModelSpec m = base_model();
	m.half_life = 1.0 * kDay;
	m.lead_rules = {rule("technology", 30)};
	m.event_rules = {rule("unsubscribe", -20)};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 1, kNow);
	std::vector<StageChange> changes = stage_changes(m, s, kNow, kEndOfTime - 1);
	ASSERT_EQ(changes.size(), 2u);
	EXPECT_EQ(changes[1].to, "hot");
	EXPECT_EQ(changes[1].score, 30);
	expect_change_at(m, s, changes[0].at, changes[1].at);
	// Some 50 half-lives: 20 x 2^-x < half an ulp of 30.
	EXPECT_GT(changes[1].at - kNow, 45 * kDay);
	EXPECT_LT(changes[1].at - kNow, 60 * kDay);
}

// A lead held at a category cap that equals a band's bound stays in that band at every instant while the
// rules under the cap decay (their shares of the cap must not round below it).
TEST(NextStageChange, PlateauOnABandBound)
{
	ModelSpec m;
	m.name = "b2b";
	m.half_life = 3.0 * kDay;
	m.categories = {{"behaviour", 0.75, 15.75}};
	m.lead_rules = {rule("technology", 12, std::nullopt, false, 0)};
	m.event_rules = {rule("pricing", 3.25, std::nullopt, false, 0), rule("spam", -1.5, std::nullopt, false, 0),
	                 rule("webinar", 7)};
	m.stages = {{"cold", -INFINITY}, {"sql", 0.75 * 15.75}};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 9, kNow - kDay);
	events(m, s, 1, 3, kNow - 5 * kDay);
	// 12 + 3.25 x 9 x v - 4.5 x v' stays above 15.75 for days; the score is exactly 0.75 x 15.75 + webinar.
	for (Micros t = kNow; t < kNow + kDay; t += 997 * kMinute / 100)
		ASSERT_EQ(evaluate(m, s, t).score, 0.75 * 15.75) << (t - kNow);
	// The stage changes only once the subtotal falls under the cap.
	std::optional<Micros> t = next_stage_change(m, s, kNow);
	ASSERT_TRUE(t);
	expect_change_at(m, s, kNow, *t);
	EXPECT_GT(*t, kNow + kDay);
	// Solved in double precision: within a microsecond or two of the exact instant.
	EXPECT_LE(std::llabs(*t - score_breakpoints(m, s, kNow)[0]), 2);
}

TEST(NextStageChange, FarFutureHasNoChange)
{
	ModelSpec m = base_model();
	m.half_life = 30.0 * kDay;
	m.inactivity = {{"quiet", 30 * kDay, -10}};
	m.validate();
	LeadState s;
	set_lead(m, s, {1});
	events(m, s, 0, 5, kNow);
	Micros far = kNow + 2000 * 30 * kDay;
	EXPECT_EQ(evaluate(m, s, far).score, 10);
	EXPECT_FALSE(next_stage_change(m, s, far));
	EXPECT_TRUE(score_breakpoints(m, s, far).empty());
	// Close to the end of time, nothing overflows.
	EXPECT_FALSE(next_stage_change(m, s, kEndOfTime - 10));
	LeadState early;
	set_lead(m, early, {1});
	events(m, early, 0, 5, -200000LL * 365 * kDay / 1000);
	EXPECT_TRUE(next_stage_change(m, early, -200000LL * 365 * kDay / 1000));
}

TEST(NextStageChange, UntouchedStateAndLeadWithoutEvents)
{
	ModelSpec m = base_model();
	m.half_life = 30.0 * kDay;
	m.inactivity = {{"quiet", 30 * kDay, -10}};
	m.validate();
	LeadState fresh;
	EXPECT_FALSE(next_stage_change(m, fresh, kNow));
	set_lead(m, fresh, {1});
	EXPECT_FALSE(next_stage_change(m, fresh, kNow));
}

namespace {

// ------------------------------------------------------------------------------------------------
// Random models and states against a brute-force scan.

struct Case {
	ModelSpec model;
	LeadState state;
	Micros t0 = 0;
};

// Times are drawn in units of `unit` (a minute: half-lives of 2 to 15 minutes, or a day).
Case random_case(std::mt19937_64 &rng, Micros unit = kMinute)
{
	auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
	auto chance = [&](double p) { return uniform(0, 1) < p; };
	auto integer = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
	auto points = [&](double lo, double hi) { return std::round(uniform(lo, hi) * 4) / 4; };

	Case c;
	ModelSpec &m = c.model;
	m.name = "random";
	int categories = integer(0, 2);
	for (int i = 0; i < categories; i++) {
		std::optional<double> cap;
		if (chance(0.7))
			cap = points(2, 40);
		m.categories.push_back({"c" + std::to_string(i), chance(0.1) ? -0.5 : points(0.25, 1.5), cap});
	}
	auto random_rule = [&](const std::string &name, bool event) {
		// Not on a grid: three rules whose points sum to exactly 0 would cancel only up to rounding,
		// and a score that is mathematically constant but jitters by an ulp has no first change.
		RuleSpec r = rule(name, uniform(-30, 30));
		if (chance(0.4))
			r.cap = points(1, 40);
		if (event && chance(0.2))
			r.once_per_lead = true;
		r.category = integer(-1, categories - 1);
		return r;
	};
	int lead_rules = integer(0, 2), event_rules = integer(2, 6);
	for (int i = 0; i < lead_rules; i++)
		m.lead_rules.push_back(random_rule("l" + std::to_string(i), false));
	for (int i = 0; i < event_rules; i++)
		m.event_rules.push_back(random_rule("e" + std::to_string(i), true));
	if (chance(0.3))
		m.floor = points(-20, 5);
	if (chance(0.3))
		m.ceiling = points(20, 60);
	if (chance(0.8)) {
		m.half_life = uniform(2, 15) * unit;
		if (chance(0.4))
			m.grace = (Micros) (uniform(1, 30) * unit);
	}
	int steps = integer(0, 3);
	for (int i = 0; i < steps; i++) {
		Micros after = (Micros) (uniform(0.5, 60) * unit);
		bool taken = false;
		for (const InactivityStep &s : m.inactivity)
			taken = taken || s.after == after;
		if (!taken)
			m.inactivity.push_back({"i" + std::to_string(i), after, points(-30, 10)});
	}
	m.validate();

	c.t0 = kNow + (Micros) (uniform(0, 1) * kDay);
	LeadState &s = c.state;
	if (lead_rules > 0 && chance(0.8)) {
		std::vector<double> fit;
		for (int i = 0; i < lead_rules; i++)
			fit.push_back(chance(0.6));
		set_lead(m, s, fit);
	}
	int n = integer(0, 12);
	for (int i = 0; i < n; i++) {
		std::vector<bool> matched;
		for (int r = 0; r < event_rules; r++)
			matched.push_back(chance(0.4));
		Micros at = chance(0.1) ? c.t0 : c.t0 - (Micros) (uniform(0, 120) * unit);
		EXPECT_FALSE(apply_event(m, s, at, matched, +1));
	}
	// Now and then read later than the latest event, even long after everything decayed.
	if (chance(0.2))
		c.t0 += (Micros) (uniform(0, 200) * unit);
	if (chance(0.02))
		c.t0 += 10000 * unit;
	// Bands anywhere, near a score the lead passes through after t0, or exactly on a level the score may
	// sit on or tend to (a plateau: floor, ceiling, a binding category cap, the score once all has decayed).
	std::vector<double> levels = {evaluate(m, s, c.t0).score, evaluate(m, s, kEndOfTime - 1).score};
	if (m.floor)
		levels.push_back(*m.floor);
	if (m.ceiling)
		levels.push_back(*m.ceiling);
	for (const CategorySpec &cat : m.categories)
		if (cat.cap)
			levels.push_back(cat.weight * *cat.cap);
	int stages = integer(1, 3);
	for (int i = 0; i < stages; i++) {
		double min_score = points(-30, 60);
		double kind = uniform(0, 1);
		if (kind < 0.5)
			min_score = evaluate(m, s, c.t0 + (Micros) (uniform(0, 150) * unit)).score + points(-2, 2);
		else if (kind < 0.7)
			min_score = levels[std::uniform_int_distribution<size_t>(0, levels.size() - 1)(rng)];
		m.stages.push_back({"s" + std::to_string(i), i == 0 && chance(0.3) ? -INFINITY : min_score});
	}
	return c;
}

// Brute force: the stage every unit (minute) up to a horizon past every step and every decay, and at each
// breakpoint and the microsecond before it (a stage that leaves and comes back within a minute can only
// do so around a breakpoint); the first sample with another stage is refined by bisection from the
// sample before it.
std::optional<Micros> brute_next(const Case &c, Micros t0, Micros unit = kMinute)
{
	const ModelSpec &m = c.model;
	Micros horizon = t0;
	if (c.state.last_activity) {
		Micros last = *c.state.last_activity + m.grace.value_or(0);
		for (const InactivityStep &step : m.inactivity)
			last = std::max(last, *c.state.last_activity + step.after);
		horizon = std::max(horizon, last);
	}
	std::vector<Micros> samples;
	if (m.half_life)
		horizon += (Micros) (90 * *m.half_life);
	for (Micros t = t0 + unit; t <= horizon; t += unit)
		samples.push_back(t);
	for (Micros b : score_breakpoints(m, c.state, t0))
		for (Micros t : {b - 1, b})
			if (t > t0)
				samples.push_back(t);
	// Beyond 90 half-lives a total is under 1e-27 of its size: only a score tending to a threshold itself
	// can still change stage; the end of time decides.
	samples.push_back(kEndOfTime - 1);
	std::sort(samples.begin(), samples.end());
	samples.erase(std::unique(samples.begin(), samples.end()), samples.end());

	const std::optional<std::string> before = stage(m, c.state, t0);
	Micros lo = t0;
	for (Micros t : samples) {
		if (stage(m, c.state, t) == before) {
			lo = t;
			continue;
		}
		Micros hi = t;
		while (hi - lo > 1) {
			Micros mid = lo + (hi - lo) / 2;
			(stage(m, c.state, mid) != before ? hi : lo) = mid;
		}
		return hi;
	}
	return std::nullopt;
}

} // namespace

TEST(NextStageChangeRandom, AgreesWithBruteForce)
{
	std::mt19937_64 rng(20261124);
	int changes = 0, none = 0, chains = 0, checked = 0;
	for (int i = 0; i < 6000; i++) {
		Case c = random_case(rng);
		ASSERT_TRUE(valid_at(c.state, c.t0));
		std::optional<Micros> want = brute_next(c, c.t0), got = next_stage_change(c.model, c.state, c.t0);
		ASSERT_EQ(got, want) << "case " << i;
		(got ? changes : none)++;
		if (!got)
			continue;
		expect_change_at(c.model, c.state, c.t0, *got);
		// Every later change too, for some cases.
		if (i % 4 == 0) {
			std::vector<StageChange> all = stage_changes(c.model, c.state, c.t0, kEndOfTime - 1);
			Micros t = c.t0;
			for (const StageChange &x : all) {
				ASSERT_EQ(x.at, brute_next(c, t)) << "case " << i;
				ASSERT_EQ(x.from, stage(c.model, c.state, x.at - 1));
				ASSERT_EQ(x.to, stage(c.model, c.state, x.at));
				t = x.at;
			}
			ASSERT_FALSE(brute_next(c, t)) << "case " << i;
			chains += all.size() > 1;
			checked++;
		}
	}
	// Both outcomes are well represented.
	std::printf("%d cases with a change (%d of them checked to the end, %d with several), %d without\n", changes,
	            checked, chains, none);
	EXPECT_GT(changes, 1800);
	EXPECT_GT(none, 1800);
	EXPECT_GT(chains, 150);
}

// The cheap bound the live trigger stores never passes the first change, and says "never" only when there
// is none.
TEST(NextStageChangeRandom, LowerBoundNeverPassesTheChange)
{
	std::mt19937_64 rng(20261125);
	int tight = 0, changes = 0;
	for (int i = 0; i < 6000; i++) {
		Case c = random_case(rng, i % 2 ? kMinute : kDay);
		std::optional<Micros> exact = next_stage_change(c.model, c.state, c.t0);
		std::optional<Micros> bound = stage_change_lower_bound(c.model, c.state, c.t0,
		                                                       evaluate(c.model, c.state, c.t0).score);
		if (bound) {
			ASSERT_GT(*bound, c.t0) << "case " << i;
		}
		if (!exact)
			continue;
		changes++;
		ASSERT_TRUE(bound) << "case " << i;
		ASSERT_LE(*bound, *exact) << "case " << i;
		tight += *exact - *bound <= (*exact - c.t0) / 10;
	}
	// Often close to the change (random models mix signs and caps: the worst case for the bound).
	std::printf("%d cases with a change, the bound within 10%% of the wait in %d\n", changes, tight);
	EXPECT_GT(changes, 2000);
	EXPECT_GT(tight, changes / 5);
}

// A lead whose engagement only adds points can only fall with time: below a band, nothing wakes it to rise;
// a negative total decaying can make it rise, and then the bound comes before that change.
TEST(NextStageChange, LowerBoundOnlyOnTheSideTheScoreMoves)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 30.0 * kDay;
	m.event_rules = {rule("pricing", 10, 60), rule("unsubscribe", -20)};
	m.stages = {{"cold", -INFINITY}, {"MQL", 50}};
	LeadState s;
	s.reset(m);
	events(m, s, 0, 2, kNow);
	EXPECT_EQ(stage_change_lower_bound(m, s, kNow, evaluate(m, s, kNow).score), std::nullopt);
	EXPECT_EQ(next_stage_change(m, s, kNow), std::nullopt);
	// 20 pricing views (200, capped at 60) and an unsubscribe: 40, cold; as the unsubscribe fades under
	// the cap, the lead rises to MQL after a half-life (60 - 20 x 0.5).
	events(m, s, 0, 18, kNow);
	events(m, s, 1, 1, kNow);
	std::optional<Micros> bound = stage_change_lower_bound(m, s, kNow, evaluate(m, s, kNow).score);
	std::optional<Micros> exact = next_stage_change(m, s, kNow);
	ASSERT_TRUE(bound && exact);
	EXPECT_LE(*bound, *exact);
}

// The same with half-lives of days and events over months, as the glue sees them.
TEST(NextStageChangeRandom, AgreesWithBruteForceAtTheScaleOfDays)
{
	std::mt19937_64 rng(4242);
	int changes = 0;
	for (int i = 0; i < 1500; i++) {
		Case c = random_case(rng, kDay);
		std::optional<Micros> want = brute_next(c, c.t0, kDay), got = next_stage_change(c.model, c.state, c.t0);
		ASSERT_EQ(got, want) << "case " << i;
		if (!got)
			continue;
		changes++;
		expect_change_at(c.model, c.state, c.t0, *got);
		if (i % 4 == 0) {
			Micros t = c.t0;
			for (const StageChange &x : stage_changes(c.model, c.state, c.t0, kEndOfTime - 1)) {
				ASSERT_EQ(x.at, brute_next(c, t, kDay)) << "case " << i;
				t = x.at;
			}
			ASSERT_FALSE(brute_next(c, t, kDay)) << "case " << i;
		}
	}
	EXPECT_GT(changes, 450);
}

// The claim the search rests on, checked without stages: between breakpoints the score never turns back.
TEST(NextStageChangeRandom, ScoreIsMonotoneBetweenBreakpoints)
{
	std::mt19937_64 rng(777);
	int turning = 0;
	for (int i = 0; i < 1000; i++) {
		Case c = random_case(rng);
		std::vector<Micros> cuts = score_breakpoints(c.model, c.state, c.t0);
		turning += cuts.size() > 1;
		Micros a = c.t0;
		cuts.push_back(cuts.empty() ? c.t0 + 1000 * kMinute : cuts.back() + 1000 * kMinute);
		for (Micros b : cuts) {
			// [a, b - 1] sampled at 41 points: no rise after a fall, no fall after a rise.
			double prev = evaluate(c.model, c.state, a).score;
			int direction = 0;
			for (int k = 1; k <= 40; k++) {
				Micros t = a + (Micros) ((double) (b - 1 - a) * k / 40);
				double x = evaluate(c.model, c.state, t).score;
				double tolerance = 1e-9 * (1 + std::fabs(x));
				int d = x > prev + tolerance ? 1 : x < prev - tolerance ? -1 : 0;
				ASSERT_FALSE(direction && d && d != direction)
					<< "case " << i << ": the score turns back between " << a - c.t0 << " and " << b - c.t0;
				if (d)
					direction = d;
				prev = x;
			}
			a = b;
		}
	}
	EXPECT_GT(turning, 300);
}
