// RunSession over a socketpair, in a forked child (so the privilege drop is
// real when we are root and never touches the test process). The child logs
// into a pipe the parent reads after it exits.
#include "net/session_process.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "gtest/gtest.h"
#include "net/unique_fd.h"
#include "tests/fakes/fake_maildrop.h"

namespace popgate::net {
namespace {

using core::auth::AuthenticatedUser;

// Writes "<severity>|<message>\n" per line into a pipe.
class PipeLogSink : public core::LogSink {
 public:
  explicit PipeLogSink(int fd) : fd_(fd) {}
  void Send(core::Severity severity, absl::string_view message) override {
    std::string line =
        absl::StrCat(core::SeverityName(severity), "|", message, "\n");
    (void)!::write(fd_, line.data(), line.size());
  }

 private:
  int fd_;
};

uid_t TargetUid() { return ::geteuid() == 0 ? 65534 : ::geteuid(); }
gid_t TargetGid() { return ::geteuid() == 0 ? 65534 : ::getegid(); }

class FakeAuthenticator : public core::auth::Authenticator {
 public:
  uid_t uid = TargetUid();
  absl::StatusOr<AuthenticatedUser> Authenticate(absl::string_view user,
                                                 absl::string_view password,
                                                 bool* known_user) override {
    const bool known = user == "alice" || user == "bob";
    if (known_user) *known_user = known;
    if (user == "broken") return absl::UnavailableError("backend down");
    if (user == "alice" && password == "secret") {
      return AuthenticatedUser{"alice", uid, TargetGid(), "/nonexistent"};
    }
    return absl::PermissionDeniedError("no");
  }
};

struct Result {
  std::string transcript;  // everything the server sent
  std::string log;         // "<severity>|<message>" lines
  int exit_status = -1;
};

class SessionProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/popgate_sess_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    env_.authenticator = &auth_;
    env_.state_dir = dir_ + "/state";
    env_.idle_timeout = absl::Seconds(10);
    env_.write_timeout = absl::Seconds(10);
    env_.mail_path =
        [](const AuthenticatedUser& u) -> absl::StatusOr<std::string> {
      return absl::StrCat("/var/mail/", u.name);
    };
    env_.open_maildrop = [this](const std::string&, const std::string&)
        -> absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> {
      if (!open_status_.ok()) return open_status_;
      auto drop = std::make_unique<testing::FakeMaildrop>();
      for (const std::string& m : messages_) drop->Add(m);
      return std::unique_ptr<mailbox::Maildrop>(std::move(drop));
    };
  }
  void TearDown() override {
    (void)::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }

  // Forks the session, sends `input` (then half-closes if `half_close`),
  // reads until EOF unless `read_reply` is false.
  Result Run(const std::string& input, bool half_close = true,
             bool read_reply = true) {
    Result result;
    int sv[2];
    int logpipe[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    EXPECT_EQ(::pipe2(logpipe, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(sv[0]);
      ::close(logpipe[0]);
      PipeLogSink sink(logpipe[1]);
      core::SetLogSink(&sink);
      const int rc = RunSession(sv[1], sv[1], env_);
      ::_exit(rc);
    }
    ::close(sv[1]);
    ::close(logpipe[1]);
    UniqueFd client(sv[0]);
    UniqueFd log(logpipe[0]);
    if (!input.empty()) {
      EXPECT_EQ(::write(client.get(), input.data(), input.size()),
                static_cast<ssize_t>(input.size()));
    }
    if (half_close) ::shutdown(client.get(), SHUT_WR);
    char buf[65536];
    if (read_reply) {
      for (;;) {
        const ssize_t n = ::read(client.get(), buf, sizeof(buf));
        if (n <= 0) break;
        result.transcript.append(buf, static_cast<size_t>(n));
      }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    client.Reset();
    for (;;) {
      const ssize_t n = ::read(log.get(), buf, sizeof(buf));
      if (n <= 0) break;
      result.log.append(buf, static_cast<size_t>(n));
    }
    return result;
  }

  std::string dir_;
  FakeAuthenticator auth_;
  SessionEnvironment env_;
  absl::Status open_status_;
  std::vector<std::string> messages_ = {"Subject: a\r\n\r\nhello\r\n",
                                        "Subject: b\r\n\r\nworld\r\n"};
};

TEST_F(SessionProcessTest, LoginRetrDeleQuit) {
  Result r =
      Run("USER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n");
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_TRUE(
      absl::StartsWith(r.transcript, "+OK\r\n+OK\r\n+OK\r\n+OK 2 42\r\n"))
      << r.transcript;
  EXPECT_TRUE(
      absl::StrContains(r.transcript, "Subject: a\r\n\r\nhello\r\n.\r\n"))
      << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "info|Authentication passed for alice"))
      << r.log;
  EXPECT_TRUE(absl::StrContains(r.log, "info|2 messages (42 bytes) loaded"))
      << r.log;
  EXPECT_TRUE(absl::StrContains(r.log, "info|1 (21) deleted, 1 (21) left"))
      << r.log;
}

TEST_F(SessionProcessTest, UnknownUserNeverLogged) {
  Result r = Run("USER mallory\r\nPASS hunter2\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR")) << r.transcript;
  EXPECT_TRUE(
      absl::StrContains(r.log, "notice|Authentication failed for UNKNOWN USER"))
      << r.log;
  EXPECT_FALSE(absl::StrContains(r.log, "mallory")) << r.log;
  EXPECT_FALSE(absl::StrContains(r.log, "hunter2")) << r.log;
}

