#include "core/logging.h"

#include <string>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace popgate::core {
namespace {

TEST(LoggingTest, CaptureSinkSeesSeverityAndFormattedText) {
  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  Log(Severity::kInfo, "Session from 192.0.2.1");
  Logf(Severity::kNotice, "Authentication failed for %s", "alice");
  Logf(Severity::kCrit, "%s: fork: %s", "192.0.2.1", "Resource busy");
  const auto entries = capture.entries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].severity, Severity::kInfo);
  EXPECT_EQ(entries[0].message, "Session from 192.0.2.1");
  EXPECT_EQ(entries[1].severity, Severity::kNotice);
  EXPECT_EQ(entries[1].message, "Authentication failed for alice");
  EXPECT_EQ(entries[2].severity, Severity::kCrit);
  EXPECT_TRUE(capture.Contains("fork: Resource busy"));
  EXPECT_FALSE(capture.Contains("nothing like this"));
  capture.Clear();
  EXPECT_TRUE(capture.entries().empty());
}

TEST(LoggingTest, ScopedSinkRestoresThePreviousSink) {
  CaptureLogSink outer;
  CaptureLogSink inner;
  ScopedLogSink scoped_outer(&outer);
  {
    ScopedLogSink scoped_inner(&inner);
    Log(Severity::kInfo, "inner");
  }
  Log(Severity::kInfo, "outer");
  ASSERT_EQ(inner.entries().size(), 1u);
  EXPECT_EQ(inner.entries()[0].message, "inner");
  ASSERT_EQ(outer.entries().size(), 1u);
  EXPECT_EQ(outer.entries()[0].message, "outer");
}

TEST(LoggingTest, ControlBytesFromClientsAreEscaped) {
  // A user name typed as "x\r\nAuthentication passed for root" must not
  // forge a second log line.
  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  static constexpr char kEvil[] =
      "x\r\nAuthentication passed for root\x1b[2J\x7f\0z";
  Logf(Severity::kNotice, "Authentication failed for %s",
       std::string(kEvil, sizeof(kEvil) - 1));
  ASSERT_EQ(capture.entries().size(), 1u);
  EXPECT_EQ(capture.entries()[0].message,
            "Authentication failed for x\\x0d\\x0aAuthentication passed for "
            "root\\x1b[2J\\x7f\\x00z");
}

TEST(LoggingTest, SanitizeKeepsPrintableAndHighBytes) {
  EXPECT_EQ(SanitizeLogText("plain text ~!"), "plain text ~!");
  EXPECT_EQ(SanitizeLogText("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(SanitizeLogText("\t"), "\\x09");
}

TEST(LoggingTest, SeverityNames) {
  EXPECT_EQ(SeverityName(Severity::kInfo), "info");
  EXPECT_EQ(SeverityName(Severity::kNotice), "notice");
  EXPECT_EQ(SeverityName(Severity::kWarning), "warning");
  EXPECT_EQ(SeverityName(Severity::kCrit), "crit");
}

TEST(LoggingTest, StderrLineFormat) {
  const absl::Time t =
      absl::FromCivil(absl::CivilSecond(2026, 11, 27, 8, 12, 3),
                      absl::UTCTimeZone()) +
      absl::Milliseconds(45);
  EXPECT_EQ(FormatStderrLine(t, "popgate", 4242, "Session from 192.0.2.1"),
            "2026-11-27T08:12:03.045Z popgate[4242]: Session from 192.0.2.1");
}

TEST(LogRateLimiterTest, OnePerIntervalPerKey) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  LogRateLimiter limiter(absl::Seconds(10), 16);
  EXPECT_TRUE(limiter.ShouldLog("192.0.2.1", t0));
  EXPECT_FALSE(limiter.ShouldLog("192.0.2.1", t0));
  EXPECT_FALSE(limiter.ShouldLog("192.0.2.1", t0 + absl::Seconds(9)));
  // Another key is independent.
  EXPECT_TRUE(limiter.ShouldLog("192.0.2.2", t0 + absl::Seconds(9)));
  // Exactly one interval later: allowed again (popa3d: >= min_delay).
  EXPECT_TRUE(limiter.ShouldLog("192.0.2.1", t0 + absl::Seconds(10)));
  EXPECT_FALSE(limiter.ShouldLog("192.0.2.1", t0 + absl::Seconds(11)));
  EXPECT_EQ(limiter.suppressed(), 3u);
}

TEST(LogRateLimiterTest, ClockGoingBackAllowsALine) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  LogRateLimiter limiter(absl::Seconds(10), 16);
  EXPECT_TRUE(limiter.ShouldLog("k", t0));
  EXPECT_TRUE(limiter.ShouldLog("k", t0 - absl::Seconds(1)));
  EXPECT_FALSE(limiter.ShouldLog("k", t0));
}

TEST(LogRateLimiterTest, MemoryIsBoundedAndFreshKeysAreNotEvicted) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  LogRateLimiter limiter(absl::Seconds(10), 2);
  EXPECT_TRUE(limiter.ShouldLog("a", t0));
  EXPECT_TRUE(limiter.ShouldLog("b", t0));
  // Full of fresh keys: a third source is suppressed, not let in by
  // evicting "a" (which would let a rotating attacker log at will).
  EXPECT_FALSE(limiter.ShouldLog("c", t0 + absl::Seconds(1)));
  EXPECT_FALSE(limiter.ShouldLog("a", t0 + absl::Seconds(1)));
  EXPECT_EQ(limiter.size(), 2u);
  // Once they expire, room is made.
  EXPECT_TRUE(limiter.ShouldLog("c", t0 + absl::Seconds(10)));
  EXPECT_LE(limiter.size(), 2u);
  EXPECT_EQ(limiter.suppressed(), 2u);
}

}  // namespace
}  // namespace popgate::core
