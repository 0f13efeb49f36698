// Smoke test of the real binary: `popgate -D --foreground` on 127.0.0.1:0
// with a passwd-file user (uid/gid 65534) and an mbox. Logs in, reads mail,
// quits; then holds 50 connections from 127.0.0.1 and checks the 51st gets
// EOF without a byte while 127.0.0.2 is still greeted. Root only (the
// session drops to uid 65534). The big suites live in tests/e2e/.
#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

constexpr uid_t kUid = 65534;
constexpr gid_t kGid = 65534;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path);
  out << data;
}

int Connect(uint16_t port, const char* from) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, from, &src.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
    ::close(fd);
    return -1;
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until `until` appears, EOF, or 5 s pass.
std::string ReadUntil(int fd, absl::string_view until) {
  std::string out;
  char buf[4096];
  while (!absl::StrContains(out, until)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return out + "<timeout>";
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Command(int fd, const std::string& line, absl::string_view until) {
  const std::string wire = line + "\r\n";
  EXPECT_EQ(::write(fd, wire.data(), wire.size()),
            static_cast<ssize_t>(wire.size()));
  return ReadUntil(fd, until);
}

class SmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (drops to uid 65534)";
    char tmpl[] = "/tmp/popgate_smoke_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    const std::string mail = dir_ + "/mail";
    ASSERT_EQ(::mkdir(mail.c_str(), 0755), 0);
    ASSERT_EQ(::chown(mail.c_str(), kUid, kGid), 0);
    const std::string mbox = mail + "/alice";
    WriteFile(mbox,
              "From a@example.org Thu Nov 26 10:00:00 2026\n"
              "Subject: one\n\nhello\n\n"
              "From b@example.org Thu Nov 26 10:01:00 2026\n"
              "Subject: two\n\nworld\n");
    ASSERT_EQ(::chown(mbox.c_str(), kUid, kGid), 0);
    ASSERT_EQ(::chmod(mbox.c_str(), 0600), 0);
    const char* hash = ::crypt("secret", "$6$popgatesmoke$");
    ASSERT_NE(hash, nullptr);
    passwd_ = dir_ + "/passwd";
    WriteFile(passwd_, absl::StrCat("alice:{SHA512-CRYPT}", hash, ":", kUid,
                                    ":", kGid, "::", dir_, ":/bin/false\n"));
    log_ = dir_ + "/log";
  }

  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) {
      (void)::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
    }
  }

  // Starts the daemon; returns the port from "listening on 127.0.0.1:PORT".
  uint16_t Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(out, 1);
      ::dup2(out, 2);
      const std::string auth = "--auth=passwd-file:" + passwd_;
      const std::string mail = "--mail=mbox:" + dir_ + "/mail/%u";
      const std::string state = "--state_dir=" + dir_ + "/state";
      ::execl(POPGATE_BINARY, POPGATE_BINARY, "-D", "--foreground",
              "--log=stderr", "--listen=127.0.0.1:0", auth.c_str(),
              mail.c_str(), state.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      const std::string log = ReadFile(log_);
      const size_t at = log.find("listening on 127.0.0.1:");
      if (at != std::string::npos) {
        const size_t start = at + strlen("listening on 127.0.0.1:");
        const size_t end = log.find('\n', start);
        if (end != std::string::npos) {
          uint32_t port = 0;
          if (absl::SimpleAtoi(log.substr(start, end - start), &port)) {
            return static_cast<uint16_t>(port);
          }
        }
      }
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "popgate exited early:\n" << log;
        return 0;
      }
      ::usleep(10 * 1000);
    }
    ADD_FAILURE() << "no listening line:\n" << ReadFile(log_);
    return 0;
  }

  std::string dir_, passwd_, log_;
  pid_t pid_ = -1;
  std::vector<int> fds_;
};