TEST_F(SessionProcessTest, KnownUserWrongPasswordLogsName) {
  Result r = Run("USER bob\r\nPASS wrong\r\n");
  EXPECT_TRUE(absl::StrContains(r.log, "notice|Authentication failed for bob"))
      << r.log;
  EXPECT_FALSE(absl::StrContains(r.log, "wrong")) << r.log;
}

TEST_F(SessionProcessTest, BackendFailureIsTemporary) {
  Result r = Run("USER broken\r\nPASS x\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR [SYS/TEMP]"))
      << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "crit|")) << r.log;
  EXPECT_FALSE(absl::StrContains(r.log, "Server failure")) << r.log;
}

TEST_F(SessionProcessTest, EofBeforeAuth) {
  Result r = Run("USER alice\r\n");
  EXPECT_EQ(r.transcript, "+OK\r\n+OK\r\n");
  EXPECT_TRUE(absl::StrContains(r.log, "info|Didn't attempt authentication"))
      << r.log;
}

TEST_F(SessionProcessTest, PrematureDisconnectAfterLogin) {
  Result r = Run("USER alice\r\nPASS secret\r\nSTAT\r\n");
  EXPECT_TRUE(absl::StrContains(r.log, "info|Premature disconnect")) << r.log;
}

TEST_F(SessionProcessTest, LockedMailboxIsInUse) {
  open_status_ = absl::UnavailableError("locked");
  Result r = Run("USER alice\r\nPASS secret\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR [IN-USE]")) << r.transcript;
  EXPECT_TRUE(absl::StrContains(
      r.log, "notice|Failed or refused to load /var/mail/alice"))
      << r.log;
  EXPECT_FALSE(absl::StrContains(r.log, "Server failure")) << r.log;
}

TEST_F(SessionProcessTest, CorruptMailboxRefused) {
  open_status_ = absl::DataLossError("bad");
  Result r = Run("USER alice\r\nPASS secret\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR [SYS/PERM]"))
      << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "Failed or refused to load")) << r.log;
}

TEST_F(SessionProcessTest, UidZeroNeverServed) {
  auth_.uid = 0;
  Result r = Run("USER alice\r\nPASS secret\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR")) << r.transcript;
  EXPECT_FALSE(absl::StrContains(r.log, "Authentication passed")) << r.log;
}

TEST_F(SessionProcessTest, NonRootServesOnlyItself) {
  if (::geteuid() == 0) GTEST_SKIP() << "non-root behaviour";
  auth_.uid = ::geteuid() + 1;
  Result r = Run("USER alice\r\nPASS secret\r\n");
  EXPECT_TRUE(absl::StrContains(r.transcript, "-ERR [SYS/TEMP]"))
      << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "crit|Not running as root")) << r.log;
}

TEST_F(SessionProcessTest, IdleTimeoutBeforeAuthIsNoAttempt) {
  env_.idle_timeout = absl::Milliseconds(200);
  Result r = Run("USER alice\r\n", /*half_close=*/false);
  EXPECT_EQ(r.transcript, "+OK\r\n+OK\r\n");
  EXPECT_TRUE(absl::StrContains(r.log, "info|Didn't attempt authentication"))
      << r.log;
}

