// Helpers shared by the core's tests.
#pragma once

#include "score.h"

#include <gtest/gtest.h>

namespace leadscore::core::testing {

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