TEST_F(SmokeTest, LoginRetrQuitAndPerSourceLimit) {
  const uint16_t port = Start();
  ASSERT_NE(port, 0);

  // 50 held sessions from 127.0.0.1 (popa3d's per-source limit), each
  // greeted; the 51st gets EOF without a byte; 127.0.0.2 still gets +OK.
  for (int i = 0; i < 50; ++i) {
    const int fd = Connect(port, "127.0.0.1");
    ASSERT_GE(fd, 0);
    fds_.push_back(fd);
    ASSERT_EQ(ReadUntil(fd, "\r\n"), "+OK\r\n") << i;
  }
  const int refused = Connect(port, "127.0.0.1");
  ASSERT_GE(refused, 0);
  fds_.push_back(refused);
  EXPECT_EQ(ReadUntil(refused, "\r\n"), "");
  const int other = Connect(port, "127.0.0.2");
  ASSERT_GE(other, 0);
  fds_.push_back(other);
  EXPECT_EQ(ReadUntil(other, "\r\n"), "+OK\r\n");

  // A full session from a third source.
  const int fd = Connect(port, "127.0.0.3");
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  EXPECT_EQ(ReadUntil(fd, "\r\n"), "+OK\r\n");
  EXPECT_EQ(Command(fd, "USER alice", "\r\n"), "+OK\r\n");
  EXPECT_EQ(Command(fd, "PASS secret", "\r\n"), "+OK\r\n") << ReadFile(log_);
  EXPECT_TRUE(absl::StartsWith(Command(fd, "STAT", "\r\n"), "+OK 2 "));
  const std::string retr = Command(fd, "RETR 1", "\r\n.\r\n");
  EXPECT_TRUE(absl::StartsWith(retr, "+OK")) << retr;
  EXPECT_TRUE(absl::StrContains(retr, "Subject: one\r\n\r\nhello\r\n")) << retr;
  EXPECT_EQ(Command(fd, "DELE 1", "\r\n"), "+OK\r\n");
  EXPECT_EQ(Command(fd, "QUIT", "\r\n"), "+OK\r\n");
  EXPECT_EQ(ReadUntil(fd, "never"), "");  // closed after QUIT
  // The update ran as the user, with its redo records in <state_dir>/65534.
  const std::string mbox = ReadFile(dir_ + "/mail/alice");
  EXPECT_FALSE(absl::StrContains(mbox, "Subject: one")) << mbox;
  EXPECT_TRUE(absl::StrContains(mbox, "Subject: two")) << mbox;

  // SIGTERM with sessions still open: the daemon waits for them.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  for (int f : fds_) ::close(f);
  fds_.clear();
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 500 && !exited; ++i) {
    exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
    if (!exited) ::usleep(10 * 1000);
  }
  ASSERT_TRUE(exited) << ReadFile(log_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  const std::string log = ReadFile(log_);
  EXPECT_TRUE(absl::StrContains(log, "Session from 127.0.0.3")) << log;
  EXPECT_TRUE(absl::StrContains(log, "127.0.0.1: per source limit reached"))
      << log;
  EXPECT_TRUE(absl::StrContains(log, "Authentication passed for alice")) << log;
  EXPECT_TRUE(absl::StrContains(log, "2 messages (")) << log;
  EXPECT_TRUE(absl::StrContains(log, "1 (")) << log;
  EXPECT_TRUE(absl::StrContains(log, ") deleted, 1 (")) << log;
}

// inetd mode: the connection is fds 0 and 1 (here one socketpair end).
TEST_F(SmokeTest, InetdModeOnStdinStdout) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  pid_ = ::fork();
  if (pid_ == 0) {
    const int log = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(sv[1], 0);
    ::dup2(sv[1], 1);
    ::dup2(log, 2);
    const std::string auth = "--auth=passwd-file:" + passwd_;
    const std::string mail = "--mail=mbox:" + dir_ + "/mail/%u";
    const std::string state = "--state_dir=" + dir_ + "/state";
    ::execl(POPGATE_BINARY, POPGATE_BINARY, "--log=stderr", auth.c_str(),
            mail.c_str(), state.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(sv[1]);
  const int fd = sv[0];
  fds_.push_back(fd);
  EXPECT_EQ(ReadUntil(fd, "\r\n"), "+OK\r\n");
  // Pipelined in one write: PASS and what follows it must all be answered.
  const std::string all =
      Command(fd, "USER alice\r\nPASS secret\r\nSTAT\r\nQUIT", "never");
  EXPECT_TRUE(absl::StartsWith(all, "+OK\r\n+OK\r\n+OK 2 ")) << all;
  EXPECT_TRUE(absl::EndsWith(all, "\r\n+OK\r\n")) << all;
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string log = ReadFile(log_);
  EXPECT_TRUE(absl::StrContains(log, "Authentication passed for alice")) << log;
  EXPECT_FALSE(absl::StrContains(log, "Session from")) << log;  // as popa3d
}

TEST_F(SmokeTest, VersionAndBadConfig) {
  // -V prints the version and exits 0; a bad flag value exits 1.
  const std::string v = absl::StrCat(POPGATE_BINARY, " -V > ", log_, " 2>&1");
  EXPECT_EQ(::system(v.c_str()), 0);
  EXPECT_TRUE(absl::StartsWith(ReadFile(log_), "popgate version "))
      << ReadFile(log_);
  const std::string bad =
      absl::StrCat(POPGATE_BINARY, " -D --listen=nonsense > ", log_, " 2>&1");
  const int rc = ::system(bad.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
  EXPECT_TRUE(absl::StrContains(ReadFile(log_), "--listen")) << ReadFile(log_);

  // An explicit --preauth_user must exist: refused once at startup, not at
  // every session.
  const std::string no_jail_user = absl::StrCat(
      POPGATE_BINARY, " -D --foreground --log=stderr --listen=127.0.0.1:0",
      " --state_dir=", dir_, "/state --preauth_user=popgate-no-such-user > ",
      log_, " 2>&1");
  const int rc2 = ::system(no_jail_user.c_str());
  EXPECT_TRUE(WIFEXITED(rc2) && WEXITSTATUS(rc2) == 1) << ReadFile(log_);
  EXPECT_TRUE(absl::StrContains(ReadFile(log_), "popgate-no-such-user"))
      << ReadFile(log_);
}

}  // namespace
