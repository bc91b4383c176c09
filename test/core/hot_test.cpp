// Hottest-leads keys: the bound they give is never below the exact score, at any time (also before some of
// the lead's events, read from the events up to then), and it is tight for a plain decaying model.
#include "helpers.h"
#include "hot.h"
#include "score.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace leadscore::core;
using leadscore::core::testing::rule;
using leadscore::core::testing::Event;
using leadscore::core::testing::kDay;
using leadscore::core::testing::kNow;

namespace {

ModelSpec random_model(std::mt19937_64 &rng)
{
	auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
	auto chance = [&](double p) { return uniform(0, 1) < p; };
	auto integer = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
	ModelSpec m;
	m.name = "random";
	int categories = integer(0, 3);
	for (int i = 0; i < categories; i++)
		m.categories.push_back({"c" + std::to_string(i), chance(0.2) ? -uniform(0.1, 2) : uniform(0.1, 2),
		                        chance(0.6) ? std::optional<double>(uniform(1, 40)) : std::nullopt});
	auto random_rule = [&](const std::string &name, bool event) {
		RuleSpec r = rule(name, uniform(-30, 30), chance(0.4) ? std::optional<double>(uniform(1, 40)) : std::nullopt,
		                  event && chance(0.2), integer(-1, categories - 1));
		return r;
	};
	for (int i = 0, n = integer(0, 3); i < n; i++)
		m.lead_rules.push_back(random_rule("l" + std::to_string(i), false));
	for (int i = 0, n = integer(1, 6); i < n; i++)
		m.event_rules.push_back(random_rule("e" + std::to_string(i), true));
	if (chance(0.3))
		m.floor = uniform(-20, 5);
	if (chance(0.3))
		m.ceiling = uniform(20, 80);
	if (chance(0.85)) {
		m.half_life = uniform(1, 40) * kDay;
		if (chance(0.4))
			m.grace = (Micros) (uniform(1, 30) * kDay);
	}
	for (int i = 0, n = integer(0, 3); i < n; i++)
		m.inactivity.push_back({"i" + std::to_string(i), (Micros) ((i + 1) * uniform(5, 40) * kDay), uniform(-30, 10)});
	m.validate();
	return m;
}

} // namespace

TEST(HotKeys, BoundIsNeverBelowTheScore)
{
	std::mt19937_64 rng(2718);
	auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
	int checked = 0;
	for (int c = 0; c < 3000; c++) {
		ModelSpec m = random_model(rng);
		LeadState s;
		s.reset(m);
		if (!m.lead_rules.empty() && uniform(0, 1) < 0.8) {
			std::vector<double> fit;
			for (size_t i = 0; i < m.lead_rules.size(); i++)
				fit.push_back(uniform(0, 1) < 0.5 ? 0 : uniform(0, 1) < 0.7 ? 1 : uniform(0, 1));
			set_lead(m, s, fit);
		}
		std::vector<Event> events;
		for (int i = 0, n = (int) uniform(0, 15); i < n; i++) {
			Event e{kNow - (Micros) (uniform(0, 200) * kDay), {}};
			for (size_t r = 0; r < m.event_rules.size(); r++)
				e.matched.push_back(uniform(0, 1) < 0.5);
			apply_event(m, s, e.at, e.matched, +1);
			events.push_back(e);
		}
		HotKeys keys = hot_keys(m, s);
		for (int k = 0; k < 8; k++) {
			Micros t = kNow + (Micros) (uniform(-220, 400) * kDay);
			// The exact score at t: from the events up to t when some are later.
			LeadState at_t = s;
			if (!valid_at(s, t)) {
				at_t.reset(m);
				for (const Event &e : events)
					if (e.at <= t)
						apply_event(m, at_t, e.at, e.matched, +1);
			}
			double score = evaluate(m, at_t, t).score;
			double bound = hot_bound(m, keys.fit, keys.engagement, t);
			ASSERT_LE(score, bound) << "case " << c << " at day " << (double) (t - kNow) / kDay;
			// A stored key looser than the exact one still bounds.
			double stored = hot_engagement_key_to_store(keys.engagement, std::nullopt);
			ASSERT_LE(score, hot_bound(m, keys.fit, stored, t));
			checked++;
		}
	}
	EXPECT_EQ(checked, 24000);
}

TEST(HotKeys, TightForAPlainDecayingModel)
{
	ModelSpec m;
	m.name = "saas";
	m.half_life = 30.0 * kDay;
	m.lead_rules = {rule("technology", 10)};
	m.event_rules = {rule("pricing", 10), rule("unsubscribe", -20)};
	LeadState s;
	s.reset(m);
	set_lead(m, s, {1});
	apply_event(m, s, kNow - 10 * kDay, {true, false}, +1);
	apply_event(m, s, kNow, {true, false}, +1);
	HotKeys keys = hot_keys(m, s);
	EXPECT_DOUBLE_EQ(keys.fit, 10);
	for (Micros t : {kNow, kNow + 30 * kDay, kNow + 365 * kDay}) {
		double score = evaluate(m, s, t).score;
		EXPECT_NEAR(hot_bound(m, keys.fit, keys.engagement, t), score, 1e-6 * score);
	}
	// A negative rule only lowers the score: the bound ignores it.
	apply_event(m, s, kNow, {false, true}, +1);
	HotKeys after = hot_keys(m, s);
	EXPECT_DOUBLE_EQ(after.engagement, keys.engagement);
	EXPECT_LT(evaluate(m, s, kNow).score, hot_bound(m, after.fit, after.engagement, kNow) - 19);
}

TEST(HotKeys, NoEngagementAndNoDecay)
{
	ModelSpec m;
	m.name = "fit";
	m.lead_rules = {rule("technology", 10), rule("gmail", -10)};
	m.event_rules = {rule("visit", 2)};
	m.ceiling = 15;
	LeadState s;
	s.reset(m);
	set_lead(m, s, {1, 1});
	HotKeys keys = hot_keys(m, s);
	EXPECT_EQ(keys.engagement, -INFINITY);
	EXPECT_NEAR(hot_bound(m, keys.fit, keys.engagement, kNow), 10, 1e-6);
	for (int i = 0; i < 5; i++)
		apply_event(m, s, kNow, {true}, +1);
	keys = hot_keys(m, s);
	// Without decay the key is the engagement itself, whatever the time; the ceiling clamps the bound.
	EXPECT_NEAR(std::exp2(keys.engagement), 10, 1e-9);
	EXPECT_DOUBLE_EQ(hot_bound(m, keys.fit, keys.engagement, kNow + 1000 * kDay), 15);
}

TEST(HotKeys, StoredKeyStaysWhileItBoundsWithinTheSlack)
{
	EXPECT_DOUBLE_EQ(hot_engagement_key_to_store(10, std::nullopt), 10);
	EXPECT_DOUBLE_EQ(hot_engagement_key_to_store(10.1, 10.25), 10.25);
	EXPECT_DOUBLE_EQ(hot_engagement_key_to_store(9.8, 10.25), 10.25);
	EXPECT_DOUBLE_EQ(hot_engagement_key_to_store(9.7, 10.25), 9.7);   // too loose
	EXPECT_DOUBLE_EQ(hot_engagement_key_to_store(10.3, 10.25), 10.3); // no longer bounds
	EXPECT_EQ(hot_engagement_key_to_store(-INFINITY, 10.25), -INFINITY);
}
