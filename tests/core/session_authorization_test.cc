// AUTHORIZATION state: greeting, USER/PASS/QUIT/CAPA, verdicts, bad commands.
#include <string>

#include "core/session.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/session_harness.h"

namespace popgate::core {
namespace {

using testing::Harness;

TEST(SessionAuthorizationTest, GreetingIsBareOk) {
  Harness h;
  EXPECT_EQ(h.Drain(), "+OK\r\n");
  EXPECT_FALSE(h.session().closing());
  EXPECT_TRUE(h.session().wants_input());
}

TEST(SessionAuthorizationTest, UserPassLogin) {
  Harness h;
  EXPECT_EQ(h.Send("USER alice\r\n"), "+OK\r\n+OK\r\n");
  EXPECT_EQ(h.session().user(), "alice");
  h.session().Receive("PASS secret\r\n");
  ASSERT_TRUE(h.session().pending_auth().has_value());
  EXPECT_EQ(h.session().pending_auth()->user, "alice");
  EXPECT_EQ(h.session().pending_auth()->password, "secret");
  EXPECT_FALSE(h.session().wants_input());
  EXPECT_EQ(h.Drain(), "");  // no reply until the verdict
  EXPECT_EQ(h.Settle(), "+OK\r\n");
  EXPECT_TRUE(h.session().authenticated());
  EXPECT_FALSE(h.session().closing());
}

TEST(SessionAuthorizationTest, UserAcceptsAnyNameWithoutCheck) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("uSeR nosuchuser \r\n"), "+OK\r\n");  // one trailing space
  EXPECT_EQ(h.session().user(), "nosuchuser");
}

TEST(SessionAuthorizationTest, UserArgumentRules) {
  struct Case {
    const char* line;
    bool ok;
  };
  const std::string forty(40, 'u');
  const std::string forty_one(41, 'u');
  const Case cases[] = {
      {"USER", false},          // no parameter
      {"USER ", false},         // empty remainder = no parameter
      {"USER  p3test", false},  // empty token, then an extra one
      {"USER a b", false},      // two parameters
      {"USER a  ", false},      // two trailing spaces
      {"USER\tx", false},       // tab is not a separator: unknown keyword
      {"USER a ", true},        // one trailing space tolerated
  };
  for (const Case& c : cases) {
    Harness h;
    h.Drain();
    const std::string reply = h.Send(std::string(c.line) + "\r\n");
    EXPECT_EQ(reply.substr(0, 3), c.ok ? "+OK" : "-ER") << c.line;
  }
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("USER " + forty + "\r\n"), "+OK\r\n");
  Harness h2;
  h2.Drain();
  EXPECT_EQ(h2.Send("USER " + forty_one + "\r\n").substr(0, 4), "-ERR");
}

TEST(SessionAuthorizationTest, SecondUserRejected) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("USER a\r\nUSER b\r\n"),
            "+OK\r\n-ERR USER already given\r\n");
  EXPECT_EQ(h.session().user(), "a");
}

TEST(SessionAuthorizationTest, PassNeedsUser) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("PASS x\r\n"), "-ERR USER first\r\n");
  EXPECT_EQ(h.auth_requests(), 0);
  EXPECT_FALSE(h.session().closing());
}

TEST(SessionAuthorizationTest, PassTakesRestOfLineWithSpaces) {
  Harness h;
  h.Drain();
  h.Send("USER a\r\nPASS  two  words \r\n");
  EXPECT_EQ(h.last_password(), " two  words ");
}

TEST(SessionAuthorizationTest, PassLongerThanFortyOctetsAllowed) {
  Harness h;
  h.Drain();
  const std::string password(200, 'p');
  h.Send("USER a\r\nPASS " + password + "\r\n");
  EXPECT_EQ(h.last_password(), password);
}

TEST(SessionAuthorizationTest, EmptyPassRejected) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("USER a\r\nPASS\r\nPASS \r\n"),
            "+OK\r\n-ERR Invalid arguments\r\n-ERR Invalid arguments\r\n");
  EXPECT_EQ(h.auth_requests(), 0);
}

