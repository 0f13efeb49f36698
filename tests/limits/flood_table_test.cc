#include "limits/flood_table.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace popgate::limits {
namespace {

SourceKey V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  const uint8_t addr[4] = {a, b, c, d};
  return SourceKey::FromIpv4(addr);
}

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

FloodOptions Popa3d() { return FloodOptions{500, 50, absl::Seconds(10)}; }

TEST(SourceKeyTest, Ipv4MappedIpv6KeysLikeIpv4) {
  const uint8_t mapped[16] = {0, 0, 0,    0,    0,   0, 0, 0,
                              0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(SourceKey::FromIpv6(mapped), V4(127, 0, 0, 1));
}

// Keys keep the whole address; aggregation (default /64) is Aggregate()'s
// job (source_prefix_test.cc), so --source_prefix_v6 can go past 64.
TEST(SourceKeyTest, Ipv6KeepsTheWholeAddress) {
  uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8};
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9};
  EXPECT_FALSE(SourceKey::FromIpv6(a) == SourceKey::FromIpv6(b));
  EXPECT_EQ(SourceKey::FromIpv6(a), SourceKey::FromIpv6(a));
}

TEST(RefusalMessageTest, Popa3dTexts) {
  EXPECT_EQ(RefusalMessage(RefusalCause::kPerSource, "10.0.0.1"),
            "10.0.0.1: per source limit reached");
  EXPECT_EQ(RefusalMessage(RefusalCause::kGlobal, "10.0.0.1"),
            "10.0.0.1: sessions limit reached");
  EXPECT_EQ(RefusalMessage(RefusalCause::kNone, "10.0.0.1"), "");
}

TEST(FloodTableTest, FiftyAdmittedFiftyFirstRefusedOtherSourceAdmitted) {
  FloodTable table(Popa3d());
  for (int i = 0; i < 50; ++i) {
    AdmitResult r = table.Admit(V4(127, 0, 0, 1), kT0);
    ASSERT_TRUE(r.admitted) << i;
  }
  AdmitResult r = table.Admit(V4(127, 0, 0, 1), kT0);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.cause, RefusalCause::kPerSource);
  EXPECT_TRUE(r.should_log);
  EXPECT_TRUE(table.Admit(V4(127, 0, 0, 2), kT0).admitted);
  EXPECT_EQ(table.held_by(V4(127, 0, 0, 1)), 50u);
  EXPECT_EQ(table.held(), 51u);
}

TEST(FloodTableTest, RefusalLoggedOncePerMinSlotPerSource) {
  FloodTable table(Popa3d());
  for (int i = 0; i < 50; ++i) table.Admit(V4(10, 0, 0, 1), kT0);
  for (int i = 0; i < 50; ++i) table.Admit(V4(10, 0, 0, 2), kT0);
  EXPECT_TRUE(table.Admit(V4(10, 0, 0, 1), kT0).should_log);
  // popa3d [observed]: one log line for 6 refusals.
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(
        table.Admit(V4(10, 0, 0, 1), kT0 + absl::Seconds(i)).should_log);
  }
  // Another source has its own timestamp.
  EXPECT_TRUE(table.Admit(V4(10, 0, 0, 2), kT0 + absl::Seconds(1)).should_log);
  // The sessions are still live, so the slots are still held at 10 s.
  AdmitResult later = table.Admit(V4(10, 0, 0, 1), kT0 + absl::Seconds(10));
  EXPECT_FALSE(later.admitted);
  EXPECT_TRUE(later.should_log);
}

TEST(FloodTableTest, ReleaseBeforeMinSlotStillHeldAfterItFreed) {
  FloodTable table(Popa3d());
  std::vector<SlotId> slots;
  for (int i = 0; i < 50; ++i) {
    slots.push_back(table.Admit(V4(127, 0, 0, 1), kT0).slot);
  }
  for (SlotId s : slots) {
    EXPECT_TRUE(table.Release(s, kT0 + absl::Seconds(1)));
  }
  // popa3d [observed]: refused 6 s after the first start, admitted at 10.7 s.
  EXPECT_FALSE(table.Admit(V4(127, 0, 0, 1), kT0 + absl::Seconds(6)).admitted);
  EXPECT_FALSE(table
                   .Admit(V4(127, 0, 0, 1),
                          kT0 + absl::Seconds(10) - absl::Nanoseconds(1))
                   .admitted);
  AdmitResult r =
      table.Admit(V4(127, 0, 0, 1), kT0 + absl::Milliseconds(10700));
  EXPECT_TRUE(r.admitted);
  EXPECT_EQ(table.held(), 1u);
  EXPECT_EQ(table.sources(), 1u);
}