TEST_F(SessionProcessTest, IdleTimeoutInTransaction) {
  env_.idle_timeout = absl::Milliseconds(200);
  Result r = Run("USER alice\r\nPASS secret\r\n", /*half_close=*/false);
  EXPECT_EQ(r.transcript, "+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_TRUE(absl::StrContains(r.log, "info|Connection timed out")) << r.log;
}

TEST_F(SessionProcessTest, WriteTimeoutWhenClientStopsReading) {
  env_.write_timeout = absl::Milliseconds(300);
  messages_ = {std::string(8 << 20, 'x') + "\r\n"};
  // Never read: the 8 MiB body can't fit the socket buffers.
  Result r =
      Run("USER alice\r\nPASS secret\r\nRETR 1\r\n", /*half_close=*/false,
          /*read_reply=*/false);
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_TRUE(absl::StrContains(r.log, "info|Connection timed out")) << r.log;
}

TEST_F(SessionProcessTest, PipelinedCommandsAfterHalfCloseAreAnswered) {
  std::string input = "USER alice\r\nPASS secret\r\n";
  for (int i = 0; i < 200; ++i) input += "NOOP\r\n";
  input += "QUIT\r\n";
  Result r = Run(input);
  size_t oks = 0;
  for (size_t pos = 0;
       (pos = r.transcript.find("+OK", pos)) != std::string::npos; ++pos) {
    ++oks;
  }
  EXPECT_EQ(oks, 1u + 2u + 200u + 1u) << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "0 (0) deleted, 2 (42) left")) << r.log;
}

TEST_F(SessionProcessTest, SecondAttemptAfterFailureGreetsOnce) {
  env_.session_options.max_auth_attempts = 2;
  Result r =
      Run("USER bob\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\n"
          "STAT\r\nQUIT\r\n");
  EXPECT_EQ(r.transcript.rfind("+OK\r\n+OK\r\n-ERR", 0), 0u) << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.transcript, "+OK\r\n+OK 2 42\r\n+OK"))
      << r.transcript;
  EXPECT_TRUE(absl::StrContains(r.log, "Authentication failed for bob"))
      << r.log;
  EXPECT_TRUE(absl::StrContains(r.log, "Authentication passed for alice"))
      << r.log;
}

// As root, AUTHORIZATION runs in a child chrooted to <state_dir>/empty as an
// unprivileged account (popa3d's privilege separation).
TEST_F(SessionProcessTest, PreauthRunsJailedAndUnprivileged) {
  if (::geteuid() != 0) GTEST_SKIP() << "privilege separation needs root";
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    ::_exit(RunSession(sv[1], sv[1], env_));
  }
  ::close(sv[1]);
  UniqueFd client(sv[0]);
  const std::string hello = "USER alice\r\n";
  ASSERT_EQ(::write(client.get(), hello.data(), hello.size()),
            static_cast<ssize_t>(hello.size()));
  std::string got;
  char buf[64];
  while (got.size() < 10) {
    const ssize_t n = ::read(client.get(), buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, "+OK\r\n+OK\r\n");
  // The session process (root) has exactly one child: the jailed parser.
  std::string children;
  {
    FILE* f = ::fopen(
        absl::StrCat("/proc/", pid, "/task/", pid, "/children").c_str(), "r");
    ASSERT_NE(f, nullptr);
    char line[256] = {0};
    if (::fgets(line, sizeof(line), f) != nullptr) children = line;
    ::fclose(f);
  }
  const int child = std::atoi(children.c_str());
  ASSERT_GT(child, 0) << children;
  char root[4096] = {0};
  ASSERT_GT(::readlink(absl::StrCat("/proc/", child, "/root").c_str(), root,
                       sizeof(root) - 1),
            0);
  EXPECT_EQ(std::string(root), env_.state_dir + "/empty");
  std::string status;
  {
    FILE* f = ::fopen(absl::StrCat("/proc/", child, "/status").c_str(), "r");
    ASSERT_NE(f, nullptr);
    char line[256];
    while (::fgets(line, sizeof(line), f) != nullptr) {
      if (absl::StartsWith(line, "Uid:")) status = line;
    }
    ::fclose(f);
  }
  EXPECT_FALSE(absl::StrContains(status, "\t0\t")) << status;
  EXPECT_FALSE(status.empty());
  client.Reset();
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
}

TEST(LogLineTest, Popa3dPluralRules) {
  EXPECT_EQ(LoadedLogLine(0, 0), "0 messages (0 bytes) loaded");
  EXPECT_EQ(LoadedLogLine(1, 1), "1 message (1 byte) loaded");
  EXPECT_EQ(LoadedLogLine(1, 5), "1 message (5 bytes) loaded");
  EXPECT_EQ(LoadedLogLine(2, 1), "2 messages (1 byte) loaded");
  core::Session::UpdateSummary s;
  s.deleted = 1;
  s.deleted_bytes = 5;
  s.left = 3;
  s.left_bytes = 1000;
  EXPECT_EQ(UpdateLogLine(s), "1 (5) deleted, 3 (1000) left");
}

}  // namespace
}  // namespace popgate::net
