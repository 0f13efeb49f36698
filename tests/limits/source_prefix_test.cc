#include "limits/source_prefix.h"

#include <cstdint>
#include <initializer_list>

#include "gtest/gtest.h"
#include "limits/flood_table.h"

namespace popgate::limits {
namespace {

SourceKey V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  const uint8_t addr[4] = {a, b, c, d};
  return SourceKey::FromIpv4(addr);
}

// A raw /128 key, as a caller that doesn't truncate to /64 would pass.
SourceKey Raw6(std::initializer_list<uint8_t> bytes) {
  SourceKey key;
  size_t i = 0;
  for (uint8_t b : bytes) key.bytes[i++] = b;
  return key;
}

TEST(SourcePrefixTest, Ipv4Slash24GroupsOneSubnet) {
  const SourcePrefix p{24, 64};
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), p), Aggregate(V4(10, 0, 0, 200), p));
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), p), V4(10, 0, 0, 0));
  EXPECT_FALSE(Aggregate(V4(10, 0, 0, 1), p) == Aggregate(V4(10, 0, 1, 1), p));
}

TEST(SourcePrefixTest, Ipv4Slash32KeepsEachAddress) {
  const SourcePrefix p{32, 64};
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), p), V4(10, 0, 0, 1));
  EXPECT_FALSE(Aggregate(V4(10, 0, 0, 1), p) == Aggregate(V4(10, 0, 0, 2), p));
}

TEST(SourcePrefixTest, Ipv4PrefixNotOnByteBoundary) {
  const SourcePrefix p{20, 64};
  EXPECT_EQ(Aggregate(V4(10, 0, 15, 255), p), V4(10, 0, 0, 0));
  EXPECT_EQ(Aggregate(V4(10, 0, 16, 0), p), V4(10, 0, 16, 0));
}

TEST(SourcePrefixTest, Ipv6Slash64GroupsOneCustomer) {
  const SourcePrefix p{32, 64};
  const SourceKey a = Raw6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 1, 2, 3, 4});
  const SourceKey b = Raw6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 9, 9, 9, 9});
  const SourceKey c = Raw6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 1, 2, 3, 4});
  EXPECT_EQ(Aggregate(a, p), Aggregate(b, p));
  EXPECT_EQ(Aggregate(a, p), Raw6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1}));
  EXPECT_FALSE(Aggregate(a, p) == Aggregate(c, p));
  // /48 groups the two /64s; /128 separates the two hosts.
  EXPECT_EQ(Aggregate(a, SourcePrefix{32, 48}),
            Aggregate(c, SourcePrefix{32, 48}));
  EXPECT_FALSE(Aggregate(a, SourcePrefix{32, 128}) ==
               Aggregate(b, SourcePrefix{32, 128}));
}

TEST(SourcePrefixTest, V4MappedIpv6AggregatesLikeIpv4) {
  const uint8_t mapped[16] = {0, 0, 0,    0,    0,  0, 0, 0,
                              0, 0, 0xff, 0xff, 10, 0, 0, 1};
  const SourcePrefix p{24, 64};
  EXPECT_EQ(Aggregate(SourceKey::FromIpv6(mapped), p),
            Aggregate(V4(10, 0, 0, 200), p));
}

TEST(SourcePrefixTest, Ipv6PrefixDoesNotTouchIpv4Keys) {
  // ipv6_bits = 0 would zero a mapped key's ::ffff: marker if it applied,
  // merging every IPv4 source into one.
  const SourcePrefix p{32, 0};
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), p), V4(10, 0, 0, 1));
  EXPECT_FALSE(Aggregate(V4(10, 0, 0, 1), p) == Aggregate(V4(10, 0, 0, 2), p));
}

TEST(SourcePrefixTest, Ipv4SlashZeroStaysDistinctFromIpv6) {
  const SourceKey v4 = Aggregate(V4(10, 0, 0, 1), SourcePrefix{0, 0});
  const SourceKey v6 = Aggregate(Raw6({0x20, 0x01}), SourcePrefix{0, 0});
  EXPECT_EQ(v4, V4(0, 0, 0, 0));
  EXPECT_FALSE(v4 == v6);
}

TEST(SourcePrefixTest, OutOfRangeBitsAreClamped) {
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), SourcePrefix{99, 64}), V4(10, 0, 0, 1));
  EXPECT_EQ(Aggregate(V4(10, 0, 0, 1), SourcePrefix{-5, 64}), V4(0, 0, 0, 0));
  const SourceKey a =
      Raw6({0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7});
  EXPECT_EQ(Aggregate(a, SourcePrefix{32, 200}), a);
  EXPECT_EQ(Aggregate(a, SourcePrefix{32, -1}), SourceKey{});
}

}  // namespace
}  // namespace popgate::limits
