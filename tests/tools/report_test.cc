// Stats merging, the worker wire form, and the table/JSON renderers.
#include "tools/flood/report.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/flood/stats.h"

namespace popgate::flood {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

RunReport SampleReport() {
  RunReport r;
  r.target = "127.0.0.1:1110";
  r.sources = "127.0.0.2-127.0.0.3";
  r.seconds = 2.0;
  r.threads = 2;
  r.processes = 1;
  ScenarioStats poll;
  poll.kind = ScenarioKind::kPoll;
  poll.clients = poll.clients_run = 8;
  poll.outcome(Outcome::kOk) = 1000;
  poll.outcome(Outcome::kErrAuth) = 3;
  poll.outcome(Outcome::kTimeout) = 2;
  poll.check(Check::kUidlChanged) = 1;
  poll.connects = 1005;
  poll.established = 1005;
  poll.greetings_ok = 1005;
  poll.bytes_in = 123456;
  poll.bytes_out = 23456;
  for (int i = 1; i <= 1000; ++i) poll.latency_us.Record(i * 10);
  poll.greeting_us.Record(150);
  ScenarioStats flood;
  flood.kind = ScenarioKind::kConnectClose;
  flood.clients = flood.clients_run = 50;
  flood.connects = 9000;
  flood.established = 8000;
  flood.outcome(Outcome::kOk) = 8000;
  flood.outcome(Outcome::kRefusedAtConnect) = 1000;
  r.scenarios = {poll, flood};
  return r;
}

TEST(StatsTest, FailedExcludesAttackOutcomes) {
  ScenarioStats s;
  s.kind = ScenarioKind::kHoldIdle;
  s.outcome(Outcome::kClosedByServer) = 5;
  s.outcome(Outcome::kHeldAtEnd) = 2;
  s.outcome(Outcome::kEofBeforeGreeting) = 1;
  s.greetings_ok = 7;
  EXPECT_EQ(s.finished(), 8u);
  EXPECT_EQ(s.failed(), 1u);
  EXPECT_EQ(s.attacker_accepted(), 7u);
  EXPECT_EQ(s.attacker_refused(), 1u);
}

TEST(StatsTest, MergeAddsEverything) {
  RunReport a = SampleReport(), b = SampleReport();
  b.seconds = 2.5;
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(a.scenarios[0].outcome(Outcome::kOk), 2000u);
  EXPECT_EQ(a.scenarios[0].clients, 16u);
  EXPECT_EQ(a.scenarios[0].latency_us.count(), 2000u);
  EXPECT_EQ(a.scenarios[1].connects, 18000u);
  EXPECT_DOUBLE_EQ(a.seconds, 2.5);  // side by side, not end to end
}

TEST(StatsTest, MergeRejectsDifferentScenarios) {
  RunReport a = SampleReport(), b = SampleReport();
  b.scenarios.pop_back();
  EXPECT_FALSE(a.Merge(b).ok());
  b = SampleReport();
  b.scenarios[1].kind = ScenarioKind::kJunk;
  EXPECT_FALSE(a.Merge(b).ok());
}

TEST(StatsTest, SerializeRoundTripsExactly) {
  RunReport r = SampleReport();
  r.limits.fd_limit = 20000;
  r.limits.port_exhausted = 4;
  absl::StatusOr<RunReport> back = RunReport::Deserialize(r.Serialize());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Serialize(), r.Serialize());
  EXPECT_EQ(RenderJson(*back), RenderJson(r));
}

TEST(StatsTest, DeserializeRejectsTruncatedAndJunk) {
  const std::string text = SampleReport().Serialize();
  EXPECT_FALSE(RunReport::Deserialize(text.substr(0, text.size() / 2)).ok());
  EXPECT_FALSE(RunReport::Deserialize("junk\nend\n").ok());
  EXPECT_FALSE(RunReport::Deserialize("s 1 2 3\nend\n").ok());
}

TEST(ReportTest, TableShowsRatesCausesAndPercentiles) {
  const std::string t = RenderTable(SampleReport());
  EXPECT_THAT(t, HasSubstr("target 127.0.0.1:1110"));
  EXPECT_THAT(t, HasSubstr("poll:8"));
  EXPECT_THAT(t, HasSubstr("1000 ok, 5 failed   500.0 ok/s"));
  EXPECT_THAT(t, HasSubstr("err-auth 3"));
  EXPECT_THAT(t, HasSubstr("timeout 2"));
  EXPECT_THAT(t, HasSubstr("uidl-changed 1"));
  EXPECT_THAT(t, HasSubstr("p50 5.02ms"));
  EXPECT_THAT(t, HasSubstr("max 10.00ms"));
  EXPECT_THAT(t, HasSubstr("connect-close:50"));
  EXPECT_THAT(t, HasSubstr("9000 attempted, 8000 accepted, 1000 refused"));
  EXPECT_THAT(t, Not(HasSubstr("capped by")));
}

TEST(ReportTest, SaysWhenWeCappedTheRun) {
  RunReport r = SampleReport();
  r.limits.fd_limit = 20000;
  r.limits.clients_dropped = 5000;
  const std::string t = RenderTable(r);
  EXPECT_THAT(t, HasSubstr("capped by fd limit, not the server"));
  EXPECT_THAT(t, HasSubstr("--processes"));
  r.limits.clients_dropped = 0;
  r.limits.port_exhausted = 3;
  EXPECT_THAT(RenderTable(r),
              HasSubstr("capped by ephemeral ports, not the server"));
  EXPECT_THAT(RenderJson(r), HasSubstr("\"capped\":true"));
}

TEST(ReportTest, JsonHasTheSameFigures) {
  const std::string j = RenderJson(SampleReport());
  EXPECT_THAT(j, HasSubstr("\"name\":\"poll\""));
  EXPECT_THAT(j, HasSubstr("\"ok\":1000"));
  EXPECT_THAT(j, HasSubstr("\"failed\":5"));
  EXPECT_THAT(j, HasSubstr("\"ok_per_sec\":500.0"));
  EXPECT_THAT(j, HasSubstr("\"err-auth\":3"));
  EXPECT_THAT(j, HasSubstr("\"uidl-changed\":1"));
  EXPECT_THAT(j, HasSubstr("\"p99\":9919"));
  EXPECT_THAT(j,
              HasSubstr("\"attacker\":{\"accepted\":8000,\"refused\":1000}"));
  EXPECT_THAT(j, HasSubstr("\"capped\":false"));
  // Balanced braces and brackets: a cheap structural check.
  int depth = 0;
  for (char c : j) {
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    ASSERT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);
}

TEST(ReportTest, JsonQuoteEscapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(ReportTest, Formats) {
  EXPECT_EQ(FormatMicros(850), "850us");
  EXPECT_EQ(FormatMicros(1250), "1.25ms");
  EXPECT_EQ(FormatMicros(3400000), "3.40s");
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytes(12300000), "12.3 MB");
}

TEST(ReportTest, ProgressLine) {
  const std::string p = RenderProgress(SampleReport(), 2.0, 42);
  EXPECT_THAT(p, HasSubstr("poll 500/s"));
  EXPECT_THAT(p, HasSubstr("err 1005"));
  EXPECT_THAT(p, HasSubstr("open 42"));
  EXPECT_THAT(p, HasSubstr("p99"));
  EXPECT_EQ(p.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace popgate::flood
