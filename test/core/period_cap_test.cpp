// Frequency caps per period: buckets, validation, apply_event asking for a rebuild, and PeriodCapBuild
// against the definition (in each lead, rule and period only the earliest N matching events count).
#include "helpers.h"
#include "score.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::expect_invalid;
using leadscore::core::testing::rule;
using leadscore::core::testing::Event;
using leadscore::core::testing::build;
using leadscore::core::testing::kMinute;
using leadscore::core::testing::kHour;
using leadscore::core::testing::kDay;

namespace {

RuleSpec capped(const std::string &name, double points, int64_t n, Micros period,
                std::optional<double> cap = std::nullopt)
{
	RuleSpec r = rule(name, points, cap);
	r.max_per_period = n;
	r.period = period;
	return r;
}

// Rules: 0 "visit" +1 at most 20 a day; 1 "pricing" +10 uncapped; 2 "open" +2 at most 2 an hour.
ModelSpec model(std::optional<double> half_life_days, std::optional<Micros> grace = std::nullopt)
{
	ModelSpec m;
	m.name = "saas";
	if (half_life_days)
		m.half_life = *half_life_days * kDay;
	m.grace = grace;
	m.event_rules = {capped("visit", 1, 20, kDay), rule("pricing", 10), capped("open", 2, 2, kHour)};
	m.validate();
	return m;
}


// The definition: rule r's total at as_of over the events at or before as_of (and at or after the reset).
double definition(const ModelSpec &m, const std::vector<Event> &events, size_t r, Micros as_of,
                  std::optional<Micros> reset_at = std::nullopt, int64_t *hits = nullptr)
{
	const RuleSpec &spec = m.event_rules[r];
	std::vector<Micros> times;
	for (const Event &e : events)
		if (e.matched[r] && e.at <= as_of && (!reset_at || e.at >= *reset_at))
			times.push_back(e.at);
	std::sort(times.begin(), times.end());
	std::map<int64_t, int64_t> per_bucket;
	double sum = 0;
	int64_t n = 0;
	for (Micros t : times) {
		if (spec.capped_per_period() && per_bucket[period_bucket(t, spec.period)]++ >= spec.max_per_period)
			continue;
		n++;
		sum += m.half_life && !m.grace ? std::pow(0.5, (double) (as_of - t) / *m.half_life) : 1;
	}
	if (hits)
		*hits = n;
	return spec.points * sum;
}

} // namespace

TEST(PeriodCap, BucketsCountFromMondayThirdOfJanuary2000)
{
	// PostgreSQL's time 0 is Saturday 2000-01-01 00:00 UTC; Monday 2000-01-03 starts bucket 0.
	EXPECT_EQ(period_bucket(0, kDay), -2);
	EXPECT_EQ(period_bucket(2 * kDay - 1, kDay), -1);
	EXPECT_EQ(period_bucket(2 * kDay, kDay), 0);
	EXPECT_EQ(period_bucket(3 * kDay - 1, kDay), 0);
	EXPECT_EQ(period_bucket(3 * kDay, kDay), 1);
	// ISO weeks: Sunday 2000-01-09 23:59:59.999999 is still in the week of Monday the 3rd.
	EXPECT_EQ(period_bucket(0, 7 * kDay), -1);
	EXPECT_EQ(period_bucket(2 * kDay, 7 * kDay), 0);
	EXPECT_EQ(period_bucket(9 * kDay - 1, 7 * kDay), 0);
	EXPECT_EQ(period_bucket(9 * kDay, 7 * kDay), 1);
	// Long before the epoch: floor, not truncation.
	EXPECT_EQ(period_bucket(-365 * kDay, kDay), -367);
	EXPECT_EQ(period_bucket(2 * kDay - 3 * kHour, kHour), -3);
}

TEST(PeriodCap, ValidateRefusesBadCaps)
{
	ModelSpec m = model(30.0);
	m.event_rules[0].max_per_period = -1;
	expect_invalid(m, "rule \"visit\" of model \"saas\": max_per_period must be positive");
	m.event_rules[0].max_per_period = 0;
	expect_invalid(m, "rule \"visit\" of model \"saas\": max_per_period and period go together");
	m.event_rules[0].max_per_period = 3;
	m.event_rules[0].period = 0;
	expect_invalid(m, "rule \"visit\" of model \"saas\": max_per_period and period go together");
	m.event_rules[0].period = -kDay;
	expect_invalid(m, "rule \"visit\" of model \"saas\": period must be positive");
	m.event_rules[0].period = kDay;
	m.event_rules[0].once_per_lead = true;
	expect_invalid(m, "rule \"visit\" of model \"saas\": a cap per period and once_per_lead exclude each other");
	m = model(30.0);
	m.lead_rules = {capped("tech", 5, 1, kDay)};
	expect_invalid(m, "rule \"tech\" of model \"saas\": a cap per period applies to event rules only");
}

