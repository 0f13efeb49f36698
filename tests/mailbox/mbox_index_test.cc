// The mbox index: boundaries, refusals, sizes and flags (reference §4.2,
// §4.3, §4.9), table-driven, plus a property test against the naive
// reference model in mbox_test_util.h over generated mailboxes.
#include "mailbox/mbox_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "mailbox/mapping.h"
#include "mailbox/wire_stream.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::RefDotLines;
using ::popgate::mailbox::testing::RefEncode;
using ::popgate::mailbox::testing::RefIndex;
using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

using namespace std::string_literals;  // "\0" inside literals.

struct BoundaryCase {
  const char* name;
  std::string mbox;
  // Per message: the raw extent and the data, as strings.
  std::vector<std::pair<std::string, std::string>> messages;
};

TEST(MboxIndexTest, Boundaries) {
  const BoundaryCase kCases[] = {
      {"SingleMessage",
       "From a\nH: 1\n\nbody\n",
       {{"From a\nH: 1\n\nbody\n", "H: 1\n\nbody\n"}}},
      {"FromAfterLfBlankSeparatesAndBlankIsTrimmed",
       "From a\nH: 1\n\nb1\n\nFrom b\nH: 2\n\nb2\n",
       {{"From a\nH: 1\n\nb1\n\n", "H: 1\n\nb1\n"},
        {"From b\nH: 2\n\nb2\n", "H: 2\n\nb2\n"}}},
      {"FromNotAfterBlankIsBody",
       "From a\nH: 1\n\nb1\nFrom b\n",
       {{"From a\nH: 1\n\nb1\nFrom b\n", "H: 1\n\nb1\nFrom b\n"}}},
      {"CrLfBlankDoesNotSeparate",
       "From a\r\nH: 1\r\n\r\nb1\r\n\r\nFrom b\r\nH: 2\r\n",
       {{"From a\r\nH: 1\r\n\r\nb1\r\n\r\nFrom b\r\nH: 2\r\n",
         "H: 1\r\n\r\nb1\r\n\r\nFrom b\r\nH: 2\r\n"}}},
      {"GtFromIsNotUnescaped",
       "From a\n\n>From x\n",
       {{"From a\n\n>From x\n", "\n>From x\n"}}},
      {"FromNeedsTheSpace",
       "From a\nH\n\nb\n\nFromX\n",
       {{"From a\nH\n\nb\n\nFromX\n", "H\n\nb\n\nFromX\n"}}},
      {"FromIsCaseSensitive",
       "From a\nH\n\nb\n\nfrom x\n",
       {{"From a\nH\n\nb\n\nfrom x\n", "H\n\nb\n\nfrom x\n"}}},
      {"BodylessMessageKeepsItsBlankLine",
       "From a\nH: 1\n\nFrom b\nH: 2\n\nbody\n",
       {{"From a\nH: 1\n\n", "H: 1\n\n"},
        {"From b\nH: 2\n\nbody\n", "H: 2\n\nbody\n"}}},
      {"BodylessAtEofKeepsItsBlankLine",
       "From a\nH: 1\n\n",
       {{"From a\nH: 1\n\n", "H: 1\n\n"}}},
      {"TrailingBlankAtEofTrimmedWithBody",
       "From a\nH: 1\n\nb\n\n",
       {{"From a\nH: 1\n\nb\n\n", "H: 1\n\nb\n"}}},
      {"OnlyOneBlankTrimmed",
       "From a\nH\n\nb\n\n\nFrom b\nH\n",
       {{"From a\nH\n\nb\n\n\n", "H\n\nb\n\n"}, {"From b\nH\n", "H\n"}}},
      {"NoHeaderEndNoTrim",
       "From a\nH: 1\nH: 2\n",
       {{"From a\nH: 1\nH: 2\n", "H: 1\nH: 2\n"}}},
      {"UnterminatedLastLine",
       "From a\nH: 1\n\nlast",
       {{"From a\nH: 1\n\nlast", "H: 1\n\nlast"}}},
      {"NulBytes",
       "From a\nH: \0x\n\nb\0dy\n\0\n"s,
       {{"From a\nH: \0x\n\nb\0dy\n\0\n"s, "H: \0x\n\nb\0dy\n\0\n"s}}},
      {"CrLfMailWithLfSeparators",
       "From a\r\nH: 1\r\n\r\nb\r\n\nFrom b\r\nH: 2\r\n\r\nc\r\n",
       {{"From a\r\nH: 1\r\n\r\nb\r\n\n", "H: 1\r\n\r\nb\r\n\n"},
        {"From b\r\nH: 2\r\n\r\nc\r\n", "H: 2\r\n\r\nc\r\n"}}},
      {"BlankFirstDataLine",
       "From a\n\nbody\n\nFrom b\nx\n",
       {{"From a\n\nbody\n\n", "\nbody\n"}, {"From b\nx\n", "x\n"}}},
      {"Empty", "", {}},
  };
  for (const BoundaryCase& c : kCases) {
    SCOPED_TRACE(c.name);
    auto index = IndexMbox(c.mbox, 100);
    ASSERT_THAT(index, IsOk());
    ASSERT_EQ(index->size(), c.messages.size());
    for (size_t i = 0; i < c.messages.size(); ++i) {
      const MboxMessage& m = (*index)[i];
      EXPECT_EQ(c.mbox.substr(m.raw_offset, m.raw_size), c.messages[i].first);
      EXPECT_EQ(c.mbox.substr(m.data_offset, m.data_size),
                c.messages[i].second);
      // LIST size = encoded octets before dot-stuffing.
      const std::string data = c.messages[i].second;
      EXPECT_EQ(m.wire_size, RefEncode(data).size() - RefDotLines(data));
    }
  }
}

