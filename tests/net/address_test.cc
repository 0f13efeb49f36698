#include "net/address.h"

#include <netinet/in.h>
#include <sys/un.h>

#include "gtest/gtest.h"
#include "limits/source_prefix.h"

namespace popgate::net {
namespace {

TEST(AddressTest, Ipv4RoundTrip) {
  auto a = MakeSocketAddress("127.0.0.1", 110);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->length, sizeof(sockaddr_in));
  EXPECT_EQ(FormatHost(*a), "127.0.0.1");
  EXPECT_EQ(FormatHostPort(*a), "127.0.0.1:110");
  EXPECT_EQ(Port(*a), 110);
}

TEST(AddressTest, Ipv6RoundTripUsesBrackets) {
  auto a = MakeSocketAddress("2001:db8::1", 995);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->family(), AF_INET6);
  EXPECT_EQ(FormatHost(*a), "2001:db8::1");
  EXPECT_EQ(FormatHostPort(*a), "[2001:db8::1]:995");
}

TEST(AddressTest, Ipv4MappedShownAsDottedQuad) {
  auto a = MakeSocketAddress("::ffff:10.1.2.3", 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(FormatHost(*a), "10.1.2.3");
  EXPECT_EQ(FormatHostPort(*a), "10.1.2.3:0");
  auto v4 = MakeSocketAddress("10.1.2.3", 0);
  EXPECT_EQ(SourceKeyOf(*a), SourceKeyOf(*v4));
}

TEST(AddressTest, RejectsNamesAndJunk) {
  EXPECT_FALSE(MakeSocketAddress("localhost", 110).ok());
  EXPECT_FALSE(MakeSocketAddress("", 110).ok());
  EXPECT_FALSE(MakeSocketAddress("[::1]", 110).ok());
  EXPECT_FALSE(MakeSocketAddress("1.2.3.4.5", 110).ok());
  EXPECT_FALSE(MakeSocketAddress(std::string(200, '1'), 110).ok());
  EXPECT_FALSE(MakeSocketAddress(absl::string_view("1.2.3.4\0", 8), 110).ok());
}

TEST(AddressTest, SourceKeyIsAggregatedToSlash64ByDefault) {
  auto a = MakeSocketAddress("2001:db8:0:1::1", 1);
  auto b = MakeSocketAddress("2001:db8:0:1:ffff::2", 2);
  auto c = MakeSocketAddress("2001:db8:0:2::1", 1);
  const limits::SourcePrefix by_default;
  const auto key = [&](const absl::StatusOr<SocketAddress>& address) {
    return limits::Aggregate(SourceKeyOf(*address), by_default);
  };
  EXPECT_EQ(key(a), key(b));
  EXPECT_FALSE(key(a) == key(c));
  // Unaggregated, the two hosts of one /64 stay apart (--source_prefix_v6=128).
  EXPECT_FALSE(SourceKeyOf(*a) == SourceKeyOf(*b));
  auto d = MakeSocketAddress("127.0.0.1", 1);
  auto e = MakeSocketAddress("127.0.0.2", 1);
  EXPECT_FALSE(key(d) == key(e));
}

TEST(AddressTest, UnixPeerFormatsAsLocal) {
  SocketAddress a;
  a.storage.ss_family = AF_UNIX;
  a.length = sizeof(sockaddr_un);
  EXPECT_EQ(FormatHost(a), "local");
  EXPECT_EQ(SourceKeyOf(a), limits::SourceKey{});
}

}  // namespace
}  // namespace popgate::net