TEST(PeriodCap, ApplyEventLeavesCappedRulesToTheRebuild)
{
	ModelSpec m = model(30.0);
	LeadState s;
	EXPECT_FALSE(apply_event(m, s, 10 * kDay, {false, true, false}, +1));
	EXPECT_TRUE(apply_event(m, s, 11 * kDay, {true, true, false}, +1));
	EXPECT_EQ(s.n, (std::vector<int64_t>{0, 2, 0}));
	EXPECT_EQ(s.n_events, 2);
	EXPECT_EQ(s.last_activity, 11 * kDay);
	// Deleting an event of a capped rule is not "impossible" although the state counts none of them.
	EXPECT_TRUE(apply_event(m, s, 10 * kDay + 5, {true, false, false}, +1));
	EXPECT_TRUE(apply_event(m, s, 10 * kDay + 5, {true, false, false}, -1));
	EXPECT_EQ(s.n_events, 2);
	// A capped rule needs timed events.
	ModelSpec untimed = model(std::nullopt);
	LeadState u;
	try {
		apply_event(untimed, u, std::nullopt, {true, false, false}, +1);
		FAIL() << "accepted an untimed event of a capped rule";
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kInvalidParameter);
		EXPECT_STREQ(e.what(), "rule \"visit\" of model \"saas\" is capped per period: its events need a time");
	}
	EXPECT_EQ(u.n_events, 0);
}

TEST(PeriodCap, TwentyADayLikeAdobe)
{
	ModelSpec m = model(std::nullopt);
	Micros day = 100 * kDay + 2 * kDay; // a bucket boundary (days count from 2000-01-03)
	std::vector<Event> events;
	for (int i = 0; i < 25; i++)
		events.push_back({day + (i + 1) * kHour / 2, {true, false, false}});
	events.push_back({day + kDay, {true, false, false}}); // the next day
	LeadState s = build(m, events);
	EXPECT_EQ(s.n[0], 21);
	EXPECT_EQ(s.w[0], 21);
	EXPECT_EQ(s.first[0], day + kHour / 2);
	ScoreResult r = evaluate(m, s, day + kDay, true);
	EXPECT_EQ(r.engagement, 21);
	EXPECT_EQ(r.rules[0].hits, 21);
	// At a time within the day: only the events so far, and at most 20 of them (prefix-stable).
	LeadState at_noon = build(m, {events.begin(), events.begin() + 24});
	EXPECT_EQ(at_noon.n[0], 20);
	LeadState at_9 = build(m, {events.begin(), events.begin() + 18});
	EXPECT_EQ(at_9.n[0], 18);
}

TEST(PeriodCap, OutOfOrderEventDisplacesTheLatestOfItsPeriod)
{
	ModelSpec m = model(10.0);
	Micros day = 200 * kDay + 2 * kDay;
	std::vector<Event> events;
	for (int i = 0; i < 20; i++)
		events.push_back({day + (i + 4) * kHour, {true, false, false}});
	LeadState before = build(m, events);
	EXPECT_EQ(before.n[0], 20);
	// An event dated earlier the same day arrives: it counts, the 20th (latest) no longer does.
	events.push_back({day + kHour, {true, false, false}});
	LeadState after = build(m, events);
	EXPECT_EQ(after.n[0], 20);
	EXPECT_EQ(after.first[0], day + kHour);
	Micros t = day + kDay;
	EXPECT_NEAR(evaluate(m, after, t).engagement, definition(m, events, 0, t), 1e-12);
	EXPECT_LT(evaluate(m, after, t).engagement, evaluate(m, before, t).engagement);
	// Deleting a counted event promotes the 21st.
	events.erase(events.begin() + 3);
	LeadState deleted = build(m, events);
	EXPECT_EQ(deleted.n[0], 20);
	EXPECT_NEAR(evaluate(m, deleted, t).engagement, definition(m, events, 0, t), 1e-12);
}

