#include "limits/admission.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "limits/flood_table.h"

// Counts every global operator new in this test binary (limits_test), so a
// test can assert that a code path allocates nothing. penalty_table_test.cc
// reads it too.
namespace popgate::limits {
size_t g_allocations_for_test = 0;
}  // namespace popgate::limits

void* operator new(std::size_t size) {
  ++popgate::limits::g_allocations_for_test;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace popgate::limits {
namespace {

SourceKey V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  const uint8_t addr[4] = {a, b, c, d};
  return SourceKey::FromIpv4(addr);
}

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

absl::Time At(double seconds) { return kT0 + absl::Seconds(seconds); }

// Slots never in the way: only the bucket decides.
AdmissionOptions RateOnly(double rate, double burst) {
  AdmissionOptions o;
  o.flood = FloodOptions{100000, 0, absl::ZeroDuration()};
  o.rate_per_second = rate;
  o.burst = burst;
  return o;
}

TEST(AdmissionRefusalNameTest, NamesEveryCause) {
  EXPECT_EQ(AdmissionRefusalName(AdmissionRefusal::kSourceRate), "source rate");
  EXPECT_EQ(AdmissionRefusalName(AdmissionRefusal::kSourceSessions),
            "per source limit");
  EXPECT_EQ(AdmissionRefusalName(AdmissionRefusal::kGlobalSessions),
            "sessions limit");
  EXPECT_EQ(AdmissionRefusalName(AdmissionRefusal::kTableFull),
            "source table full");
}

TEST(AdmissionTest, Popa3dPolicyWithRateZero) {
  AdmissionOptions o;
  o.flood = FloodOptions{500, 50, absl::Seconds(10)};
  o.prefix = SourcePrefix{32, 64};
  Admission admission(o);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(admission.Admit(V4(127, 0, 0, 1), kT0).admitted) << i;
  }
  const AdmissionResult r = admission.Admit(V4(127, 0, 0, 1), kT0);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.cause, AdmissionRefusal::kSourceSessions);
  EXPECT_TRUE(r.should_log);
  EXPECT_TRUE(admission.Admit(V4(127, 0, 0, 2), kT0).admitted);
  EXPECT_EQ(admission.admitted(), 51u);
  EXPECT_EQ(admission.held(), 51u);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceSessions), 1u);
  EXPECT_EQ(admission.tracked_sources(), 0u);  // no bucket table at rate 0
}

// Rate 0 must be popa3d exactly: same verdicts, slots, causes and log pacing
// as a bare FloodTable over a random admit/release/clock sequence.
TEST(AdmissionTest, RateZeroBehavesExactlyLikeFloodTable) {
  const FloodOptions flood{20, 4, absl::Seconds(10)};
  AdmissionOptions o;
  o.flood = flood;
  o.prefix = SourcePrefix{32, 128};
  Admission admission(o);
  FloodTable table(flood);
  std::mt19937 rng(1939);
  std::vector<SlotId> live;
  absl::Time now = kT0;
  size_t refusals = 0;
  for (int step = 0; step < 5000; ++step) {
    now += absl::Milliseconds(rng() % 700);
    if (rng() % 16 == 0) now -= absl::Seconds(3);  // clock steps back
    if (!live.empty() && rng() % 3 == 0) {
      const size_t pick = rng() % live.size();
      const SlotId slot = live[pick];
      live.erase(live.begin() + static_cast<ptrdiff_t>(pick));
      ASSERT_EQ(admission.Release(slot, now), table.Release(slot, now));
      continue;
    }
    const SourceKey source = V4(10, 0, 0, static_cast<uint8_t>(rng() % 8));
    const AdmissionResult a = admission.Admit(source, now);
    const AdmitResult f = table.Admit(source, now);
    ASSERT_EQ(a.admitted, f.admitted) << step;
    ASSERT_EQ(a.should_log, f.should_log) << step;
    if (f.admitted) {
      ASSERT_EQ(a.slot.index, f.slot.index);
      ASSERT_EQ(a.slot.generation, f.slot.generation);
      live.push_back(a.slot);
    } else {
      ++refusals;
      ASSERT_EQ(a.cause, f.cause == RefusalCause::kPerSource
                             ? AdmissionRefusal::kSourceSessions
                             : AdmissionRefusal::kGlobalSessions);
    }
    ASSERT_EQ(admission.held(), table.held());
  }
  // The sequence must exercise both refusal causes to mean anything.
  EXPECT_GT(admission.refusals(AdmissionRefusal::kSourceSessions), 0u);
  EXPECT_GT(admission.refusals(AdmissionRefusal::kGlobalSessions), 0u);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceSessions) +
                admission.refusals(AdmissionRefusal::kGlobalSessions),
            refusals);
}