TEST(SessionAuthorizationTest, QuitBeforeLogin) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("QUIT\r\nNOOP\r\n"), "+OK\r\n");
  EXPECT_TRUE(h.session().closing());
  EXPECT_EQ(h.session().end_reason(), EndReason::kNoAuthAttempt);
  EXPECT_FALSE(h.session().wants_input());
  // Once closing, input is ignored.
  EXPECT_EQ(h.Send("NOOP\r\n"), "");
}

TEST(SessionAuthorizationTest, QuitWithArgumentRejected) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("QUIT now\r\n"), "-ERR Invalid arguments\r\n");
  EXPECT_FALSE(h.session().closing());
}

TEST(SessionAuthorizationTest, TransactionCommandsRejectedBeforeLogin) {
  for (const char* line : {"STAT", "LIST", "UIDL", "RETR 1", "TOP 1 1",
                           "DELE 1", "RSET", "LAST", "NOOP"}) {
    Harness h;
    h.Drain();
    EXPECT_EQ(h.Send(std::string(line) + "\r\n"),
              "-ERR Command not valid in this state\r\n")
        << line;
  }
}

TEST(SessionAuthorizationTest, UnknownCommands) {
  for (const char* line :
       {"APOP a b", "AUTH", "AUTH PLAIN", "STLS", "", "XYZZY", "USER\tx"}) {
    Harness h;
    h.Drain();
    EXPECT_EQ(h.Send(std::string(line) + "\r\n"), "-ERR Unknown command\r\n")
        << line;
  }
}

TEST(SessionAuthorizationTest, CapaBeforeLogin) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send("CAPA\r\n"),
            "+OK Capability list follows\r\n"
            "TOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\nPIPELINING\r\n"
            "AUTH-RESP-CODE\r\n.\r\n");
  EXPECT_EQ(h.Send("capa x\r\n"), "-ERR Invalid arguments\r\n");
}

TEST(SessionAuthorizationTest, CapaDisabledIsUnknown) {
  SessionOptions options;
  options.capa = false;
  Harness h(options);
  h.Drain();
  EXPECT_EQ(h.Send("CAPA\r\n"), "-ERR Unknown command\r\n");
}

TEST(SessionAuthorizationTest, DeniedClosesWithOneAttempt) {
  Harness h;
  h.set_verdict(AuthVerdict::kDenied);
  EXPECT_EQ(
      h.Login(),
      "+OK\r\n+OK\r\n-ERR [AUTH] Authentication failed (bad password?)\r\n");
  EXPECT_TRUE(h.session().closing());
  EXPECT_EQ(h.session().end_reason(), EndReason::kAuthFailed);
  EXPECT_EQ(h.session().user(), "alice");  // for the log line
}

TEST(SessionAuthorizationTest, DeniedWithMoreAttemptsAllowed) {
  SessionOptions options;
  options.max_auth_attempts = 2;
  Harness h(options);
  h.set_verdict(AuthVerdict::kDenied);
  h.Drain();
  EXPECT_EQ(h.Send("USER a\r\nPASS x\r\nPASS y\r\n"),
            "+OK\r\n-ERR [AUTH] Authentication failed (bad password?)\r\n"
            "-ERR USER first\r\n");
  EXPECT_FALSE(h.session().closing());
  EXPECT_EQ(h.Send("USER b\r\nPASS z\r\nNOOP\r\n"),
            "+OK\r\n-ERR [AUTH] Authentication failed (bad password?)\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kAuthFailed);
  EXPECT_EQ(h.auth_requests(), 2);
}

TEST(SessionAuthorizationTest, OtherVerdictsReplyWithCodeAndClose) {
  struct Case {
    AuthVerdict verdict;
    const char* reply;
  };
  const Case cases[] = {
      {AuthVerdict::kTempFailure,
       "-ERR [SYS/TEMP] Temporary failure, try again later\r\n"},
      {AuthVerdict::kInUse,
       "-ERR [IN-USE] Mailbox is locked by another session\r\n"},
      {AuthVerdict::kLoadFailed, "-ERR [SYS/PERM] Unable to open mailbox\r\n"},
  };
  for (const Case& c : cases) {
    Harness h;
    h.set_verdict(c.verdict);
    h.Drain();
    EXPECT_EQ(h.Send("USER a\r\nPASS b\r\nSTAT\r\n"),
              std::string("+OK\r\n") + c.reply);
    EXPECT_EQ(h.session().end_reason(), EndReason::kServerFailure);
  }
}

TEST(SessionAuthorizationTest, ResolveAuthIgnoredAfterTimeout) {
  Harness h;
  h.Drain();
  h.session().Receive("USER a\r\nPASS b\r\n");
  ASSERT_TRUE(h.session().pending_auth().has_value());
  EXPECT_EQ(h.Drain(), "+OK\r\n");
  h.session().Timeout();
  EXPECT_EQ(h.session().end_reason(), EndReason::kTimeout);
  auto drop = testing::ThreeMessages();
  h.session().ResolveAuth(AuthVerdict::kOk, std::move(drop));
  EXPECT_EQ(h.Drain(), "");
  EXPECT_FALSE(h.session().authenticated());
  EXPECT_FALSE(h.session().pending_auth().has_value());
}

TEST(SessionAuthorizationTest, TimeoutClosesSilently) {
  Harness h;
  h.Drain();
  h.session().Timeout();
  EXPECT_EQ(h.session().end_reason(), EndReason::kTimeout);
  EXPECT_EQ(h.Send("QUIT\r\n"), "");
}

TEST(SessionAuthorizationTest, EofBeforeLogin) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Eof(), "");
  EXPECT_EQ(h.session().end_reason(), EndReason::kNoAuthAttempt);
}