TEST(PeriodCap, WeightsAreRelativeToTheFinalRef)
{
	ModelSpec m = model(1.0);
	// Capped events first, then a later uncapped one moves ref: the capped weights follow it.
	std::vector<Event> events = {{10 * kDay, {true, false, false}},
	                             {10 * kDay + kHour, {true, false, true}},
	                             {12 * kDay, {false, true, false}}};
	LeadState s = build(m, events);
	EXPECT_EQ(s.ref, 12 * kDay);
	EXPECT_NEAR(s.w[0], 0.25 + std::exp2(-(2.0 * kDay - kHour) / kDay), 1e-15);
	EXPECT_NEAR(s.w[2], std::exp2(-(2.0 * kDay - kHour) / kDay), 1e-15);
	// An uncapped later event applied afterwards (as the trigger does) rescales them exactly.
	apply_event(m, s, 13 * kDay, {false, true, false}, +1);
	events.push_back({13 * kDay, {false, true, false}});
	for (size_t r = 0; r < 3; r++)
		EXPECT_NEAR(decayed_total(m, s, r, 20 * kDay), definition(m, events, r, 20 * kDay), 1e-12) << r;
}

TEST(PeriodCap, GraceModelsCountPlainEvents)
{
	ModelSpec m = model(5.0, 2 * kDay);
	std::vector<Event> events;
	for (int i = 0; i < 5; i++)
		events.push_back({50 * kDay + i * kHour / 10, {false, false, true}}); // 5 opens within an hour
	LeadState s = build(m, events);
	EXPECT_EQ(s.n[2], 2);
	EXPECT_EQ(s.w[2], 2);
	EXPECT_DOUBLE_EQ(evaluate(m, s, 50 * kDay + kDay).engagement, 4);
}

TEST(PeriodCap, EventsBeforeTheResetDoNotCountNorUseTheCap)
{
	ModelSpec m = model(std::nullopt);
	Micros hour = 1000 * kHour;
	std::vector<Event> events;
	for (int i = 0; i < 4; i++)
		events.push_back({hour + i * 10 * kMinute, {false, false, true}}); // :00 :10 :20 :30
	LeadState s = build(m, events, hour + 15 * kMinute);
	EXPECT_EQ(s.n[2], 2); // :20 and :30; :00 and :10 are before the reset
	EXPECT_EQ(s.first[2], hour + 20 * kMinute);
}

TEST(PeriodCap, FinishOnlySetsTheRulesAsked)
{
	ModelSpec m = model(std::nullopt);
	LeadState s = build(m, {{5 * kDay, {true, false, true}}});
	PeriodCapBuild caps;
	caps.start(m);
	caps.add(m, 5 * kDay, {true, false, true});
	caps.add(m, 5 * kDay + 1, {true, false, true});
	std::vector<bool> only = {false, false, true};
	caps.finish(m, s, &only);
	EXPECT_EQ(s.n[0], 1);
	EXPECT_EQ(s.n[2], 2);
	// start forgets what was collected.
	caps.start(m);
	caps.finish(m, s);
	EXPECT_EQ(s.n, (std::vector<int64_t>{0, 0, 0}));
	EXPECT_FALSE(s.first[0]);
}

// Random leads: events in random order (as rebuilds and recomputes apply them), a random reset and as_of;
// the state built from the events at or before as_of scores each rule as the definition does.
TEST(PeriodCap, RandomBuildsMatchTheDefinition)
{
	std::mt19937_64 rng(424242);
	for (std::optional<double> hl : {std::optional<double>(), std::optional<double>(3.0)}) {
		ModelSpec m = model(hl);
		m.event_rules[0].max_per_period = 3; // bind often
		for (int lead = 0; lead < 300; lead++) {
			std::uniform_int_distribution<Micros> time(0, 6 * kDay);
			std::uniform_int_distribution<int> pct(0, 99);
			std::vector<Event> events;
			int n = 1 + (int) (rng() % 40);
			for (int i = 0; i < n; i++) {
				Micros at = 3000 * kDay + time(rng);
				if (i > 0 && pct(rng) < 15)
					at = events[rng() % events.size()].at; // ties
				events.push_back({at, {pct(rng) < 60, pct(rng) < 30, pct(rng) < 50}});
			}
			Micros as_of = 3000 * kDay + time(rng);
			std::optional<Micros> reset;
			if (pct(rng) < 30)
				reset = 3000 * kDay + time(rng);
			std::vector<Event> upto;
			for (const Event &e : events)
				if (e.at <= as_of)
					upto.push_back(e);
			std::shuffle(upto.begin(), upto.end(), rng);
			LeadState s = build(m, upto, reset);
			if (s.n_events == 0)
				continue;
			ScoreResult r = evaluate(m, s, as_of, true);
			for (size_t k : {0, 2}) {
				int64_t hits = 0;
				double expected = definition(m, events, k, as_of, reset, &hits);
				EXPECT_NEAR(r.rules[k].decayed, expected, 1e-12 * std::max(1.0, std::fabs(expected)))
					<< "lead " << lead << " rule " << k;
				EXPECT_EQ(r.rules[k].hits, hits) << "lead " << lead << " rule " << k;
			}
		}
	}
}
