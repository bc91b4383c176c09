// Helpers shared by the core's tests.
#pragma once

#include "score.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace leadscore::core::testing {

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
