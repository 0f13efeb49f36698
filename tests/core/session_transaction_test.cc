// TRANSACTION and UPDATE states (popa3d-behaviour.md §3.4, §3.5).
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/session.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/session_harness.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core {
namespace {

using ::popgate::testing::FakeMaildrop;
using ::popgate::testing::StatusIs;
using ::testing::ElementsAre;
using testing::Harness;

constexpr absl::string_view kBody1 =
    "Subject: one\r\n\r\nbody line 1\r\nbody line 2\r\n";
constexpr absl::string_view kBody2 =
    "Subject: two\r\nX: y\r\n\r\n..dotted\r\nsecond\r\nthird\r\n";

class TransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(h_.Login(), "+OK\r\n+OK\r\n+OK\r\n");
    ASSERT_TRUE(h_.session().authenticated());
  }
  std::string Send(absl::string_view bytes) { return h_.Send(bytes); }
  FakeMaildrop& drop() { return *h_.drop(); }

  Harness h_;
};

TEST_F(TransactionTest, Stat) {
  EXPECT_EQ(Send("STAT\r\n"), "+OK 3 118\r\n");
  EXPECT_EQ(Send("stat \r\n"), "+OK 3 118\r\n");
  EXPECT_EQ(Send("STAT 1\r\n"), "-ERR Invalid arguments\r\n");
}

TEST_F(TransactionTest, ListAll) {
  EXPECT_EQ(Send("LIST\r\n"), "+OK\r\n1 42\r\n2 47\r\n3 29\r\n.\r\n");
}

TEST_F(TransactionTest, UidlAll) {
  EXPECT_EQ(Send("UIDL\r\n"),
            "+OK\r\n1 aaaaaaaaaaaaaaa1\r\n2 bbbbbbbbbbbbbbb2\r\n"
            "3 ccccccccccccccc3\r\n.\r\n");
  EXPECT_EQ(Send("UIDL 2\r\n"), "+OK 2 bbbbbbbbbbbbbbb2\r\n");
  EXPECT_EQ(Send("UIDL 4\r\n"), "-ERR No such message\r\n");
  EXPECT_EQ(Send("UIDL 1 1\r\n"), "-ERR Invalid arguments\r\n");
}

// Each row names the pop_get_param / pop_get_int rule it probes.
struct ArgCase {
  const char* name;
  std::string line;
  std::string reply;
};

const std::string kSyntax = "-ERR Invalid arguments\r\n";
const std::string kNoSuch = "-ERR No such message\r\n";

std::vector<ArgCase> ListCases() {
  return {
      {"Plain", "LIST 1", "+OK 1 42\r\n"},
      {"PlusSign", "LIST +1", "+OK 1 42\r\n"},
      {"LeadingZero", "LIST 01", "+OK 1 42\r\n"},
      {"LeadingTab", "LIST \t3", "+OK 3 29\r\n"},
      {"OneTrailingSpace", "LIST 1 ", "+OK 1 42\r\n"},
      {"TwoTrailingSpaces", "LIST 1  ", kSyntax},
      {"DoubleSpace", "LIST  1", kSyntax},
      {"TwoArguments", "LIST 1 2", kSyntax},
      {"TwoToThe32Plus1", "LIST 4294967297", kSyntax},
      {"IntMaxNoSuchMessage", "LIST 2147483647", kNoSuch},
      {"IntMaxPlusOne", "LIST 2147483648", kSyntax},
      {"Negative", "LIST -1", kSyntax},
      {"MinusZeroIsZero", "LIST -0", kNoSuch},
      {"TrailingJunk", "LIST 1x", kSyntax},
      {"TrailingTab", "LIST 1\t", kSyntax},
      {"OnlyTab", "LIST \t", kSyntax},
      {"Zero", "LIST 0", kNoSuch},
      {"PastEnd", "LIST 4", kNoSuch},
      {"FortyOctetToken", "LIST " + std::string(39, '0') + "2", "+OK 2 47\r\n"},
      {"FortyOneOctetToken", "LIST " + std::string(40, '0') + "2", kSyntax},
      {"LowercaseKeyword", "list 2", "+OK 2 47\r\n"},
      {"TabAfterKeyword", "LIST\t1", "-ERR Unknown command\r\n"},
      {"TopZeroLines", "TOP 1 0", "+OK\r\nSubject: one\r\n\r\n.\r\n"},
      {"TopMinusZeroLines", "TOP 1 -0", "+OK\r\nSubject: one\r\n\r\n.\r\n"},
      {"TopOneLine", "TOP 1 1",
       "+OK\r\nSubject: one\r\n\r\nbody line 1\r\n.\r\n"},
      {"TopManyLines", "TOP 1 +99", "+OK\r\n" + std::string(kBody1) + ".\r\n"},
      {"TopNegativeLines", "TOP 1 -1", kSyntax},
      {"TopMissingLines", "TOP 1", kSyntax},
      {"TopExtraArgument", "TOP 1 1 1", kSyntax},
      {"TopNoArguments", "TOP", kSyntax},
      {"TopNoSuchMessage", "TOP 4 1", kNoSuch},
      {"RetrNoArgument", "RETR", kSyntax},
      {"RetrOverflow", "RETR 4294967297", kSyntax},
      {"RetrZero", "RETR 0", kNoSuch},
      {"DeleTwoArguments", "DELE 1 1", kSyntax},
      {"DelePastEnd", "DELE 9", kNoSuch},
      {"NoopArgument", "NOOP x", kSyntax},
      {"RsetArgument", "RSET 1", kSyntax},
      {"LastArgument", "LAST 1", kSyntax},
      {"QuitArgument", "QUIT now", kSyntax},
      {"NoopTrailingSpace", "NOOP ", "+OK\r\n"},
      {"UserInTransaction", "USER bob",
       "-ERR Command not valid in this state\r\n"},
      {"PassInTransaction", "PASS x",
       "-ERR Command not valid in this state\r\n"},
      {"Unknown", "XTND", "-ERR Unknown command\r\n"},
      {"Empty", "", "-ERR Unknown command\r\n"},
  };
}

