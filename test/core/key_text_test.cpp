// Lead keys written as text: accepted exactly when PostgreSQL 15's int4in, int8in and uuid_in accept them
// (the cases below were each checked against those functions with psql).
#include "key_text.h"

#include <gtest/gtest.h>

using leadscore::core::int_key_text_ok;
using leadscore::core::uuid_key_text_ok;

TEST(KeyText, Integers)
{
	for (const char *ok : {"0", "42", "-42", "+42", " 42", "42 ", "\t42\n", "007", "-0", "\v42"}) {
		EXPECT_TRUE(int_key_text_ok(ok, 32)) << ok;
		EXPECT_TRUE(int_key_text_ok(ok, 64)) << ok;
	}
	for (const char *bad : {"", " ", "-", "+", "4 2", "42x", "x42", "0x10", "1e3", "4.0", "--4", "1_000", "١٢"}) {
		EXPECT_FALSE(int_key_text_ok(bad, 32)) << bad;
		EXPECT_FALSE(int_key_text_ok(bad, 64)) << bad;
	}
}

TEST(KeyText, IntegerRanges)
{
	EXPECT_TRUE(int_key_text_ok("2147483647", 32));
	EXPECT_FALSE(int_key_text_ok("2147483648", 32));
	EXPECT_TRUE(int_key_text_ok("-2147483648", 32));
	EXPECT_FALSE(int_key_text_ok("-2147483649", 32));
	EXPECT_TRUE(int_key_text_ok("2147483648", 64));
	EXPECT_TRUE(int_key_text_ok("9223372036854775807", 64));
	EXPECT_FALSE(int_key_text_ok("9223372036854775808", 64));
	EXPECT_TRUE(int_key_text_ok("-9223372036854775808", 64));
	EXPECT_FALSE(int_key_text_ok("-9223372036854775809", 64));
	EXPECT_FALSE(int_key_text_ok("99999999999999999999999", 64));
	EXPECT_TRUE(int_key_text_ok("00000000000000000000000000042", 32)); // leading zeros: any number of them
}

TEST(KeyText, Uuids)
{
	for (const char *ok : {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
	                       "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
	                       "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "{a0eebc999c0b4ef8bb6d6bb9bd380a11}"})
		EXPECT_TRUE(uuid_key_text_ok(ok)) << ok;
	for (const char *bad : {"", "{}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
	                        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
	                        "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
	                        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
	                        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "42"})
		EXPECT_FALSE(uuid_key_text_ok(bad)) << bad;
}
