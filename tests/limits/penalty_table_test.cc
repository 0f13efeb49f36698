#include "limits/penalty_table.h"

#include <cstdint>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "limits/flood_table.h"

namespace popgate::limits {

// Global operator new count, defined in admission_test.cc.
extern size_t g_allocations_for_test;

namespace {

SourceKey V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  const uint8_t addr[4] = {a, b, c, d};
  return SourceKey::FromIpv4(addr);
}

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);
const SourceKey kA = V4(10, 0, 0, 1);
const SourceKey kB = V4(10, 0, 1, 1);
const SourceKey kC = V4(10, 0, 2, 1);
const SourceKey kD = V4(10, 0, 3, 1);

PenaltyOptions NoLockout() {
  PenaltyOptions o;
  o.lockout_failures = 0;
  return o;
}

TEST(PenaltyTableTest, FreeFailuresCostNothing) {
  PenaltyTable table(PenaltyOptions{});  // free_failures = 2
  EXPECT_EQ(table.RecordFailure(kA, kT0), absl::ZeroDuration());
  EXPECT_EQ(table.RecordFailure(kA, kT0), absl::ZeroDuration());
  EXPECT_EQ(table.RecordFailure(kA, kT0), absl::Milliseconds(500));
  EXPECT_EQ(table.size(), 1u);
}

TEST(PenaltyTableTest, DelayDoublesUpToCap) {
  PenaltyTable table(NoLockout());
  table.RecordFailure(kA, kT0);
  table.RecordFailure(kA, kT0);
  const absl::Duration expected[] = {absl::Milliseconds(500), absl::Seconds(1),
                                     absl::Seconds(2),        absl::Seconds(4),
                                     absl::Seconds(8),        absl::Seconds(8)};
  for (absl::Duration d : expected) {
    EXPECT_EQ(table.RecordFailure(kA, kT0), d);
  }
  for (int i = 0; i < 200; ++i) table.RecordFailure(kA, kT0);
  EXPECT_EQ(table.RecordFailure(kA, kT0), absl::Seconds(8));
  EXPECT_FALSE(table.LockedOut(kA, kT0));
  EXPECT_EQ(table.lockouts(), 0u);
  // Other sources are unaffected.
  EXPECT_EQ(table.RecordFailure(kB, kT0), absl::ZeroDuration());
}

TEST(PenaltyTableTest, LockoutAfterThresholdThenExpires) {
  PenaltyOptions o;
  o.lockout_failures = 5;
  o.lockout = absl::Minutes(5);
  PenaltyTable table(o);
  for (int i = 0; i < 4; ++i) table.RecordFailure(kA, kT0);
  EXPECT_FALSE(table.LockedOut(kA, kT0));
  table.RecordFailure(kA, kT0);
  EXPECT_TRUE(table.LockedOut(kA, kT0));
  EXPECT_EQ(table.lockouts(), 1u);
  EXPECT_FALSE(table.LockedOut(kB, kT0));
  const absl::Time end = kT0 + absl::Minutes(5);
  EXPECT_TRUE(table.LockedOut(kA, end - absl::Nanoseconds(1)));
  EXPECT_FALSE(table.LockedOut(kA, end));
  // Still within forget_after of the last failure: the next one relocks.
  table.RecordFailure(kA, end + absl::Seconds(1));
  EXPECT_TRUE(table.LockedOut(kA, end + absl::Seconds(1)));
  EXPECT_EQ(table.lockouts(), 2u);
}

TEST(PenaltyTableTest, FailureWhileLockedExtendsWithoutCounting) {
  PenaltyOptions o;
  o.lockout_failures = 1;
  o.lockout = absl::Minutes(5);
  PenaltyTable table(o);
  table.RecordFailure(kA, kT0);
  table.RecordFailure(kA, kT0 + absl::Minutes(4));
  EXPECT_EQ(table.lockouts(), 1u);
  EXPECT_TRUE(table.LockedOut(kA, kT0 + absl::Minutes(8)));
  EXPECT_FALSE(table.LockedOut(kA, kT0 + absl::Minutes(9)));
}

TEST(PenaltyTableTest, LockoutZeroNeverLocks) {
  PenaltyTable table(NoLockout());
  for (int i = 0; i < 1000; ++i) table.RecordFailure(kA, kT0);
  EXPECT_FALSE(table.LockedOut(kA, kT0));
  EXPECT_EQ(table.lockouts(), 0u);
}

TEST(PenaltyTableTest, ForgottenAfterQuietPeriod) {
  PenaltyTable table(NoLockout());  // forget_after = 15 min
  for (int i = 0; i < 3; ++i) table.RecordFailure(kA, kT0);
  // Just inside the window the count goes on...
  const absl::Time last = kT0 + absl::Minutes(15) - absl::Nanoseconds(1);
  EXPECT_EQ(table.RecordFailure(kA, last), absl::Seconds(1));
  // ...and forget_after counts from the last failure.
  EXPECT_EQ(table.RecordFailure(kA, last + absl::Minutes(15)),
            absl::ZeroDuration());
  EXPECT_EQ(table.RecordFailure(kA, last + absl::Minutes(15)),
            absl::ZeroDuration());
  EXPECT_EQ(table.RecordFailure(kA, last + absl::Minutes(15)),
            absl::Milliseconds(500));
}

