#include "core/line_reader.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace popgate::core {
namespace {

using ::testing::ElementsAre;

constexpr size_t kCap = 10;

// Feeds `input` in pieces of `step` octets (0 = whole), then EOF if asked;
// returns every event, "<too long>" for overlong lines.
std::vector<std::string> Lines(const std::string& input, size_t step,
                               bool eof = false, size_t cap = kCap) {
  LineReader reader(cap);
  std::vector<std::string> lines;
  auto drain = [&] {
    while (auto line = reader.Next()) {
      lines.push_back(line->too_long ? "<too long>" : std::string(line->text));
    }
  };
  if (step == 0) step = input.size() + 1;
  for (size_t i = 0; i < input.size(); i += step) {
    reader.Append(absl::string_view(input).substr(i, step));
    drain();
  }
  if (eof) {
    reader.Finish();
    drain();
    EXPECT_TRUE(reader.exhausted());
  }
  return lines;
}

TEST(LineReaderTest, CrLfAndBareLf) {
  EXPECT_THAT(Lines("a\r\nb\nc\r\n", 0), ElementsAre("a", "b", "c"));
}

TEST(LineReaderTest, StripsExactlyOneCr) {
  EXPECT_THAT(Lines("x\r\r\n", 0), ElementsAre("x\r"));
  EXPECT_THAT(Lines("a\rb\n", 0), ElementsAre("a\rb"));
}

TEST(LineReaderTest, EmptyLines) {
  EXPECT_THAT(Lines("\r\n\n", 0), ElementsAre("", ""));
}

TEST(LineReaderTest, PartialLineWaits) {
  EXPECT_THAT(Lines("NOOP", 0), ElementsAre());
}

TEST(LineReaderTest, FinalUnterminatedLineAtEof) {
  EXPECT_THAT(Lines("a\nQUIT", 0, /*eof=*/true), ElementsAre("a", "QUIT"));
  EXPECT_THAT(Lines("a\n", 0, /*eof=*/true), ElementsAre("a"));
}

TEST(LineReaderTest, CapExactlyAccepted) {
  const std::string line(kCap, 'x');
  EXPECT_THAT(Lines(line + "\r\n", 0), ElementsAre(line));
  EXPECT_THAT(Lines(line + "\r\n", 1), ElementsAre(line));
  EXPECT_THAT(Lines(line + "\n", 1), ElementsAre(line));
}

TEST(LineReaderTest, CapPlusOneIsOneTooLongEvent) {
  const std::string line(kCap + 1, 'x');
  for (size_t step : {0, 1, 2, 3, 7}) {
    EXPECT_THAT(Lines(line + "\r\nNOOP\r\n", step),
                ElementsAre("<too long>", "NOOP"))
        << step;
  }
}

TEST(LineReaderTest, HugeLineNeverSplitIntoCommands) {
  std::string junk;
  for (int i = 0; i < 100; ++i) junk += "QUIT ";
  for (size_t step : {0, 1, 5, 64}) {
    EXPECT_THAT(Lines(junk + "\nNOOP\n", step),
                ElementsAre("<too long>", "NOOP"))
        << step;
  }
}

TEST(LineReaderTest, OverlongMemoryBounded) {
  LineReader reader(kCap);
  int events = 0;
  for (int i = 0; i < 10000; ++i) {
    reader.Append(std::string(100, 'a'));
    while (auto line = reader.Next()) ++events;
    EXPECT_LE(reader.buffered_bytes(), kCap + 1);
  }
  EXPECT_EQ(events, 1);
  reader.Append("\nNOOP\n");
  auto line = reader.Next();
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->text, "NOOP");
}

TEST(LineReaderTest, OverlongUnterminatedAtEof) {
  EXPECT_THAT(Lines(std::string(kCap + 1, 'a'), 0, /*eof=*/true),
              ElementsAre("<too long>"));
  EXPECT_THAT(Lines(std::string(kCap + 5, 'a'), 0, /*eof=*/true),
              ElementsAre("<too long>"));
}

TEST(LineReaderTest, NothingAfterFinish) {
  LineReader reader(kCap);
  reader.Finish();
  reader.Append("NOOP\n");
  EXPECT_FALSE(reader.Next().has_value());
  EXPECT_TRUE(reader.exhausted());
}

TEST(LineReaderTest, SplitAtEveryOffsetSameLines) {
  const std::string input =
      "USER a\r\nPASS b c\r\n" + std::string(30, 'z') + "\r\nx\r\r\n\nLIST 1\n";
  const std::vector<std::string> whole = Lines(input, 0);
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    LineReader reader(kCap);
    std::vector<std::string> lines;
    for (absl::string_view piece : {absl::string_view(input).substr(0, cut),
                                    absl::string_view(input).substr(cut)}) {
      reader.Append(piece);
      while (auto line = reader.Next()) {
        lines.push_back(line->too_long ? "<too long>"
                                       : std::string(line->text));
      }
    }
    EXPECT_EQ(lines, whole) << "cut at " << cut;
  }
}

}  // namespace
}  // namespace popgate::core

namespace popgate::core {
namespace {

TEST(LineReaderTest, WipeConsumedKeepsPendingLines) {
  LineReader reader(kCap);
  reader.Append("PASS x\r\nNOOP\r\nST");
  auto pass = reader.Next();
  ASSERT_TRUE(pass.has_value());
  EXPECT_EQ(pass->text, "PASS x");
  reader.WipeConsumed();
  auto noop = reader.Next();
  ASSERT_TRUE(noop.has_value());
  EXPECT_EQ(noop->text, "NOOP");
  reader.WipeConsumed();
  reader.Append("AT\n");
  auto stat = reader.Next();
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->text, "STAT");
}

}  // namespace
}  // namespace popgate::core
