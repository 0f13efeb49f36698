// STAT/LIST/UIDL payload parsers and the cross-session UIDL check.
#include "tools/flood/listing.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

TEST(ParseStatTest, Forms) {
  auto s = ParseStat("2 320");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->messages, 2u);
  EXPECT_EQ(s->octets, 320u);
  EXPECT_TRUE(ParseStat("0 0").ok());
  EXPECT_TRUE(ParseStat("1 10 extra words").ok());
  EXPECT_FALSE(ParseStat("").ok());
  EXPECT_FALSE(ParseStat("2").ok());
  EXPECT_FALSE(ParseStat("-1 5").ok());
  EXPECT_FALSE(ParseStat("+1 5").ok());
  EXPECT_FALSE(ParseStat("x 5").ok());
}

TEST(ParseListingTest, Good) {
  auto l = ParseListing("1 120\r\n3 200\r\n");
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[1].msn, 3u);
  EXPECT_EQ((*l)[1].value, "200");
  EXPECT_TRUE(ParseListing("").ok());
}

TEST(ParseListingTest, Rejects) {
  EXPECT_FALSE(ParseListing("1 120").ok());           // no CRLF
  EXPECT_FALSE(ParseListing("2 1\r\n1 1\r\n").ok());  // not increasing
  EXPECT_FALSE(ParseListing("1 1\r\n1 1\r\n").ok());  // repeated msn
  EXPECT_FALSE(ParseListing("0 1\r\n").ok());         // msn is 1-based
  EXPECT_FALSE(ParseListing("1\r\n").ok());           // no value
  EXPECT_FALSE(ParseListing("1 \r\n").ok());          // empty value
  EXPECT_FALSE(ParseListing("1 a b\r\n").ok());       // two values
  EXPECT_FALSE(ParseListing(" 1 a\r\n").ok());
}

using V = std::vector<std::string>;

TEST(UidlConsistencyTest, GrowOnlyMailbox) {
  EXPECT_TRUE(UidlTracker::Consistent({"a", "b"}, {"a", "b"}, false));
  EXPECT_TRUE(UidlTracker::Consistent({"a", "b"}, {"a", "b", "c"}, false));
  // An older session recorded after a newer one: still a prefix.
  EXPECT_TRUE(UidlTracker::Consistent({"a", "b", "c"}, {"a", "b"}, false));
  // Kept message's id changed.
  EXPECT_FALSE(
      UidlTracker::Consistent({"a", "b", "c"}, {"a", "X", "c"}, false));
  // New mail inserted before old mail.
  EXPECT_FALSE(UidlTracker::Consistent({"a", "b"}, {"n", "a", "b"}, false));
  // Reordered.
  EXPECT_FALSE(UidlTracker::Consistent({"a", "b"}, {"b", "a"}, false));
  // Duplicate ids must stay duplicates.
  EXPECT_TRUE(UidlTracker::Consistent({"d", "d", "e"}, {"d", "d", "e"}, false));
  EXPECT_FALSE(
      UidlTracker::Consistent({"d", "d", "e"}, {"d", "x", "e"}, false));
}

TEST(UidlConsistencyTest, WithDeletesOnlyOrderCounts) {
  EXPECT_TRUE(UidlTracker::Consistent({"a", "b", "c"}, {"b", "c"}, true));
  EXPECT_TRUE(UidlTracker::Consistent({"b", "c"}, {"a", "b", "c"}, true));
  EXPECT_TRUE(UidlTracker::Consistent({"a", "b"}, {"b", "c", "d"}, true));
  EXPECT_FALSE(UidlTracker::Consistent({"a", "b", "c"}, {"c", "b"}, true));
}

TEST(UidlTrackerTest, TracksPerUser) {
  UidlTracker t(/*deletes_expected=*/false);
  EXPECT_TRUE(t.Check("alice", {"a", "b"}));
  EXPECT_TRUE(t.Check("bob", {"x"}));
  EXPECT_TRUE(t.Check("alice", {"a", "b", "c"}));
  EXPECT_FALSE(t.Check("alice", {"a", "Z", "c"}));
  EXPECT_TRUE(t.Check("bob", {"x"}));
}

}  // namespace
}  // namespace popgate::flood