class TransactionArgTest : public ::testing::TestWithParam<ArgCase> {};

TEST_P(TransactionArgTest, Reply) {
  Harness h;
  ASSERT_EQ(h.Login(), "+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_EQ(h.Send(GetParam().line + "\r\n"), GetParam().reply);
  EXPECT_FALSE(h.session().closing());
}

INSTANTIATE_TEST_SUITE_P(Popa3dRules, TransactionArgTest,
                         ::testing::ValuesIn(ListCases()),
                         [](const ::testing::TestParamInfo<ArgCase>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(TransactionTest, RetrSendsBodyThenCheckpointThenDot) {
  EXPECT_EQ(Send("RETR 2\r\n"), "+OK\r\n" + std::string(kBody2) + ".\r\n");
  ASSERT_EQ(drop().retrieve_calls.size(), 1u);
  EXPECT_EQ(drop().retrieve_calls[0].index, 1u);
  EXPECT_FALSE(drop().retrieve_calls[0].top_lines.has_value());
  EXPECT_EQ(drop().check_calls, 1);
  EXPECT_EQ(drop().live_streams(), 0);
}

TEST_F(TransactionTest, TopPassesLineCount) {
  Send("TOP 2 1\r\n");
  ASSERT_EQ(drop().retrieve_calls.size(), 1u);
  EXPECT_EQ(drop().retrieve_calls[0].top_lines, 1u);
  EXPECT_EQ(drop().check_calls, 1);
}

TEST_F(TransactionTest, RetrSmallWindowSameOctets) {
  h_.session().Receive("RETR 2\r\nNOOP\r\n");
  EXPECT_EQ(h_.Drain(/*window=*/3),
            "+OK\r\n" + std::string(kBody2) + ".\r\n+OK\r\n");
}

TEST_F(TransactionTest, StaleAtCheckpointWithholdsFinalDot) {
  drop().check_status = absl::AbortedError("rewritten");
  EXPECT_EQ(Send("RETR 1\r\nNOOP\r\n"), "+OK\r\n" + std::string(kBody1));
  EXPECT_THAT(h_.gather_status(), StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(h_.session().closing());
  EXPECT_EQ(h_.session().end_reason(), EndReason::kStale);
  EXPECT_TRUE(h_.session().output().empty());
}

TEST_F(TransactionTest, CheckpointIoFailureIsServerFailure) {
  drop().check_status = absl::InternalError("EIO");
  EXPECT_EQ(Send("RETR 1\r\n"), "+OK\r\n" + std::string(kBody1));
  EXPECT_EQ(h_.session().end_reason(), EndReason::kServerFailure);
}

TEST_F(TransactionTest, StreamFailureMidBody) {
  drop().stream_status = absl::AbortedError("shrunk");
  drop().stream_fail_after = 10;
  EXPECT_EQ(Send("RETR 1\r\nNOOP\r\n"),
            "+OK\r\n" + std::string(kBody1.substr(0, 10)));
  EXPECT_EQ(h_.session().end_reason(), EndReason::kStale);
  EXPECT_EQ(drop().check_calls, 0);
}

TEST_F(TransactionTest, RetrieveFailureClosesWithoutReply) {
  drop().retrieve_status = absl::AbortedError("stale");
  EXPECT_EQ(Send("NOOP\r\nRETR 1\r\nNOOP\r\n"), "+OK\r\n");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kStale);
}

TEST_F(TransactionTest, RetrieveIoFailureClosesWithoutReply) {
  drop().retrieve_status = absl::DataLossError("corrupt");
  EXPECT_EQ(Send("TOP 1 0\r\n"), "");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kServerFailure);
}

// The sequence popa3d-behaviour.md §3.4 verified on the Debian binary.
TEST_F(TransactionTest, DeleRsetLastSequence) {
  EXPECT_EQ(Send("LAST\r\n"), "+OK 0\r\n");
  EXPECT_EQ(Send("DELE 2\r\n"), "+OK\r\n");
  EXPECT_EQ(Send("DELE 2\r\n"), kNoSuch);
  EXPECT_EQ(Send("LIST 2\r\n"), kNoSuch);
  EXPECT_EQ(Send("UIDL 2\r\n"), kNoSuch);
  EXPECT_EQ(Send("RETR 2\r\n"), kNoSuch);
  EXPECT_EQ(Send("TOP 2 1\r\n"), kNoSuch);
  EXPECT_EQ(Send("STAT\r\n"), "+OK 2 71\r\n");
  EXPECT_EQ(Send("LIST\r\n"), "+OK\r\n1 42\r\n3 29\r\n.\r\n");
  EXPECT_EQ(Send("UIDL\r\n"),
            "+OK\r\n1 aaaaaaaaaaaaaaa1\r\n3 ccccccccccccccc3\r\n.\r\n");
  EXPECT_EQ(Send("LAST\r\n"), "+OK 2\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "+OK\r\n");
  EXPECT_EQ(Send("LAST\r\n"), "+OK 0\r\n");
  EXPECT_EQ(Send("STAT\r\n"), "+OK 3 118\r\n");
  EXPECT_TRUE(drop().retrieve_calls.empty());
}

TEST_F(TransactionTest, LastRaisedByRetrAndDeleNotTop) {
  Send("RETR 3\r\n");
  EXPECT_EQ(Send("LAST\r\n"), "+OK 3\r\n");
  Send("DELE 1\r\n");
  EXPECT_EQ(Send("LAST\r\n"), "+OK 3\r\n");  // max, not latest
  Send("RSET\r\nTOP 2 0\r\n");
  EXPECT_EQ(Send("LAST\r\n"), "+OK 0\r\n");
}

TEST_F(TransactionTest, NoopAndCapaAfterLogin) {
  EXPECT_EQ(Send("NOOP\r\n"), "+OK\r\n");
  EXPECT_EQ(Send("CAPA\r\n"),
            "+OK Capability list follows\r\n"
            "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
            "IMPLEMENTATION popgate\r\n.\r\n");
}

TEST(TransactionCapaTest, NoImplementationWhenEmpty) {
  SessionOptions options;
  options.implementation = "";
  Harness h(options);
  h.Login();
  EXPECT_EQ(h.Send("CAPA\r\n"),
            "+OK Capability list follows\r\n"
            "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n.\r\n");
}

TEST_F(TransactionTest, QuitWithoutDeletionsTouchesNothing) {
  EXPECT_EQ(Send("QUIT\r\nNOOP\r\n"), "+OK\r\n");
  EXPECT_TRUE(drop().commits.empty());
  EXPECT_EQ(h_.session().end_reason(), EndReason::kQuit);
  const Session::UpdateSummary& s = h_.session().update_summary();
  EXPECT_EQ(s.deleted, 0u);
  EXPECT_EQ(s.deleted_bytes, 0u);
  EXPECT_EQ(s.left, 3u);
  EXPECT_EQ(s.left_bytes, 118u);
}

TEST_F(TransactionTest, QuitAfterRsetTouchesNothing) {
  EXPECT_EQ(Send("DELE 1\r\nRSET\r\nQUIT\r\n"), "+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_TRUE(drop().commits.empty());
}

TEST_F(TransactionTest, QuitCommitsSortedDeletions) {
  EXPECT_EQ(Send("DELE 3\r\nDELE 1\r\nQUIT\r\n"), "+OK\r\n+OK\r\n+OK\r\n");
  ASSERT_EQ(drop().commits.size(), 1u);
  EXPECT_THAT(drop().commits[0], ElementsAre(0u, 2u));
  EXPECT_EQ(h_.session().end_reason(), EndReason::kQuit);
  const Session::UpdateSummary& s = h_.session().update_summary();
  EXPECT_EQ(s.deleted, 2u);
  EXPECT_EQ(s.deleted_bytes, 71u);
  EXPECT_EQ(s.left, 1u);
  EXPECT_EQ(s.left_bytes, 47u);
}

TEST_F(TransactionTest, QuitStaleNoReply) {
  drop().commit_status = absl::AbortedError("rewritten");
  EXPECT_EQ(Send("DELE 1\r\nQUIT\r\n"), "+OK\r\n");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kStale);
  EXPECT_EQ(h_.session().update_summary().deleted, 0u);
}

TEST_F(TransactionTest, QuitUpdateFailure) {
  drop().commit_status = absl::UnavailableError("lock");
  EXPECT_EQ(Send("DELE 1\r\nQUIT\r\n"),
            "+OK\r\n-ERR [SYS/TEMP] Failed to update mailbox\r\n");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kUpdateFailed);
}

TEST_F(TransactionTest, EofDiscardsDeletions) {
  EXPECT_EQ(Send("DELE 1\r\n"), "+OK\r\n");
  EXPECT_EQ(h_.Eof(), "");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kPrematureDisconnect);
  EXPECT_TRUE(drop().commits.empty());
}

TEST_F(TransactionTest, EofProcessesFinalLine) {
  h_.session().Receive("DELE 1\r\nQUIT");
  EXPECT_EQ(h_.Drain(), "+OK\r\n");
  EXPECT_EQ(h_.Eof(), "+OK\r\n");
  EXPECT_EQ(h_.session().end_reason(), EndReason::kQuit);
  EXPECT_EQ(drop().commits.size(), 1u);
}

TEST_F(TransactionTest, TimeoutDiscardsDeletions) {
  Send("DELE 1\r\n");
  h_.session().Timeout();
  EXPECT_EQ(h_.session().end_reason(), EndReason::kTimeout);
  EXPECT_EQ(Send("QUIT\r\n"), "");
  EXPECT_TRUE(drop().commits.empty());
}

TEST(EmptyMaildropTest, Popa3dReplies) {
  Harness h;
  h.set_make_drop([] { return std::make_unique<FakeMaildrop>(); });
  h.Login();
  EXPECT_EQ(h.Send("STAT\r\n"), "+OK 0 0\r\n");
  EXPECT_EQ(h.Send("LIST\r\n"), "+OK\r\n.\r\n");
  EXPECT_EQ(h.Send("UIDL\r\n"), "+OK\r\n.\r\n");
  EXPECT_EQ(h.Send("LAST\r\n"), "+OK 0\r\n");
  EXPECT_EQ(h.Send("DELE 1\r\n"), kNoSuch);
  EXPECT_EQ(h.Send("QUIT\r\n"), "+OK\r\n");
  EXPECT_TRUE(h.drop()->commits.empty());
}

TEST(BigMaildropTest, ListIsProducedAsOutputDrains) {
  SessionOptions options;
  options.output_high_water_bytes = 1024;
  Harness h(options);
  constexpr int kMessages = 20000;
  h.set_make_drop([] {
    auto drop = std::make_unique<FakeMaildrop>();
    for (int i = 0; i < kMessages; ++i) drop->Add("x\r\n");
    return drop;
  });
  h.Login();
  h.session().Receive("LIST\r\nNOOP\r\n");
  // Never more than the mark plus one line buffered.
  EXPECT_LE(h.session().output().buffered_bytes(), 1024u + 32u);
  EXPECT_FALSE(h.session().wants_input());
  const std::string list = h.Drain(/*window=*/100);
  std::string want = "+OK\r\n";
  for (int i = 1; i <= kMessages; ++i) want += std::to_string(i) + " 3\r\n";
  want += ".\r\n+OK\r\n";
  EXPECT_EQ(list, want);
  EXPECT_TRUE(h.session().wants_input());
}

}  // namespace
}  // namespace popgate::core

namespace popgate::core {
namespace {

TEST(TransactionEndReasonTest, TimeoutWinsOverLaterCheckpointFailure) {
  testing::Harness h;
  h.Login();
  h.drop()->check_status = absl::AbortedError("stale");
  h.session().Receive("RETR 1\r\n");
  h.session().Timeout();
  h.Drain();
  EXPECT_EQ(h.session().end_reason(), EndReason::kTimeout);
}

TEST(TransactionEndReasonTest, StaleOutranksPrematureDisconnect) {
  testing::Harness h;
  h.Login();
  h.drop()->check_status = absl::AbortedError("stale");
  h.session().Receive("RETR 1\r\n");
  h.session().ReceiveEof();
  EXPECT_EQ(h.session().end_reason(), EndReason::kPrematureDisconnect);
  h.Drain();
  EXPECT_EQ(h.session().end_reason(), EndReason::kStale);
}

}  // namespace
}  // namespace popgate::core
