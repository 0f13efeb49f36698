// ReplyParser: table-driven cases named for the boundary they probe, each fed
// whole, byte by byte, and split at every offset.
#include "tools/flood/reply_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

struct Case {
  const char* name;
  bool multi_line;
  std::string input;  // one reply, possibly followed by the next one
  ReplyParser::State state;
  bool ok;
  std::string text;
  std::string body;  // unstuffed
  uint32_t defects;
  size_t consumed;  // bytes of `input` that belong to this reply
};

std::vector<Case> Cases() {
  return {
      {"single_ok", false, "+OK hello\r\n", ReplyParser::State::kDone, true,
       "hello", "", 0, 11},
      {"single_err", false, "-ERR no\r\n", ReplyParser::State::kDone, false,
       "no", "", 0, 9},
      {"bare_ok_no_text", false, "+OK\r\n", ReplyParser::State::kDone, true, "",
       "", 0, 5},
      {"stops_at_reply_end", false, "+OK a\r\n+OK b\r\n",
       ReplyParser::State::kDone, true, "a", "", 0, 7},
      {"multi_empty_body", true, "+OK 0 messages\r\n.\r\n",
       ReplyParser::State::kDone, true, "0 messages", "", 0, 19},
      {"multi_body", true, "+OK\r\nline 1\r\nline 2\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "line 1\r\nline 2\r\n", 0, 24},
      {"multi_err_has_no_body", true, "-ERR no such message\r\n.\r\n",
       ReplyParser::State::kDone, false, "no such message", "", 0, 22},
      {"dot_stuffed_line", true, "+OK\r\n..hidden\r\n.\r\n",
       ReplyParser::State::kDone, true, "", ".hidden\r\n", 0, 18},
      {"dot_only_line_stuffed", true, "+OK\r\n..\r\n.\r\n",
       ReplyParser::State::kDone, true, "", ".\r\n", 0, 12},
      {"empty_lines", true, "+OK\r\n\r\n\r\n.\r\n", ReplyParser::State::kDone,
       true, "", "\r\n\r\n", 0, 12},
      {"lone_cr_in_line_is_data", true, "+OK\r\na\rb\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "a\rb\r\n", 0, 13},
      {"crcrlf_keeps_first_cr", true, "+OK\r\na\r\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "a\r\r\n", 0, 12},
      {"dot_in_middle_not_stuffed", true, "+OK\r\na.b\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "a.b\r\n", 0, 13},
      {"unstuffed_dot_flagged", true, "+OK\r\n.oops\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "oops\r\n", kDefectUnstuffedDot,
       15},
      {"bare_lf_in_body", true, "+OK\r\nabc\n.\r\n", ReplyParser::State::kDone,
       true, "", "abc\r\n", kDefectBareLf, 12},
      {"bare_lf_terminator", true, "+OK\r\nabc\r\n.\n",
       ReplyParser::State::kDone, true, "", "abc\r\n", kDefectBareLf, 12},
      {"bare_lf_status", false, "+OK hi\n", ReplyParser::State::kDone, true,
       "hi", "", kDefectBareLf, 7},
      {"bad_status", false, "HELLO\r\n", ReplyParser::State::kError, false, "",
       "", kDefectBadStatus, 7},
      {"ok_without_space", false, "+OKAY\r\n", ReplyParser::State::kError,
       false, "", "", kDefectBadStatus, 7},
      {"overlong_status", false, "+OK " + std::string(600, 'x') + "\r\n",
       ReplyParser::State::kError, false, "", "", kDefectOverlongStatus, 511},
      {"incomplete_status", false, "+OK waiting", ReplyParser::State::kNeedMore,
       false, "", "", 0, 11},
      {"incomplete_body", true, "+OK\r\npartial\r\n",
       ReplyParser::State::kNeedMore, true, "", "partial\r\n", 0, 14},
      {"dot_cr_not_terminator", true, "+OK\r\n.\rx\r\n.\r\n",
       ReplyParser::State::kDone, true, "", "\rx\r\n", kDefectUnstuffedDot, 13},
  };
}

// Feeds `chunks` in order; returns total consumed.
size_t FeedChunks(ReplyParser& p, const std::vector<std::string>& chunks) {
  size_t consumed = 0;
  for (const std::string& chunk : chunks) {
    if (p.state() != ReplyParser::State::kNeedMore) break;
    consumed += p.Feed(chunk);
  }
  return consumed;
}

void Expect(const Case& c, ReplyParser& p, size_t consumed,
            const std::string& how) {
  SCOPED_TRACE(std::string(c.name) + " " + how);
  EXPECT_EQ(p.state(), c.state);
  EXPECT_EQ(consumed, c.consumed);
  EXPECT_EQ(p.defects(), c.defects);
  if (c.state == ReplyParser::State::kDone) {
    EXPECT_EQ(p.ok(), c.ok);
    EXPECT_EQ(p.status_text(), c.text);
  }
  EXPECT_EQ(p.body(), c.body);
  EXPECT_EQ(p.body_octets(), c.body.size());
  EXPECT_EQ(p.wire_octets(), consumed);
}

TEST(ReplyParserTest, Whole) {
  for (const Case& c : Cases()) {
    ReplyParser p;
    p.Start(c.multi_line, /*capture_body=*/true);
    Expect(c, p, FeedChunks(p, {c.input}), "whole");
  }
}

TEST(ReplyParserTest, ByteByByte) {
  for (const Case& c : Cases()) {
    ReplyParser p;
    p.Start(c.multi_line, true);
    std::vector<std::string> bytes;
    for (char ch : c.input) bytes.emplace_back(1, ch);
    Expect(c, p, FeedChunks(p, bytes), "bytewise");
  }
}

TEST(ReplyParserTest, SplitAtEveryOffset) {
  for (const Case& c : Cases()) {
    for (size_t cut = 0; cut <= c.input.size(); ++cut) {
      ReplyParser p;
      p.Start(c.multi_line, true);
      const size_t consumed =
          FeedChunks(p, {c.input.substr(0, cut), c.input.substr(cut)});
      Expect(c, p, consumed, "cut at " + std::to_string(cut));
    }
  }
}

TEST(ReplyParserTest, CountsWithoutCapturing) {
  ReplyParser p;
  p.Start(/*multi_line=*/true, /*capture_body=*/false);
  const std::string reply = "+OK 12 octets\r\n..ab\r\ncdef\r\n.\r\n";
  EXPECT_EQ(p.Feed(reply), reply.size());
  EXPECT_EQ(p.state(), ReplyParser::State::kDone);
  EXPECT_EQ(p.body(), "");
  EXPECT_EQ(p.body_octets(), 11u);  // ".ab\r\n" + "cdef\r\n": stuffing dropped
  EXPECT_EQ(p.body_lines(), 2u);
}

TEST(ReplyParserTest, CaptureCapFlagsOverflowButKeepsCounting) {
  ReplyParser p;
  p.Start(true, true, /*capture_cap=*/8);
  const std::string reply = "+OK\r\n1 100\r\n2 200\r\n.\r\n";
  EXPECT_EQ(p.Feed(reply), reply.size());
  EXPECT_EQ(p.state(), ReplyParser::State::kDone);
  EXPECT_TRUE(p.defects() & kDefectCaptureOverflow);
  EXPECT_EQ(p.body_octets(), 14u);
}

TEST(ReplyParserTest, RestartResetsEverything) {
  ReplyParser p;
  p.Start(true, true);
  p.Feed("+OK\r\n.x\r\n.\r\n");
  ASSERT_NE(p.defects(), 0u);
  p.Start(false, false);
  EXPECT_EQ(p.Feed("-ERR x\r\n"), 8u);
  EXPECT_EQ(p.defects(), 0u);
  EXPECT_EQ(p.body_octets(), 0u);
  EXPECT_FALSE(p.ok());
}

}  // namespace
}  // namespace popgate::flood
