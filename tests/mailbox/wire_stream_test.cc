// RETR/TOP octets (reference §4.4 plus the product's CR LF and TOP fixes),
// table-driven, each case fed with every max_bytes from 1 to past its size
// and with a huge one.
#include "mailbox/wire_stream.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::Drain;
using ::popgate::mailbox::testing::RefEncode;
using ::popgate::mailbox::testing::RefTop;
using ::popgate::testing::IsOk;

using namespace std::string_literals;

// Drains `stream` through NextInto() with `capacity` per call; checks that
// each call stays in bounds and makes progress.
absl::StatusOr<std::string> DrainInto(WireStream* stream, size_t capacity) {
  std::string out;
  std::string buffer(capacity + 1, '#');  // the extra octet must survive
  for (;;) {
    size_t written = 0;
    absl::StatusOr<bool> more =
        stream->NextInto(buffer.data(), capacity, &written);
    if (!more.ok()) return more.status();
    EXPECT_LE(written, capacity);
    EXPECT_EQ(buffer[capacity], '#');
    out.append(buffer.data(), written);
    if (!*more) return out;
    if (written == 0) {
      ADD_FAILURE() << "no progress at capacity " << capacity;
      return out;
    }
  }
}

// Encodes `data` with every budget and checks all agree with `want`.
void ExpectEncodes(absl::string_view data, absl::string_view want) {
  for (size_t max_bytes = 0; max_bytes <= want.size() + 4; ++max_bytes) {
    for (bool clean : {false, true}) {
      // The fast path is only valid for wire-clean data.
      if (clean && data != want) continue;
      EncodingStream stream(data, clean, absl::string_view());
      auto got = Drain(&stream, max_bytes);
      ASSERT_THAT(got, IsOk());
      EXPECT_EQ(*got, want) << "max_bytes=" << max_bytes;
    }
  }
  EncodingStream stream(data, false, absl::string_view());
  auto got = Drain(&stream, std::numeric_limits<size_t>::max());
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, want);
  for (size_t capacity = WireStream::kMinCopyCapacity;
       capacity <= want.size() + 4; ++capacity) {
    EncodingStream copied(data, false, absl::string_view());
    auto encoded = DrainInto(&copied, capacity);
    ASSERT_THAT(encoded, IsOk());
    EXPECT_EQ(*encoded, want) << "capacity=" << capacity;
  }
}

struct RetrCase {
  const char* name;
  std::string data;
  std::string wire;
};

TEST(WireStreamTest, Retr) {
  const RetrCase kCases[] = {
      {"LfBecomesCrLf", "a\nb\n", "a\r\nb\r\n"},
      {"CrLfKept", "a\r\nb\r\n", "a\r\nb\r\n"},
      {"MixedLineEndings", "a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n"},
      {"ExtraCrKeptOnCrLfLine", "a\r\r\n", "a\r\r\n"},
      {"LoneCrIsData", "a\rb\n", "a\rb\r\n"},
      {"DotDoubledAtLineStart", ".x\n", "..x\r\n"},
      {"DotOnlyLine", "x\n.\n", "x\r\n..\r\n"},
      {"DotsAfterCrLfLines", ".\r\n..", "..\r\n...\r\n"},
      {"DotNotAtLineStartUntouched", "a.b\n", "a.b\r\n"},
      {"UnterminatedGetsCrLf", "a\nb", "a\r\nb\r\n"},
      {"UnterminatedCr", "a\r", "a\r\r\n"},
      {"LoneLf", "\n", "\r\n"},
      {"BlankLines", "\n\n\r\n", "\r\n\r\n\r\n"},
      {"Nul", "\0\n"s, "\0\r\n"s},
      {"Empty", "", ""},
      {"LongCrLfRun",
       std::string(5000, 'x') + "\r\n.\r\n" + std::string(10, 'y') + "\r\n",
       std::string(5000, 'x') + "\r\n..\r\n" + std::string(10, 'y') + "\r\n"},
  };
  for (const RetrCase& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(RefEncode(c.data), c.wire);  // Keep the model honest.
    ExpectEncodes(c.data, c.wire);
    // LIST size: the encoded octets minus the stuffed dots.
    uint64_t dots = testing::RefDotLines(c.data);
    EXPECT_EQ(WireSize(c.data), c.wire.size() - dots);
  }
}