TEST(SessionAuthorizationTest, FinalUnterminatedLineProcessedAtEof) {
  Harness h;
  h.Drain();
  h.session().Receive("QUIT");
  EXPECT_EQ(h.Drain(), "");
  EXPECT_EQ(h.Eof(), "+OK\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kNoAuthAttempt);
}

TEST(SessionAuthorizationTest, NulAnywhereIsBadCommand) {
  Harness h;
  h.Drain();
  EXPECT_EQ(h.Send(std::string("USER a\0b\r\n", 10)),
            "-ERR NUL byte in command\r\n");
  EXPECT_EQ(h.session().user(), "");
  EXPECT_EQ(h.Send(std::string("USER a\r\nPASS x\0y\r\n", 18)),
            "+OK\r\n-ERR NUL byte in command\r\n");
  EXPECT_EQ(h.auth_requests(), 0);
}

TEST(SessionAuthorizationTest, OverlongLineOneReplyThenUsable) {
  Harness h;
  h.Drain();
  std::string junk(1000, 'x');
  EXPECT_EQ(h.Send(junk + "\r\nQUIT\r\n"), "-ERR Line too long\r\n+OK\r\n");
}

TEST(SessionAuthorizationTest, LineAtCapAccepted) {
  SessionOptions options;
  options.max_line_bytes = 20;
  Harness h(options);
  h.Drain();
  // "PASS " + 15 octets = 20: accepted; one more is too long.
  EXPECT_EQ(h.Send("USER a\r\nPASS " + std::string(16, 'p') + "\r\n"),
            "+OK\r\n-ERR Line too long\r\n");
  h.Send("PASS " + std::string(15, 'p') + "\r\n");
  EXPECT_EQ(h.last_password(), std::string(15, 'p'));
}

TEST(SessionAuthorizationTest, BadCommandCap) {
  SessionOptions options;
  options.max_bad_commands = 3;
  Harness h(options);
  h.Drain();
  EXPECT_EQ(h.Send("A\r\nB\r\n" + std::string(500, 'x') + "\r\n"),
            "-ERR Unknown command\r\n-ERR Unknown command\r\n"
            "-ERR Line too long\r\n");
  EXPECT_FALSE(h.session().closing());
  EXPECT_EQ(h.Send("USER a\r\nD\r\nNOOP\r\n"),
            "+OK\r\n-ERR Too many bad commands\r\n");
  EXPECT_EQ(h.session().end_reason(), EndReason::kTooManyBadCommands);
}

TEST(SessionAuthorizationTest, NegativeCapMeansUnlimitedLikePopa3d) {
  SessionOptions options;
  options.max_bad_commands = -1;
  Harness h(options);
  h.Drain();
  std::string input;
  for (int i = 0; i < 1000; ++i) input += "BAD\r\n";
  h.Send(input);
  EXPECT_FALSE(h.session().closing());
}

}  // namespace
}  // namespace popgate::core