TEST(FloodTableTest, ReleaseAfterMinSlotFreesAtOnce) {
  FloodTable table(Popa3d());
  SlotId s = table.Admit(V4(1, 2, 3, 4), kT0).slot;
  // The minimum passes while the session is still live (Expire via Admit).
  table.Admit(V4(9, 9, 9, 9), kT0 + absl::Seconds(20));
  EXPECT_EQ(table.held_by(V4(1, 2, 3, 4)), 1u);
  EXPECT_TRUE(table.Release(s, kT0 + absl::Seconds(30)));
  EXPECT_EQ(table.held_by(V4(1, 2, 3, 4)), 0u);
  EXPECT_EQ(table.sources(), 1u);  // only 9.9.9.9 (still live) remains
}

TEST(FloodTableTest, ReleaseWhenMinElapsedButNotYetExpired) {
  FloodTable table(Popa3d());
  SlotId s = table.Admit(V4(1, 2, 3, 4), kT0).slot;
  EXPECT_TRUE(table.Release(s, kT0 + absl::Seconds(11)));
  EXPECT_EQ(table.held(), 0u);
}

TEST(FloodTableTest, StaleAndDoubleReleaseIgnored) {
  FloodTable table(Popa3d());
  SlotId s = table.Admit(V4(1, 2, 3, 4), kT0).slot;
  EXPECT_TRUE(table.Release(s, kT0 + absl::Seconds(11)));
  EXPECT_FALSE(table.Release(s, kT0 + absl::Seconds(12)));
  SlotId t = table.Admit(V4(5, 6, 7, 8), kT0 + absl::Seconds(12)).slot;
  EXPECT_EQ(t.index, s.index);  // reused, new generation
  EXPECT_FALSE(table.Release(s, kT0 + absl::Seconds(13)));
  EXPECT_EQ(table.held_by(V4(5, 6, 7, 8)), 1u);
  EXPECT_FALSE(table.Release(SlotId{100000, 0}, kT0));
}

TEST(FloodTableTest, GlobalCap) {
  FloodTable table(FloodOptions{10, 50, absl::Seconds(10)});
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        table.Admit(V4(10, 0, 0, static_cast<uint8_t>(i)), kT0).admitted);
  }
  AdmitResult r = table.Admit(V4(10, 0, 1, 1), kT0);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.cause, RefusalCause::kGlobal);
  EXPECT_TRUE(r.should_log);
  // One global timestamp: another source within the window is not logged.
  EXPECT_FALSE(table.Admit(V4(10, 0, 1, 2), kT0 + absl::Seconds(5)).should_log);
  EXPECT_TRUE(table.Admit(V4(10, 0, 1, 3), kT0 + absl::Seconds(10)).should_log);
}

TEST(FloodTableTest, PerSourceCheckedBeforeGlobal) {
  FloodTable table(FloodOptions{3, 3, absl::Seconds(10)});
  for (int i = 0; i < 3; ++i) table.Admit(V4(1, 1, 1, 1), kT0);
  EXPECT_EQ(table.Admit(V4(1, 1, 1, 1), kT0).cause, RefusalCause::kPerSource);
  EXPECT_EQ(table.Admit(V4(2, 2, 2, 2), kT0).cause, RefusalCause::kGlobal);
}

TEST(FloodTableTest, ZeroMinSlotReleasesAtSessionEnd) {
  FloodTable table(FloodOptions{2, 1, absl::ZeroDuration()});
  SlotId s = table.Admit(V4(1, 1, 1, 1), kT0).slot;
  EXPECT_FALSE(table.Admit(V4(1, 1, 1, 1), kT0).admitted);
  EXPECT_TRUE(table.Release(s, kT0));
  EXPECT_TRUE(table.Admit(V4(1, 1, 1, 1), kT0).admitted);
}

