// The integer key index of a statement's leads: every key keeps the index it was first given, through
// growth, collisions, negative and extreme keys.
#include "key_index.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <unordered_map>

using leadscore::core::IntKeyIndex;

TEST(IntKeyIndex, NewKeysTakeNextAndKeepIt)
{
	IntKeyIndex index;
	EXPECT_EQ(index.find_or_add(42, 0), 0);
	EXPECT_EQ(index.find_or_add(7, 1), 1);
	EXPECT_EQ(index.find_or_add(42, 2), 0); // known: its index, not `next`
	EXPECT_EQ(index.find_or_add(7, 2), 1);
	EXPECT_EQ(index.size(), 2u);
}

TEST(IntKeyIndex, ZeroNegativeAndExtremeKeys)
{
	IntKeyIndex index;
	const int64_t keys[] = {0,
	                        -1,
	                        1,
	                        std::numeric_limits<int64_t>::min(),
	                        std::numeric_limits<int64_t>::max(),
	                        std::numeric_limits<int32_t>::min(),
	                        std::numeric_limits<int32_t>::max()};
	int next = 0;
	for (int64_t k : keys) {
		EXPECT_EQ(index.find_or_add(k, next), next);
		next++;
	}
	for (int i = 0; i < next; i++)
		EXPECT_EQ(index.find_or_add(keys[i], 99), i);
	EXPECT_EQ(index.size(), (size_t) next);
}

// Consecutive ids (the usual lead keys) and keys that share their low bits (multiples of a large power of
// two, which a hash without mixing would put in one slot) through many growths.
TEST(IntKeyIndex, ManyKeysThroughGrowth)
{
	for (int64_t stride : {int64_t(1), int64_t(1) << 32, int64_t(1) << 20, int64_t(-3)}) {
		IntKeyIndex index;
		const int n = 100000;
		for (int i = 0; i < n; i++)
			ASSERT_EQ(index.find_or_add(i * stride, i), i) << "stride " << stride;
		for (int i = 0; i < n; i++)
			ASSERT_EQ(index.find_or_add(i * stride, -7), i) << "stride " << stride;
		EXPECT_EQ(index.size(), (size_t) n);
	}
}

// Against a std::unordered_map, with repeats, in random order.
TEST(IntKeyIndex, AgreesWithAMap)
{
	std::mt19937_64 rng(5);
	IntKeyIndex index;
	std::unordered_map<int64_t, int> map;
	for (int i = 0; i < 200000; i++) {
		int64_t key = static_cast<int64_t>(rng() % 50000) - 25000;
		if (i % 7 == 0)
			key = static_cast<int64_t>(rng()); // anywhere in the range
		int next = static_cast<int>(map.size());
		auto it = map.emplace(key, next).first;
		ASSERT_EQ(index.find_or_add(key, next), it->second);
	}
	EXPECT_EQ(index.size(), map.size());
}