struct RefusalCase {
  const char* name;
  std::string mbox;
  size_t max_messages;
  absl::StatusCode code;
};

TEST(MboxIndexTest, Refusals) {
  const RefusalCase kCases[] = {
      {"DataBeforeFirstFrom", "x\nFrom a\n\nb\n", 10,
       absl::StatusCode::kDataLoss},
      {"LeadingBlankLine", "\nFrom a\n\nb\n", 10, absl::StatusCode::kDataLoss},
      {"NoFromAtAll", "just text\n", 10, absl::StatusCode::kDataLoss},
      {"FromDirectlyFollowedByFrom", "From a\nFrom b\nH\n", 10,
       absl::StatusCode::kDataLoss},
      {"EndsRightAfterFrom", "From a\n", 10, absl::StatusCode::kDataLoss},
      {"EndsRightAfterLaterFrom", "From a\nH\n\nb\n\nFrom b\n", 10,
       absl::StatusCode::kDataLoss},
      {"EndsInUnterminatedFrom", "From a\nH\n\nb\n\nFrom b", 10,
       absl::StatusCode::kDataLoss},
      {"TooManyMessages", "From a\nx\n\nFrom b\nx\n\nFrom c\nx\n", 2,
       absl::StatusCode::kResourceExhausted},
  };
  for (const RefusalCase& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(IndexMbox(c.mbox, c.max_messages), StatusIs(c.code));
    if (c.code == absl::StatusCode::kDataLoss) {
      EXPECT_FALSE(RefIndex(c.mbox).has_value());
    }
  }
  EXPECT_THAT(IndexMbox("From a\nx\n\nFrom b\nx\n\nFrom c\nx\n", 3), IsOk());
}

TEST(MboxIndexTest, WireCleanFlag) {
  struct Case {
    const char* name;
    std::string mbox;
    bool clean;
  } kCases[] = {
      {"CrLfAtEof", "From a\r\nH: 1\r\n\r\nb\r\n", true},
      {"LfMail", "From a\nH: 1\n\nb\n", false},
      {"DotLine", "From a\r\nH: 1\r\n\r\n.b\r\n", false},
      {"Unterminated", "From a\r\nH: 1\r\n\r\nb", false},
      {"KeptLfSeparator", "From a\r\nH\r\n\nFrom b\r\nx\r\n", false},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    auto index = IndexMbox(c.mbox, 10);
    ASSERT_THAT(index, IsOk());
    EXPECT_EQ((*index)[0].wire_clean(), c.clean);
  }
}