TEST(AdmissionTest, BurstThenOneTokenPerInterval) {
  Admission admission(RateOnly(1, 3));
  const SourceKey a = V4(10, 0, 0, 1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  AdmissionResult r = admission.Admit(a, kT0);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.cause, AdmissionRefusal::kSourceRate);
  EXPECT_FALSE(admission.Admit(a, At(0.999)).admitted);
  EXPECT_TRUE(admission.Admit(a, At(1)).admitted);
  EXPECT_FALSE(admission.Admit(a, At(1)).admitted);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceRate), 3u);
  EXPECT_EQ(admission.admitted(), 4u);
  // Another source has its own bucket.
  EXPECT_TRUE(admission.Admit(V4(10, 0, 0, 2), At(1)).admitted);
}

TEST(AdmissionTest, RefillStopsAtBurst) {
  Admission admission(RateOnly(1, 3));
  const SourceKey a = V4(10, 0, 0, 1);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  const absl::Time later = kT0 + absl::Hours(1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admission.Admit(a, later).admitted);
  EXPECT_FALSE(admission.Admit(a, later).admitted);
}

TEST(AdmissionTest, FractionalRate) {
  Admission slow(RateOnly(0.5, 1));  // one per two seconds
  const SourceKey a = V4(10, 0, 0, 1);
  ASSERT_TRUE(slow.Admit(a, kT0).admitted);
  EXPECT_FALSE(slow.Admit(a, At(1.999)).admitted);
  EXPECT_TRUE(slow.Admit(a, At(2)).admitted);

  Admission fast(RateOnly(2.5, 2));  // one per 400 ms
  ASSERT_TRUE(fast.Admit(a, kT0).admitted);
  ASSERT_TRUE(fast.Admit(a, kT0).admitted);
  EXPECT_FALSE(fast.Admit(a, At(0.399)).admitted);
  EXPECT_TRUE(fast.Admit(a, At(0.4)).admitted);
  EXPECT_FALSE(fast.Admit(a, At(0.4)).admitted);
  // 1.2 s later: three tokens' worth, capped at the burst of two.
  EXPECT_TRUE(fast.Admit(a, At(1.6)).admitted);
  EXPECT_TRUE(fast.Admit(a, At(1.6)).admitted);
  EXPECT_FALSE(fast.Admit(a, At(1.6)).admitted);
}

TEST(AdmissionTest, FractionalBurstCarriesHalfToken) {
  Admission admission(RateOnly(1, 2.5));
  const SourceKey a = V4(10, 0, 0, 1);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  EXPECT_FALSE(admission.Admit(a, kT0).admitted);  // half a token left
  EXPECT_FALSE(admission.Admit(a, At(0.499)).admitted);
  EXPECT_TRUE(admission.Admit(a, At(0.5)).admitted);
}

TEST(AdmissionTest, RateRefusalLoggedOncePerSecond) {
  Admission admission(RateOnly(0.1, 1));
  const SourceKey a = V4(10, 0, 0, 1);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  EXPECT_TRUE(admission.Admit(a, kT0).should_log);
  EXPECT_FALSE(admission.Admit(a, At(0.5)).should_log);
  // Per cause, not per source: another source in the same second is quiet.
  ASSERT_TRUE(admission.Admit(V4(10, 0, 0, 2), At(0.5)).admitted);
  EXPECT_FALSE(admission.Admit(V4(10, 0, 0, 2), At(0.5)).should_log);
  EXPECT_TRUE(admission.Admit(a, At(1.5)).should_log);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceRate), 4u);
}

TEST(AdmissionTest, RefusedConnectionTakesNoToken) {
  AdmissionOptions o = RateOnly(1, 2);
  o.flood = FloodOptions{100, 1, absl::ZeroDuration()};
  Admission admission(o);
  const SourceKey a = V4(10, 0, 0, 1);
  const AdmissionResult first = admission.Admit(a, kT0);
  ASSERT_TRUE(first.admitted);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(admission.Admit(a, kT0).cause, AdmissionRefusal::kSourceSessions);
  }
  ASSERT_TRUE(admission.Release(first.slot, kT0));
  // The second token is still there.
  EXPECT_TRUE(admission.Admit(a, kT0).admitted);
}