TEST(FloodTableTest, ZeroMinSlotStillLogsAtMostOncePerSecond) {
  FloodTable table(FloodOptions{1, 1, absl::ZeroDuration()});
  table.Admit(V4(1, 1, 1, 1), kT0);
  EXPECT_TRUE(table.Admit(V4(1, 1, 1, 1), kT0).should_log);
  EXPECT_FALSE(
      table.Admit(V4(1, 1, 1, 1), kT0 + absl::Milliseconds(999)).should_log);
  EXPECT_TRUE(table.Admit(V4(1, 1, 1, 1), kT0 + absl::Seconds(1)).should_log);
  EXPECT_TRUE(table.Admit(V4(2, 2, 2, 2), kT0 + absl::Seconds(1)).should_log);
  EXPECT_FALSE(table.Admit(V4(3, 3, 3, 3), kT0 + absl::Seconds(1)).should_log);
}

TEST(FloodTableTest, ClockStepBackDoesNotFreeEarly) {
  FloodTable table(FloodOptions{1, 1, absl::Seconds(10)});
  SlotId s = table.Admit(V4(1, 1, 1, 1), kT0 + absl::Seconds(5)).slot;
  table.Release(s, kT0);  // clock went back: treated as kT0 + 5 s
  EXPECT_FALSE(table.Admit(V4(2, 2, 2, 2), kT0 + absl::Seconds(14)).admitted);
  EXPECT_TRUE(table.Admit(V4(2, 2, 2, 2), kT0 + absl::Seconds(15)).admitted);
}

TEST(FloodTableTest, NoPerSourceCapWhenZero) {
  FloodTable table(FloodOptions{100, 0, absl::Seconds(10)});
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(table.Admit(V4(1, 1, 1, 1), kT0).admitted);
  }
  EXPECT_EQ(table.Admit(V4(1, 1, 1, 1), kT0).cause, RefusalCause::kGlobal);
}

// Random admissions and releases against a brute-force model of popa3d's
// rule: a slot is held while live or within min_session_slot of its start.
TEST(FloodTableTest, ChurnMatchesModel) {
  const FloodOptions options{64, 5, absl::Seconds(10)};
  FloodTable table(options);
  struct ModelSlot {
    SourceKey source;
    absl::Time start;
    bool live;
    SlotId id;
  };
  std::vector<ModelSlot> model;
  std::mt19937 rng(42);
  absl::Time now = kT0;
  for (int step = 0; step < 50000; ++step) {
    now += absl::Milliseconds(rng() % 200);
    // Drop model slots that are no longer held.
    std::erase_if(model, [&](const ModelSlot& m) {
      return !m.live && now - m.start >= options.min_session_slot;
    });
    if (rng() % 2 == 0) {
      SourceKey src = V4(10, 0, 0, static_cast<uint8_t>(rng() % 20));
      size_t same = 0;
      for (const ModelSlot& m : model) same += (m.source == src);
      AdmitResult r = table.Admit(src, now);
      if (same >= options.max_per_source) {
        ASSERT_FALSE(r.admitted);
        ASSERT_EQ(r.cause, RefusalCause::kPerSource);
      } else if (model.size() >= options.max_sessions) {
        ASSERT_FALSE(r.admitted);
        ASSERT_EQ(r.cause, RefusalCause::kGlobal);
      } else {
        ASSERT_TRUE(r.admitted) << step;
        model.push_back({src, now, true, r.slot});
      }
    } else {
      std::vector<size_t> live;
      for (size_t i = 0; i < model.size(); ++i) {
        if (model[i].live) live.push_back(i);
      }
      if (!live.empty()) {
        ModelSlot& m = model[live[rng() % live.size()]];
        ASSERT_TRUE(table.Release(m.id, now));
        m.live = false;
      }
    }
    table.Expire(now);
    std::erase_if(model, [&](const ModelSlot& m) {
      return !m.live && now - m.start >= options.min_session_slot;
    });
    ASSERT_EQ(table.held(), model.size()) << step;
    ASSERT_LE(table.sources(), options.max_sessions);
  }
}

}  // namespace
}  // namespace popgate::limits