TEST(PenaltyTableTest, LockoutOutlastingForgetAfterStillHolds) {
  PenaltyOptions o;
  o.lockout_failures = 1;
  o.lockout = absl::Hours(1);
  o.forget_after = absl::Minutes(1);
  PenaltyTable table(o);
  table.RecordFailure(kA, kT0);
  EXPECT_TRUE(table.LockedOut(kA, kT0 + absl::Minutes(30)));
  EXPECT_FALSE(table.LockedOut(kA, kT0 + absl::Hours(1)));
}

TEST(PenaltyTableTest, QuietSourcesDrainWithoutBeingLookedUp) {
  PenaltyTable table(NoLockout());
  table.RecordFailure(kA, kT0);
  table.RecordFailure(kB, kT0);
  EXPECT_EQ(table.size(), 2u);
  table.RecordFailure(kC, kT0 + absl::Minutes(16));
  EXPECT_EQ(table.size(), 1u);
}

TEST(PenaltyTableTest, SuccessClears) {
  PenaltyOptions o;
  o.lockout_failures = 3;
  PenaltyTable table(o);
  for (int i = 0; i < 3; ++i) table.RecordFailure(kA, kT0);
  ASSERT_TRUE(table.LockedOut(kA, kT0));
  table.RecordSuccess(kA, kT0);
  EXPECT_FALSE(table.LockedOut(kA, kT0));
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.RecordFailure(kA, kT0), absl::ZeroDuration());
  table.RecordSuccess(kB, kT0);  // unknown source: no-op
  EXPECT_EQ(table.size(), 1u);
}

TEST(PenaltyTableTest, BoundedEvictsLeastRecentlyFailed) {
  PenaltyOptions o = NoLockout();
  o.free_failures = 0;
  o.base_delay = absl::Seconds(1);
  o.max_delay = absl::Hours(1);
  o.max_sources = 3;
  PenaltyTable table(o);
  // Delay 1 s means "first failure remembered", 2 s "second".
  table.RecordFailure(kA, kT0);
  table.RecordFailure(kB, kT0 + absl::Seconds(1));
  table.RecordFailure(kC, kT0 + absl::Seconds(2));
  table.RecordFailure(kA, kT0 + absl::Seconds(3));  // A is now most recent
  table.RecordFailure(kD, kT0 + absl::Seconds(4));  // evicts B
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(table.RecordFailure(kC, kT0 + absl::Seconds(5)), absl::Seconds(2));
  EXPECT_EQ(table.RecordFailure(kB, kT0 + absl::Seconds(6)), absl::Seconds(1));
  EXPECT_EQ(table.size(), 3u);
}

TEST(PenaltyTableTest, PrefixAggregation) {
  PenaltyOptions o = NoLockout();
  o.prefix = SourcePrefix{24, 64};
  PenaltyTable table(o);
  table.RecordFailure(V4(10, 0, 0, 1), kT0);
  table.RecordFailure(V4(10, 0, 0, 200), kT0);
  EXPECT_EQ(table.RecordFailure(V4(10, 0, 0, 77), kT0),
            absl::Milliseconds(500));
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.RecordFailure(V4(10, 0, 1, 1), kT0), absl::ZeroDuration());
}

TEST(PenaltyTableTest, ClockGoingBackwardsIsClamped) {
  PenaltyOptions o;
  o.lockout_failures = 1;
  o.lockout = absl::Minutes(5);
  PenaltyTable table(o);
  const absl::Time t = kT0 + absl::Hours(1);
  table.RecordFailure(kA, t);
  EXPECT_FALSE(table.LockedOut(kA, t + absl::Minutes(5)));
  // A step back must not bring the lockout back...
  EXPECT_FALSE(table.LockedOut(kA, t + absl::Minutes(1)));
  // ...nor make a failure look older than it is: this one counts at
  // t + 5 min, so the source is locked until t + 10 min.
  table.RecordFailure(kB, kT0);
  EXPECT_TRUE(table.LockedOut(kB, t + absl::Minutes(9)));
  EXPECT_FALSE(table.LockedOut(kB, t + absl::Minutes(10)));
}

TEST(PenaltyTableTest, ChurnAllocatesNothing) {
  PenaltyOptions o;
  // 112 keys fill abseil's 127-slot table past 25/32, the load at which
  // plain reserve(n) would let tombstones force a doubling.
  o.max_sources = 112;
  PenaltyTable table(o);
  const size_t before = g_allocations_for_test;
  absl::Time now = kT0;
  // New sources evicting old ones, successes clearing, lockouts, forgetting.
  for (uint32_t i = 0; i < 20000; ++i) {
    now += absl::Seconds(1);
    const uint8_t addr[4] = {172, static_cast<uint8_t>(i >> 16),
                             static_cast<uint8_t>(i >> 8),
                             static_cast<uint8_t>(i)};
    const SourceKey key = SourceKey::FromIpv4(addr);
    table.LockedOut(key, now);
    table.RecordFailure(key, now);
    if (i % 7 == 3) table.RecordSuccess(key, now);
    table.RecordFailure(kA, now);
  }
  const size_t allocations = g_allocations_for_test - before;
  EXPECT_EQ(allocations, 0u);
  EXPECT_EQ(table.size(), 112u);
  EXPECT_TRUE(table.LockedOut(kA, now));
}

}  // namespace
}  // namespace popgate::limits
