// Source-range parsing, the loopback check and target resolution.
#include "tools/flood/address.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

std::vector<std::string> Strings(const std::vector<SockAddr>& addrs) {
  std::vector<std::string> out;
  for (const SockAddr& a : addrs) out.push_back(a.ToString());
  return out;
}

TEST(SourceListTest, SingleAddress) {
  auto s = ParseSourceList("127.0.0.2");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(Strings(*s), std::vector<std::string>{"127.0.0.2"});
}

TEST(SourceListTest, InclusiveRange) {
  auto s = ParseSourceList("127.0.0.2-127.0.0.51");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 50u);
  EXPECT_EQ(s->front().ToString(), "127.0.0.2");
  EXPECT_EQ(s->back().ToString(), "127.0.0.51");
}

TEST(SourceListTest, RangeCarriesAcrossOctets) {
  auto s = ParseSourceList("127.0.0.254-127.0.1.1");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(Strings(*s), (std::vector<std::string>{"127.0.0.254", "127.0.0.255",
                                                   "127.0.1.0", "127.0.1.1"}));
}

TEST(SourceListTest, CommaListMixesSinglesAndRanges) {
  auto s = ParseSourceList("127.0.0.5, 127.0.0.9-127.0.0.10,127.1.2.3");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(Strings(*s), (std::vector<std::string>{"127.0.0.5", "127.0.0.9",
                                                   "127.0.0.10", "127.1.2.3"}));
}

TEST(SourceListTest, Ipv6ListAndRange) {
  auto s = ParseSourceList("::1,fd00::fffe-fd00::1:1");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(Strings(*s),
            (std::vector<std::string>{"::1", "fd00::fffe", "fd00::ffff",
                                      "fd00::1:0", "fd00::1:1"}));
  EXPECT_EQ(s->front().family(), AF_INET6);
}

TEST(SourceListTest, Rejects) {
  EXPECT_FALSE(ParseSourceList("").ok());
  EXPECT_FALSE(ParseSourceList("127.0.0.1,").ok());
  EXPECT_FALSE(ParseSourceList("localhost").ok());
  EXPECT_FALSE(ParseSourceList("127.0.0.9-127.0.0.1").ok());  // reversed
  EXPECT_FALSE(ParseSourceList("127.0.0.1-::1").ok());        // mixed range
  EXPECT_FALSE(ParseSourceList("127.0.0.1,::1").ok());        // mixed list
  EXPECT_FALSE(ParseSourceList("127.0.0.1-127.0.0.300").ok());
  EXPECT_FALSE(ParseSourceList("10.0.0.0-10.255.255.255").ok());  // too many
}

TEST(SourceListTest, CapIsExactlyAllowed) {
  EXPECT_TRUE(ParseSourceList("127.1.0.0-127.1.255.255").ok());  // 65536
  EXPECT_FALSE(ParseSourceList("127.1.0.0-127.2.0.0").ok());     // 65537
}

TEST(LoopbackTest, Classifies) {
  struct {
    const char* ip;
    bool loopback;
  } cases[] = {
      {"127.0.0.1", true},
      {"127.255.255.254", true},
      {"127.0.0.0", true},
      {"128.0.0.1", false},
      {"126.255.255.255", false},
      {"10.0.0.1", false},
      {"0.0.0.0", false},
      {"::1", true},
      {"::", false},
      {"::2", false},
      {"::ffff:127.0.0.1", true},
      {"::ffff:10.0.0.1", false},
      {"fe80::1", false},
      {"1::1", false},
  };
  for (const auto& c : cases) {
    auto a = ParseIp(c.ip, 110);
    ASSERT_TRUE(a.ok()) << c.ip;
    EXPECT_EQ(IsLoopback(*a), c.loopback) << c.ip;
  }
}

TEST(HostPortTest, Forms) {
  auto hp = ParseHostPort("127.0.0.1", 110);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 110);
  hp = ParseHostPort("127.0.0.1:1110", 110);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->port, 1110);
  hp = ParseHostPort("[::1]:995", 110);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 995);
  hp = ParseHostPort("::1", 110);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 110);
  EXPECT_FALSE(ParseHostPort("127.0.0.1:0", 110).ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:65536", 110).ok());
  EXPECT_FALSE(ParseHostPort(":110", 110).ok());
  EXPECT_FALSE(ParseHostPort("[::1", 110).ok());
  EXPECT_FALSE(ParseHostPort("[::1]x", 110).ok());
}

TEST(ResolveTargetTest, LoopbackAllowedByDefault) {
  auto a = ResolveTarget({"127.0.0.1", 1110}, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->ToString(), "127.0.0.1:1110");
  a = ResolveTarget({"::1", 110}, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->ToString(), "[::1]:110");
}

TEST(ResolveTargetTest, RefusesOthersAndSaysHowToAllow) {
  auto a = ResolveTarget({"192.0.2.7", 110}, {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(a.status().message().find("--allow-target=192.0.2.7"),
            std::string::npos)
      << a.status();
  EXPECT_FALSE(ResolveTarget({"192.0.2.7", 110}, {"192.0.2.8"}).ok());
  EXPECT_TRUE(ResolveTarget({"192.0.2.7", 110}, {"192.0.2.7"}).ok());
  EXPECT_FALSE(ResolveTarget({"0.0.0.0", 110}, {}).ok());
}

}  // namespace
}  // namespace popgate::flood
