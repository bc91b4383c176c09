// Helpers shared by the core's tests.
#pragma once

#include "score.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace leadscore::core::testing {

// Durations in Micros, PostgreSQL's TimestampTz unit (microseconds).
constexpr Micros kMinute = 60LL * 1000000;
constexpr Micros kHour = 60 * kMinute;
constexpr Micros kDay = 24 * kHour;
// Around 2026 (microseconds since 2000-01-01): absolute times as large as the glue's.
constexpr Micros kNow = 27LL * 365 * kDay;

// A rule with its usual options.
inline RuleSpec rule(const std::string &name, double points, std::optional<double> cap = std::nullopt,
                     bool once = false, int category = -1)
{
	RuleSpec r;
	r.name = name;
	r.points = points;
	r.cap = cap;
	r.once_per_lead = once;
	r.category = category;
	return r;
}

// An event of a test: its time and which event rules it matches.
struct Event {
	Micros at;
	std::vector<bool> matched;
};

// A state built from scratch as the glue does: apply_event for every event (in the given order), the
// collector for the capped rules, finish at the end.
inline LeadState build(const ModelSpec &m, const std::vector<Event> &events,
                       std::optional<Micros> reset_at = std::nullopt)
{
	LeadState s;
	s.reset(m);
	s.reset_at = reset_at;
	PeriodCapBuild caps;
	caps.start(m);
	for (const Event &e : events) {
		apply_event(m, s, e.at, e.matched, +1);
		caps.add(m, e.at, e.matched);
	}
	caps.finish(m, s);
	return s;
}

// validate() refuses the model with exactly this message and SQLSTATE 22023.
inline void expect_invalid(const ModelSpec &m, const char *message)
{
	try {
		m.validate();
		FAIL() << "accepted, expected: " << message;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), kInvalidParameter);
		EXPECT_STREQ(e.what(), message);
	}
}

} // namespace leadscore::core::testing