TEST(AdmissionTest, TableFullOfBusyBucketsRefusesNewSource) {
  AdmissionOptions o = RateOnly(1, 2);
  o.max_tracked_sources = 2;
  Admission admission(o);
  const SourceKey a = V4(10, 0, 0, 1), b = V4(10, 0, 0, 2), c = V4(10, 0, 0, 3);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);      // a full at 1.0
  ASSERT_TRUE(admission.Admit(b, At(0.5)).admitted);  // b full at 1.5
  AdmissionResult r = admission.Admit(c, At(0.5));
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.cause, AdmissionRefusal::kTableFull);
  EXPECT_TRUE(r.should_log);
  EXPECT_FALSE(admission.Admit(c, At(0.999)).admitted);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kTableFull), 2u);
  EXPECT_EQ(admission.tracked_sources(), 2u);

  // At 1.0 a is idle (full again) and is evicted for c; b is not.
  ASSERT_TRUE(admission.Admit(c, At(1)).admitted);
  EXPECT_EQ(admission.tracked_sources(), 2u);
  // b kept its state: 1.5 tokens at 1.0, so one admission, then refused.
  EXPECT_TRUE(admission.Admit(b, At(1)).admitted);
  EXPECT_EQ(admission.Admit(b, At(1)).cause, AdmissionRefusal::kSourceRate);
  // a lost its bucket and both tracked ones are busy.
  EXPECT_EQ(admission.Admit(a, At(1)).cause, AdmissionRefusal::kTableFull);
}

// The victim is the bucket that became idle first, not the least recently
// used one: a source that drained its bucket earlier may still be refilling.
TEST(AdmissionTest, EvictsIdleBucketNotLeastRecentlyUsed) {
  AdmissionOptions o = RateOnly(1, 2);
  o.max_tracked_sources = 2;
  Admission admission(o);
  const SourceKey a = V4(10, 0, 0, 1), b = V4(10, 0, 0, 2), c = V4(10, 0, 0, 3);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);
  ASSERT_TRUE(admission.Admit(a, kT0).admitted);      // a full at 2.0
  ASSERT_TRUE(admission.Admit(b, At(0.5)).admitted);  // b full at 1.5
  ASSERT_TRUE(admission.Admit(c, At(1.6)).admitted);  // evicts b
  // a still has its bucket: 1.6 tokens, so one admission, then refused.
  EXPECT_TRUE(admission.Admit(a, At(1.6)).admitted);
  EXPECT_EQ(admission.Admit(a, At(1.6)).cause, AdmissionRefusal::kSourceRate);
}

TEST(AdmissionTest, PrefixAggregationSharesBudgets) {
  AdmissionOptions o = RateOnly(1, 2);
  o.flood = FloodOptions{100, 3, absl::Seconds(10)};
  o.prefix = SourcePrefix{24, 64};
  Admission admission(o);
  EXPECT_TRUE(admission.Admit(V4(10, 0, 0, 1), kT0).admitted);
  EXPECT_TRUE(admission.Admit(V4(10, 0, 0, 200), kT0).admitted);
  EXPECT_EQ(admission.Admit(V4(10, 0, 0, 77), kT0).cause,
            AdmissionRefusal::kSourceRate);
  EXPECT_EQ(admission.tracked_sources(), 1u);
  EXPECT_TRUE(admission.Admit(V4(10, 0, 1, 1), kT0).admitted);
  // The slot cap is per /24 as well: 3 slots, two of them held.
  EXPECT_TRUE(admission.Admit(V4(10, 0, 0, 9), At(2)).admitted);
  EXPECT_EQ(admission.Admit(V4(10, 0, 0, 10), At(2)).cause,
            AdmissionRefusal::kSourceSessions);
}

TEST(AdmissionTest, GlobalCapNamedAsSuch) {
  AdmissionOptions o;
  o.flood = FloodOptions{2, 0, absl::Seconds(10)};
  Admission admission(o);
  ASSERT_TRUE(admission.Admit(V4(10, 0, 0, 1), kT0).admitted);
  ASSERT_TRUE(admission.Admit(V4(10, 0, 0, 2), kT0).admitted);
  const AdmissionResult r = admission.Admit(V4(10, 0, 0, 3), kT0);
  EXPECT_EQ(r.cause, AdmissionRefusal::kGlobalSessions);
  EXPECT_TRUE(r.should_log);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kGlobalSessions), 1u);
}

TEST(AdmissionTest, ReleaseFreesSlot) {
  AdmissionOptions o;
  o.flood = FloodOptions{10, 1, absl::ZeroDuration()};
  Admission admission(o);
  const SourceKey a = V4(10, 0, 0, 1);
  const AdmissionResult r = admission.Admit(a, kT0);
  ASSERT_TRUE(r.admitted);
  EXPECT_FALSE(admission.Admit(a, kT0).admitted);
  EXPECT_EQ(admission.held(), 1u);
  EXPECT_TRUE(admission.Release(r.slot, kT0));
  EXPECT_FALSE(admission.Release(r.slot, kT0));  // stale
  EXPECT_EQ(admission.held(), 0u);
  EXPECT_TRUE(admission.Admit(a, kT0).admitted);
}