struct TopCase {
  const char* name;
  std::string data;
  uint64_t lines;
  std::string wire;
};

TEST(WireStreamTest, Top) {
  const std::string kMsg = "H: 1\nH: 2\n\nl1\nl2\nl3\n";
  const TopCase kCases[] = {
      {"ZeroLinesGivesHeadersAndBlank", kMsg, 0, "H: 1\r\nH: 2\r\n\r\n"},
      {"TwoLines", kMsg, 2, "H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\n"},
      {"MoreLinesThanBody", kMsg, 10, "H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"},
      {"MaxLines", kMsg, std::numeric_limits<uint64_t>::max(),
       "H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"},
      {"NoBlankLineSendsAll", "H: 1\nl1\n", 0, "H: 1\r\nl1\r\n"},
      {"CrLfBlankEndsHeaders", "H: 1\r\n\r\nl1\r\nl2\r\n", 1,
       "H: 1\r\n\r\nl1\r\n"},
      {"BlankLinesInBodyCount", "H\n\n\n\nx\n", 2, "H\r\n\r\n\r\n\r\n"},
      {"UnterminatedLastBodyLine", "H\n\nl1", 5, "H\r\n\r\nl1\r\n"},
      {"DotStuffedBody", "H\n\n.l1\nl2\n", 1, "H\r\n\r\n..l1\r\n"},
      {"BlankFirstLine", "\nb1\nb2\n", 1, "\r\nb1\r\n"},
  };
  for (const TopCase& c : kCases) {
    SCOPED_TRACE(c.name);
    const uint64_t len = TopLength(c.data, c.lines);
    EXPECT_EQ(c.data.substr(0, len), RefTop(c.data, c.lines));
    EXPECT_EQ(RefEncode(c.data.substr(0, len)), c.wire);
    ExpectEncodes(absl::string_view(c.data).substr(0, len), c.wire);
  }
}

// Encodes `data` with Next() (`copy` false, `limit` = max_bytes) or
// NextInto() (`copy` true, `limit` = capacity) and checks the model's
// octets come out.
void ExpectMatchesModel(const std::string& data, bool copy, size_t limit) {
  EncodingStream stream(data, false, absl::string_view());
  auto got = copy ? DrainInto(&stream, limit) : Drain(&stream, limit);
  ASSERT_THAT(got, IsOk());
  ASSERT_EQ(*got, RefEncode(data)) << (copy ? "capacity " : "max_bytes ")
                                   << limit << " data " << absl::CEscape(data);
}

TEST(WireStreamTest, NextIntoMatchesTheModelOnRandomData) {
  // Short alphabets hit every line-start, dot and CR/LF combination.
  std::mt19937 rng(20261127);
  const char kAlphabet[] = {'.', '\r', '\n', 'a'};
  for (int round = 0; round < 2000; ++round) {
    std::string data(rng() % 40, 'a');
    for (char& c : data) c = kAlphabet[rng() % 4];
    ExpectMatchesModel(data, /*copy=*/true, 2 + rng() % 12);
    if (HasFatalFailure()) return;
  }
}

TEST(WireStreamTest, NextMatchesTheModelOnRandomData) {
  // Long enough for the 16-octet scan of CR LF runs, with every break it
  // looks for (bare LF, a dot after CR LF) at every offset of a block.
  std::mt19937 rng(20261128);
  const char kAlphabet[] = {'.', '\r', '\n', 'a', 'a', 'a'};
  for (int round = 0; round < 3000; ++round) {
    std::string data;
    const size_t size = rng() % 300;
    while (data.size() < size) {
      if (rng() % 3 == 0) {
        data += kAlphabet[rng() % 6];
      } else {
        data += std::string(rng() % 20, 'a') + "\r\n";
      }
    }
    ExpectMatchesModel(data, /*copy=*/false, 1 + rng() % 400);
    if (HasFatalFailure()) return;
  }
}

