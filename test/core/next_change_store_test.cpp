// What the live trigger stores as a state row's next_change: the earlier of the stage bound and the next
// future-dated event, unless the instant already stored is still to come and no later than that (the
// row's indexed column then stays as it is).
#include "helpers.h"
#include "timeline.h"

#include <gtest/gtest.h>

using namespace leadscore::core;
using leadscore::core::testing::kDay;
using leadscore::core::testing::kNow;

namespace {
const std::optional<Micros> kNever;
}

TEST(Earliest, EitherMayBeNever)
{
	EXPECT_EQ(earliest(kNever, kNever), kNever);
	EXPECT_EQ(earliest(kNow, kNever), kNow);
	EXPECT_EQ(earliest(kNever, kNow), kNow);
	EXPECT_EQ(earliest(kNow + 1, kNow), kNow);
	EXPECT_EQ(earliest(kNow, kNow + 1), kNow);
}

TEST(NextChangeToStore, NewRowTakesTheEarlierOfBoundAndEvent)
{
	EXPECT_EQ(next_change_to_store(kNever, kNever, kNever, kNow), kNever);
	EXPECT_EQ(next_change_to_store(kNow + kDay, kNever, kNever, kNow), kNow + kDay);
	EXPECT_EQ(next_change_to_store(kNever, kNow + 2 * kDay, kNever, kNow), kNow + 2 * kDay);
	EXPECT_EQ(next_change_to_store(kNow + kDay, kNow + 2 * kDay, kNever, kNow), kNow + kDay);
	EXPECT_EQ(next_change_to_store(kNow + 3 * kDay, kNow + 2 * kDay, kNever, kNow), kNow + 2 * kDay);
}

TEST(NextChangeToStore, StoredInstantStaysWhileStillToComeAndNotLater)
{
	// Earlier than the new bound, still after now: kept (waking the lead early costs a run nothing wrong).
	EXPECT_EQ(next_change_to_store(kNow + 5 * kDay, kNever, kNow + kDay, kNow), kNow + kDay);
	// Equal: kept.
	EXPECT_EQ(next_change_to_store(kNow + kDay, kNever, kNow + kDay, kNow), kNow + kDay);
	// The stage never changes now, the stored instant is still to come: kept (the run finds nothing then).
	EXPECT_EQ(next_change_to_store(kNever, kNever, kNow + kDay, kNow), kNow + kDay);
	// Later than the new bound: the bound (a change must not be missed).
	EXPECT_EQ(next_change_to_store(kNow + kDay, kNever, kNow + 5 * kDay, kNow), kNow + kDay);
	// Later than a future event: the event.
	EXPECT_EQ(next_change_to_store(kNever, kNow + kDay, kNow + 5 * kDay, kNow), kNow + kDay);
	// At or before now: past, replaced.
	EXPECT_EQ(next_change_to_store(kNow + kDay, kNever, kNow, kNow), kNow + kDay);
	EXPECT_EQ(next_change_to_store(kNever, kNever, kNow - kDay, kNow), kNever);
}

// Whatever is stored, the result is never later than the bound and the event: no change is missed.
TEST(NextChangeToStore, NeverLaterThanWhatMayChange)
{
	const std::optional<Micros> instants[] = {kNever, kNow - 1, kNow, kNow + 1, kNow + kDay, kNow + 2 * kDay};
	for (auto bound : instants)
		for (auto event : instants)
			for (auto stored : instants) {
				std::optional<Micros> got = next_change_to_store(bound, event, stored, kNow);
				std::optional<Micros> must = earliest(bound, event);
				if (must) {
					ASSERT_TRUE(got.has_value());
					EXPECT_LE(*got, *must);
				}
				if (got != must) {
					EXPECT_EQ(got, stored); // the only other answer: the stored instant, still to come
					EXPECT_GT(*stored, kNow);
				}
			}
}