// Lines the generator draws from: boundaries, near-boundaries, headers that
// the UIDL hashes, CR/LF variants, dots, NULs, long lines.
std::string RandomMbox(std::mt19937_64& rng) {
  static const std::vector<std::string> kLines = {
      "From a@b Mon Jan  1 00:00:00 2024\n",
      "From \n",
      "From x\r\n",
      ">From quoted\n",
      "\n",
      "\n",
      "\n",
      "\r\n",
      "Received: from x\n",
      "received: by y\r\n",
      " continuation\n",
      "\tcont2\n",
      "Date: today\n",
      "Message-ID: <m@x>\n",
      "Delivered-To: u@h\n",
      "X-Delivery-ID: 7\n",
      "x-delivery-id: 8\n",
      "Subject: s\n",
      "body text\n",
      "crlf body\r\n",
      ".dot line\n",
      "..\r\n",
      ".\n",
      "nul\0byte\n"s,
      "cr\rin middle\n",
      "trailing cr\r\r\n",
      std::string(3000, 'L') + "\n",
  };
  std::string mbox;
  if (rng() % 8 != 0) mbox = "From first\n";
  const int lines = static_cast<int>(rng() % 40);
  for (int i = 0; i < lines; ++i) mbox += kLines[rng() % kLines.size()];
  if (rng() % 4 == 0) mbox += "unterminated";
  return mbox;
}

TEST(MboxIndexTest, MatchesReferenceModelOnGeneratedMailboxes) {
  std::mt19937_64 rng(12345);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const std::string mbox = RandomMbox(rng);
    SCOPED_TRACE(::testing::Message() << "iteration " << iter);
    auto ref = RefIndex(mbox);
    auto index = IndexMbox(mbox, 1000);
    ASSERT_EQ(index.ok(), ref.has_value()) << index.status();
    if (!ref.has_value()) {
      EXPECT_THAT(index, StatusIs(absl::StatusCode::kDataLoss));
      continue;
    }
    ++accepted;
    ASSERT_EQ(index->size(), ref->size());
    uint64_t covered = 0;
    for (size_t i = 0; i < ref->size(); ++i) {
      const MboxMessage& m = (*index)[i];
      const testing::RefMessage& r = (*ref)[i];
      EXPECT_EQ(m.raw_offset, r.raw_offset);
      EXPECT_EQ(m.raw_size, r.raw_size);
      EXPECT_EQ(m.data_offset, r.data_offset);
      EXPECT_EQ(m.data_size, r.data_size);
      EXPECT_EQ(m.uidl_view(), r.uidl);
      // Raw extents tile the file (the update relies on it).
      EXPECT_EQ(m.raw_offset, covered);
      covered += m.raw_size;
      // Sizes == the octets actually encoded, before dot-stuffing.
      absl::string_view data(mbox.data() + m.data_offset, m.data_size);
      const std::string wire = RefEncode(data);
      EXPECT_EQ(m.wire_size, wire.size() - RefDotLines(data));
      EXPECT_EQ(m.wire_size, WireSize(data));
      EXPECT_EQ(m.wire_clean(), wire == data);
      // And the streaming encoder produces exactly that.
      EncodingStream stream(data, m.wire_clean(), absl::string_view());
      auto got = testing::Drain(&stream, 1 + rng() % 700);
      ASSERT_THAT(got, IsOk());
      EXPECT_EQ(*got, wire);
    }
    EXPECT_EQ(covered, mbox.size());
  }
  EXPECT_GT(accepted, 500);  // The generator must exercise the happy path.
}

TEST(MboxIndexTest, TruncatedMappingIsAbortedNotSigbus) {
  testing::TempDir dir;
  const std::string path = dir.File("mbox");
  std::string mbox;
  for (int i = 0; i < 2000; ++i) mbox += "From x\nH: 1\n\nbody line\n\n";
  testing::WriteFile(path, mbox);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto mapping = Mapping::Map(fd.get(), mbox.size());
  ASSERT_THAT(mapping, IsOk());
  ASSERT_THAT(IndexMappedMbox(mapping->view(), 1 << 20), IsOk());
  ASSERT_EQ(::ftruncate(fd.get(), 0), 0);
  EXPECT_THAT(IndexMappedMbox(mapping->view(), 1 << 20),
              StatusIs(absl::StatusCode::kAborted));
  // The guard is reusable afterwards (SIGBUS not left blocked).
  EXPECT_THAT(IndexMappedMbox(mapping->view(), 1 << 20),
              StatusIs(absl::StatusCode::kAborted));
}

}  // namespace
}  // namespace popgate::mailbox