TEST(WireStreamTest, CrLfLinesComeOutAsOneSegment) {
  std::string data;
  for (int i = 0; i < 100; ++i) data += "a line of CR LF mail\r\n";
  const std::string dotted = data + ".dot\r\n" + data;
  EncodingStream stream(dotted, false, absl::string_view());
  std::vector<absl::string_view> segments;
  absl::StatusOr<bool> more = stream.Next(1 << 20, &segments);
  ASSERT_THAT(more, IsOk());
  EXPECT_FALSE(*more);
  // The run before the dot, the stuffed dot, the run from the dot on.
  ASSERT_EQ(segments.size(), 3u);
  EXPECT_EQ(segments[0], data);
  EXPECT_EQ(segments[1], ".");
  EXPECT_EQ(segments[2], ".dot\r\n" + data);
}

TEST(WireStreamTest, NextIntoMatchesTheModelOnLongLines) {
  // Lines and rooms longer than the 16-octet blocks the encoder copies,
  // with LF, CR LF, dots and every capacity from the minimum up.
  std::mt19937 rng(20261129);
  for (int round = 0; round < 3000; ++round) {
    std::string data;
    const size_t size = rng() % 400;
    while (data.size() < size) {
      if (rng() % 4 == 0) data += '.';
      data += std::string(rng() % 40, 'a');
      const int end = rng() % 8;
      data += end == 0 ? "\r\n" : end == 1 ? "\r" : "\n";
    }
    if (rng() % 2 == 0 && !data.empty()) data.pop_back();  // unterminated
    ExpectMatchesModel(data, /*copy=*/true, 2 + rng() % 100);
    if (HasFatalFailure()) return;
  }
}

TEST(WireStreamTest, PrefersCopyOnlyForBareLfLines) {
  EncodingStream lf("a\nb\n", false, absl::string_view());
  EXPECT_TRUE(lf.PrefersCopy());
  EncodingStream crlf("a\r\nb\n", false, absl::string_view());
  EXPECT_FALSE(crlf.PrefersCopy());  // views of the CR LF run
  EncodingStream clean("a\nb\n", true, absl::string_view());
  EXPECT_FALSE(clean.PrefersCopy());
  EncodingStream empty("", false, absl::string_view());
  EXPECT_FALSE(empty.PrefersCopy());
}

TEST(WireStreamTest, NextIntoRescansNoLongLine) {
  // A 4 MB line through 2-octet buffers: quadratic rescans would take
  // minutes; bounded scans take milliseconds.
  const std::string data = std::string(4 << 20, 'x') + "\n";
  EncodingStream stream(data, false, absl::string_view());
  auto got = DrainInto(&stream, 2);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->size(), data.size() + 1);
}

TEST(WireStreamTest, CleanFastPathSlicesByBudget) {
  const std::string data = std::string(10000, 'a') + "\r\n";
  EncodingStream stream(data, true, absl::string_view());
  std::vector<absl::string_view> segs;
  auto more = stream.Next(4096, &segs);
  ASSERT_THAT(more, IsOk());
  EXPECT_TRUE(*more);
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data(), data.data());  // Zero-copy.
  EXPECT_EQ(segs[0].size(), 4096u);
}

TEST(WireStreamTest, SegmentsPointIntoTheData) {
  // Only the inserted CR LF and dots come from static storage.
  const std::string data = "abc\n.def\r\nghi\r\n";
  EncodingStream stream(data, false, absl::string_view());
  std::vector<absl::string_view> segs;
  ASSERT_THAT(stream.Next(1 << 20, &segs), IsOk());
  size_t from_data = 0;
  for (absl::string_view s : segs) {
    if (s.data() >= data.data() && s.data() < data.data() + data.size()) {
      from_data += s.size();
    }
  }
  EXPECT_EQ(from_data, data.size() - 1);  // All but the bare LF.
}

}  // namespace
}  // namespace popgate::mailbox