TEST(AdmissionTest, ClockGoingBackwardsIsClamped) {
  Admission admission(RateOnly(1, 1));
  const SourceKey a = V4(10, 0, 0, 1);
  ASSERT_TRUE(admission.Admit(a, At(10)).admitted);
  EXPECT_FALSE(admission.Admit(a, kT0).admitted);
  EXPECT_FALSE(admission.Admit(a, At(10.5)).admitted);
  EXPECT_TRUE(admission.Admit(a, At(11)).admitted);
  // A new source's token taken "at kT0" is taken at 11 s, so its bucket is
  // not full again 1 s after kT0 but 1 s after 11 s.
  const SourceKey b = V4(10, 0, 0, 2);
  ASSERT_TRUE(admission.Admit(b, kT0).admitted);
  EXPECT_FALSE(admission.Admit(b, At(11.5)).admitted);
  EXPECT_TRUE(admission.Admit(b, At(12)).admitted);
}

TEST(AdmissionTest, RefusalsAllocateNothingOnceWarm) {
  AdmissionOptions o = RateOnly(1, 1);
  o.flood = FloodOptions{200, 1, absl::Hours(1)};
  o.max_tracked_sources = 64;
  Admission admission(o);
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(
        admission.Admit(V4(10, 0, 0, static_cast<uint8_t>(i)), kT0).admitted);
  }
  size_t rate = 0, table_full = 0, sessions = 0;
  const size_t before = g_allocations_for_test;
  for (int i = 0; i < 1000; ++i) {
    // Known sources with empty buckets, then unknown ones while every
    // bucket is busy.
    rate += !admission.Admit(V4(10, 0, 0, static_cast<uint8_t>(i % 64)), kT0)
                 .admitted;
    table_full +=
        !admission.Admit(V4(10, 0, 1, static_cast<uint8_t>(i)), kT0).admitted;
  }
  // Buckets refilled, slots still held: FloodTable refuses.
  for (int i = 0; i < 1000; ++i) {
    sessions +=
        !admission.Admit(V4(10, 0, 0, static_cast<uint8_t>(i % 64)), At(2))
             .admitted;
  }
  const size_t allocations = g_allocations_for_test - before;
  EXPECT_EQ(allocations, 0u);
  EXPECT_EQ(rate, 1000u);
  EXPECT_EQ(table_full, 1000u);
  EXPECT_EQ(sessions, 1000u);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceRate), 1000u);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kTableFull), 1000u);
  EXPECT_EQ(admission.refusals(AdmissionRefusal::kSourceSessions), 1000u);
}

TEST(AdmissionTest, EvictionChurnAllocatesNothing) {
  AdmissionOptions o = RateOnly(1, 1);
  o.flood = FloodOptions{500, 1, absl::ZeroDuration()};
  // 112 keys fill abseil's 127-slot table past 25/32, the load at which
  // plain reserve(n) would let tombstones force a doubling.
  o.max_tracked_sources = 112;
  Admission admission(o);
  absl::Time now = kT0;
  // Warm: fill the table once.
  for (int i = 0; i < 112; ++i) {
    const AdmissionResult r =
        admission.Admit(V4(10, 0, 0, static_cast<uint8_t>(i)), now);
    ASSERT_TRUE(r.admitted);
    ASSERT_TRUE(admission.Release(r.slot, now));
  }
  const size_t before = g_allocations_for_test;
  size_t admitted = 0;
  // Every new source evicts an idle bucket: thousands of erase+insert
  // pairs, enough to make the map squash its tombstones many times.
  for (uint32_t i = 0; i < 20000; ++i) {
    now += absl::Seconds(1);
    const uint8_t addr[4] = {172, static_cast<uint8_t>(i >> 16),
                             static_cast<uint8_t>(i >> 8),
                             static_cast<uint8_t>(i)};
    const AdmissionResult r = admission.Admit(SourceKey::FromIpv4(addr), now);
    admitted += r.admitted;
    if (r.admitted) admission.Release(r.slot, now);
  }
  const size_t allocations = g_allocations_for_test - before;
  EXPECT_EQ(allocations, 0u);
  EXPECT_EQ(admitted, 20000u);
  EXPECT_EQ(admission.tracked_sources(), 112u);
}

}  // namespace
}  // namespace popgate::limits
