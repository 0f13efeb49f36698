// Pipelining (RFC 2449), split invariance, backpressure and input bounds.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/session.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/session_harness.h"

namespace popgate::core {
namespace {

using ::popgate::testing::FakeMaildrop;
using testing::Harness;

SessionOptions SmallOptions() {
  SessionOptions options;
  options.max_line_bytes = 40;
  return options;
}

// A whole session with every kind of line, pipelined across PASS.
std::string Script() {
  return std::string("CAPA\r\nuser alice\r\nPASS s3cret pass \r\nSTAT\r\n") +
         "LIST\r\nUIDL 1\r\nRETR 1\r\nTOP 2 1\n" + std::string(100, 'j') +
         std::string("\r\nNO\0OP\r\n", 9) +
         "LIST 4294967297\r\nDELE 1\r\nLAST\r\nRSET\r\n"
         "DELE 2\r\nX\r\r\nQUIT\r\nNOOP\r\n";
}

// Feeds `input` in pieces of `step` octets, settling after each piece.
std::string RunScript(const std::string& input, size_t step, Harness& h) {
  std::string sent = h.Drain();
  for (size_t i = 0; i < input.size(); i += step) {
    sent += h.Send(absl::string_view(input).substr(i, step));
  }
  return sent;
}

TEST(SessionPipeliningTest, WholeSessionInOneReceive) {
  Harness h(SmallOptions());
  const std::string out = RunScript(Script(), Script().size(), h);
  EXPECT_EQ(out,
            "+OK\r\n"
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n"
            "RESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n.\r\n"
            "+OK\r\n"        // USER
            "+OK\r\n"        // PASS
            "+OK 3 118\r\n"  // STAT
            "+OK\r\n1 42\r\n2 47\r\n3 29\r\n.\r\n"
            "+OK 1 aaaaaaaaaaaaaaa1\r\n"
            "+OK\r\nSubject: one\r\n\r\nbody line 1\r\nbody line 2\r\n.\r\n"
            "+OK\r\nSubject: two\r\nX: y\r\n\r\n..dotted\r\n.\r\n"
            "-ERR Line too long\r\n"
            "-ERR NUL byte in command\r\n"
            "-ERR Invalid arguments\r\n"
            "+OK\r\n"                   // DELE 1
            "+OK 1\r\n"                 // LAST
            "+OK\r\n"                   // RSET
            "+OK\r\n"                   // DELE 2
            "-ERR Unknown command\r\n"  // "X\r"
            "+OK\r\n");                 // QUIT
  EXPECT_EQ(h.session().end_reason(), EndReason::kQuit);
  EXPECT_EQ(h.last_password(), "s3cret pass ");
  ASSERT_EQ(h.drop()->commits.size(), 1u);
  EXPECT_THAT(h.drop()->commits[0], ::testing::ElementsAre(1u));
}

TEST(SessionPipeliningTest, ByteByByteSameOutput) {
  Harness whole(SmallOptions());
  const std::string want = RunScript(Script(), Script().size(), whole);
  Harness h(SmallOptions());
  EXPECT_EQ(RunScript(Script(), 1, h), want);
}

TEST(SessionPipeliningTest, SplitAtEveryOffsetSameOutput) {
  Harness whole(SmallOptions());
  const std::string input = Script();
  const std::string want = RunScript(input, input.size(), whole);
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    Harness h(SmallOptions());
    std::string out = h.Drain();
    out += h.Send(absl::string_view(input).substr(0, cut));
    out += h.Send(absl::string_view(input).substr(cut));
    ASSERT_EQ(out, want) << "cut at " << cut;
  }
}

TEST(SessionPipeliningTest, SmallDrainWindowsSameOutput) {
  Harness whole(SmallOptions());
  const std::string want = RunScript(Script(), Script().size(), whole);
  for (size_t window : {1, 2, 7, 100}) {
    Harness h(SmallOptions());
    std::string out = h.Drain(window);
    h.session().Receive(Script());
    while (!h.session().output().empty() ||
           h.session().pending_auth().has_value()) {
      out += h.Drain(window);
      if (h.session().pending_auth().has_value()) {
        auto drop = testing::ThreeMessages();
        h.session().ResolveAuth(AuthVerdict::kOk, std::move(drop));
      }
    }
    EXPECT_EQ(out, want) << window;
  }
}

TEST(SessionPipeliningTest, InputAfterPassWaitsForVerdict) {
  Harness h;
  h.Drain();
  h.session().Receive("USER a\r\nPASS b\r\nSTAT\r\nQUIT\r\n");
  EXPECT_EQ(h.Drain(), "+OK\r\n");  // USER only
  ASSERT_TRUE(h.session().pending_auth().has_value());
  EXPECT_FALSE(h.session().wants_input());
  // More bytes while pending stay buffered, in order.
  h.session().Receive("NOOP\r\n");
  EXPECT_EQ(h.Drain(), "");
  h.session().ResolveAuth(AuthVerdict::kOk, testing::ThreeMessages());
  EXPECT_EQ(h.Drain(), "+OK\r\n+OK 3 118\r\n+OK\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kQuit);
}

TEST(SessionPipeliningTest, DeniedPassDropsPipelinedCommands) {
  Harness h;
  h.set_verdict(AuthVerdict::kDenied);
  h.Drain();
  EXPECT_EQ(h.Send("USER a\r\nPASS b\r\nSTAT\r\nQUIT\r\n"),
            "+OK\r\n-ERR [AUTH] Authentication failed (bad password?)\r\n");
}

TEST(SessionPipeliningTest, EofAfterPipelinedRetrAndQuit) {
  Harness h;
  h.Drain();
  h.session().Receive("USER a\r\nPASS b\r\nRETR 3\r\nQUIT\r\n");
  h.session().ReceiveEof();
  EXPECT_EQ(h.Settle(),
            "+OK\r\n+OK\r\n+OK\r\nSubject: three\r\n\r\nonly line\r\n.\r\n"
            "+OK\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kQuit);
}

TEST(SessionPipeliningTest, EofWhileAuthPending) {
  Harness h;
  h.Drain();
  h.session().Receive("USER a\r\nPASS b\r\nSTAT");
  h.session().ReceiveEof();
  EXPECT_FALSE(h.session().closing());
  EXPECT_EQ(h.Settle(), "+OK\r\n+OK\r\n+OK 3 118\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kPrematureDisconnect);
}

TEST(SessionPipeliningTest, RetrBombQueuesOneBodyAtATime) {
  Harness h;
  h.Login();
  std::string bomb;
  constexpr int kRetrs = 5000;
  for (int i = 0; i < kRetrs; ++i) bomb += "RETR 1\r\n";
  h.session().Receive(bomb);
  EXPECT_EQ(h.drop()->retrieve_calls.size(), 1u);
  EXPECT_EQ(h.drop()->live_streams(), 1);
  EXPECT_FALSE(h.session().wants_input());
  EXPECT_LE(h.session().output().buffered_bytes(), 16u);
  const std::string out = h.Drain();
  EXPECT_EQ(h.drop()->retrieve_calls.size(), size_t{kRetrs});
  EXPECT_EQ(h.drop()->check_calls, kRetrs);
  std::string one =
      "+OK\r\nSubject: one\r\n\r\nbody line 1\r\nbody line 2\r\n.\r\n";
  EXPECT_EQ(out.size(), one.size() * kRetrs);
  EXPECT_TRUE(h.session().wants_input());
}

TEST(SessionPipeliningTest, NoopFloodBoundedByHighWater) {
  SessionOptions options;
  options.output_high_water_bytes = 1024;
  Harness h(options);
  h.Login();
  std::string flood;
  for (int i = 0; i < 10000; ++i) flood += "NOOP\r\n";
  h.session().Receive(flood);
  EXPECT_LE(h.session().output().buffered_bytes(), 1024u + 8u);
  EXPECT_FALSE(h.session().wants_input());
  EXPECT_FALSE(h.session().closing());
  std::string want;
  for (int i = 0; i < 10000; ++i) want += "+OK\r\n";
  EXPECT_EQ(h.Drain(/*window=*/512), want);
  EXPECT_TRUE(h.session().wants_input());
}

TEST(SessionPipeliningTest, InputOverflowWhenDriverIgnoresWantsInput) {
  SessionOptions options;
  options.output_high_water_bytes = 1024;
  options.max_input_buffer_bytes = 64 * 1024;
  Harness h(options);
  h.Login();
  std::string flood;
  for (int i = 0; i < 1000; ++i) flood += "NOOP\r\n";  // 6000 octets
  for (int i = 0; i < 20 && !h.session().closing(); ++i) {
    h.session().Receive(flood);  // never drained
    EXPECT_FALSE(h.session().wants_input());
  }
  EXPECT_TRUE(h.session().closing());
  EXPECT_EQ(h.session().end_reason(), EndReason::kInputOverflow);
}

TEST(SessionPipeliningTest, OneReadPastWantsInputIsFine) {
  SessionOptions options;
  options.output_high_water_bytes = 1024;
  options.max_input_buffer_bytes = 64 * 1024;
  Harness h(options);
  h.Login();
  std::string read;
  while (read.size() + 6 <= options.max_input_buffer_bytes) read += "NOOP\r\n";
  h.session().Receive(read);
  EXPECT_FALSE(h.session().wants_input());
  EXPECT_FALSE(h.session().closing());
  EXPECT_EQ(h.Drain().size(), read.size() / 6 * 5);
}

TEST(SessionPipeliningTest, OverlongJunkStreamUsesNoMemory) {
  Harness h;
  h.Drain();
  const std::string junk(4096, 'x');
  for (int i = 0; i < 1000; ++i) {
    h.session().Receive(junk);
    ASSERT_TRUE(h.session().wants_input());
  }
  EXPECT_EQ(h.Drain(), "-ERR Line too long\r\n");
  EXPECT_EQ(h.Send("\r\nNOOP\r\n"), "-ERR Command not valid in this state\r\n");
}

}  // namespace
}  // namespace popgate::core
