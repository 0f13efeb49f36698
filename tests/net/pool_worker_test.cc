// RunPoolWorker in a forked child, driven like the master and the auth
// process would: the test holds the other ends of the SEQPACKET channels,
// hands off real loopback TCP connections with a Handoff, answers
// AuthWireRequests from a helper thread (a scripted auth process) and reads
// WorkerReports. The child logs into a pipe the helper thread collects.
// Maildrops are FakeMaildrops built by open_maildrop in the child.
//
// Timeouts are injected short (hundreds of ms) where a test is about them
// and long elsewhere, so every test waits for events, never for time.
#include "net/pool_worker.h"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/logging.h"
#include "core/replies.h"
#include "gtest/gtest.h"
#include "net/listener.h"
#include "net/pool_protocol.h"
#include "net/pool_session.h"
#include "tests/fakes/fake_maildrop.h"

namespace popgate::net {
namespace {

using core::auth::AuthenticatedUser;

constexpr uint32_t kAliceUid = 4242;

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

bool WaitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

// Reads until `needle` has arrived, EOF, or the deadline (so a bug can't
// hang CI). Returns everything read.
std::string ReadUntil(int fd, absl::string_view needle, int timeout_ms = 5000) {
  std::string out;
  char buf[4096];
  while (needle.empty() || !absl::StrContains(out, needle)) {
    if (!WaitReadable(fd, timeout_ms)) {
      out += "<timeout>";
      break;
    }
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string ReadToEof(int fd, int timeout_ms = 5000) {
  return ReadUntil(fd, "", timeout_ms);
}

void Send(int fd, absl::string_view bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// "VmRSS"/"VmHWM" of `pid` in KiB.
int64_t ProcKib(pid_t pid, absl::string_view field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field)) continue;
    std::vector<std::string> parts =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t kib = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) return kib;
  }
  return -1;
}

class PoolWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/popgate_pool_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::mkdir((dir_ + "/state").c_str(), 0700), 0);
    env_.state_dir = dir_ + "/state";
    env_.preauth_timeout = absl::Seconds(20);
    env_.idle_timeout = absl::Seconds(20);
    env_.write_timeout = absl::Seconds(20);
    env_.auth_timeout = absl::Seconds(20);
    env_.drain_timeout = absl::Seconds(20);
    env_.mail_path =
        [](const AuthenticatedUser& u) -> absl::StatusOr<std::string> {
      return absl::StrCat("/var/mail/", u.name);
    };
    env_.open_maildrop =
        [this](
            const std::string& path, const std::string& state,
            uid_t owner) -> absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> {
      // Runs in the child: tell the test what it was asked for.
      core::Logf(core::Severity::kInfo, "open_maildrop %s %s %d", path, state,
                 owner);
      if (!open_status_.ok()) return open_status_;
      auto drop = std::make_unique<testing::FakeMaildrop>();
      for (const std::string& m : messages_) drop->Add(m);
      return std::unique_ptr<mailbox::Maildrop>(std::move(drop));
    };
    auto addr = MakeSocketAddress("127.0.0.1", 0);
    auto listener = OpenListener(*addr);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    port_ = Port(*LocalAddress(listener_.get()));
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    StopHelper();
    (void)::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }

  // Forks the worker; starts the helper thread (auth responder + log).
  void Start() {
    int master[2], auth[2], logpipe[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, master),
              0);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, auth), 0);
    ASSERT_EQ(::pipe2(logpipe, O_CLOEXEC), 0);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::close(master[0]);
      ::close(auth[0]);
      ::close(logpipe[0]);
      listener_.Reset();
      PipeLogSink sink(logpipe[1]);
      core::SetLogSink(&sink);
      ::_exit(RunPoolWorker(env_, UniqueFd(master[1]), UniqueFd(auth[1])));
    }
    ::close(master[1]);
    ::close(auth[1]);
    ::close(logpipe[1]);
    master_.Reset(master[0]);
    auth_.Reset(auth[0]);
    log_.Reset(logpipe[0]);
    pidfd_.Reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    ASSERT_TRUE(pidfd_.valid());
    int stop[2];
    ASSERT_EQ(::pipe2(stop, O_CLOEXEC), 0);
    stop_read_.Reset(stop[0]);
    stop_write_.Reset(stop[1]);
    helper_ = std::thread([this] { HelperLoop(); });
  }

  void StopHelper() {
    if (!helper_.joinable()) return;
    (void)!::write(stop_write_.get(), "x", 1);
    helper_.join();
  }

  // Waits for the worker to exit; its exit status, or -1 on timeout.
  int WaitExit(int timeout_ms = 5000) {
    if (!WaitReadable(pidfd_.get(), timeout_ms)) return -1;
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // The scripted auth process and the log collector.
  void HelperLoop() {
    for (;;) {
      pollfd p[3] = {{stop_read_.get(), POLLIN, 0},
                     {auth_.get(), POLLIN, 0},
                     {log_.get(), POLLIN, 0}};
      if (::poll(p, 3, -1) < 0) continue;
      if (p[0].revents) return;
      if (p[2].revents) {
        char buf[4096];
        const ssize_t n = ::read(log_.get(), buf, sizeof(buf));
        std::lock_guard<std::mutex> lock(mu_);
        if (n > 0) {
          log_text_.append(buf, static_cast<size_t>(n));
        } else {
          log_.Reset();  // the worker exited
        }
      }
      if (p[1].revents) {
        std::string bytes;
        absl::StatusOr<bool> got = ReceiveMessage(auth_.get(), &bytes, nullptr);
        if (!got.ok() && absl::IsUnavailable(got.status())) continue;
        if (!got.ok() || !*got) {
          std::lock_guard<std::mutex> lock(mu_);
          auth_.Reset();
          continue;
        }
        absl::StatusOr<AuthWireRequest> request = DecodeAuthRequest(bytes);
        if (!request.ok()) continue;
        Answer(*request);
      }
    }
  }

  void Answer(const AuthWireRequest& request) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auth_requests_.push_back(request);
      if (!answer_auth_) return;
    }
    AuthWireReply reply;
    reply.request_id = request.request_id;
    reply.known_user = request.user == "alice" || request.user == "bob" ||
                       request.user == "root";
    if (request.user == "silent") return;  // never answered
    if (request.user == "temp") {
      reply.verdict = AuthWireVerdict::kTempFailure;
    } else if ((request.user == "alice" || request.user == "root") &&
               request.password == "secret") {
      reply.verdict = AuthWireVerdict::kOk;
      reply.uid = request.user == "root" ? 0 : kAliceUid;
      reply.gid = reply.uid;
      reply.name = request.user;
      reply.home = "/home/" + request.user;
    } else {
      reply.verdict = AuthWireVerdict::kDenied;
    }
    (void)SendMessage(auth_.get(), EncodeAuthReply(reply)).ok();
  }

  // A loopback TCP connection whose server end is handed to the worker.
  // `small_buffers`: 4 KiB socket buffers both ways, so a client that
  // doesn't read blocks the worker's sends within a few KiB.
  UniqueFd HandOff(uint64_t session_id, bool small_buffers = false) {
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (small_buffers) {
      const int size = 4096;
      ::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    auto dst = MakeSocketAddress("127.0.0.1", port_);
    EXPECT_EQ(::connect(client.get(), dst->get(), dst->length), 0);
    UniqueFd server(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(server.valid());
    if (small_buffers) {
      const int size = 4096;
      ::setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    Handoff handoff;
    handoff.session_id = session_id;
    handoff.peer = *PeerAddress(server.get());
    const std::string wire = EncodeHandoff(handoff);
    for (;;) {
      absl::Status st = SendMessage(master_.get(), wire, server.get());
      if (st.ok()) break;
      EXPECT_TRUE(absl::IsUnavailable(st)) << st;
      if (!absl::IsUnavailable(st)) break;
      pollfd p{master_.get(), POLLOUT, 0};
      ::poll(&p, 1, 1000);
    }
    return client;  // `server` closes here: the worker has its own copy
  }

  // Reads reports until `count` arrived (or 5 s passed).
  std::vector<WorkerReport> ReadReports(size_t count) {
    std::vector<WorkerReport> out;
    while (out.size() < count) {
      if (!WaitReadable(master_.get(), 5000)) break;
      std::string bytes;
      absl::StatusOr<bool> got = ReceiveMessage(master_.get(), &bytes, nullptr);
      if (!got.ok() && absl::IsUnavailable(got.status())) continue;
      if (!got.ok() || !*got) break;
      absl::StatusOr<WorkerReport> report = DecodeWorkerReport(bytes);
      EXPECT_TRUE(report.ok()) << report.status();
      if (report.ok()) out.push_back(*report);
    }
    return out;
  }

  // Counts reports of `event` for `session_id` among `reports`.
  static int CountOf(const std::vector<WorkerReport>& reports,
                     WorkerEvent event, uint64_t session_id) {
    int n = 0;
    for (const WorkerReport& r : reports) {
      n += r.event == event && r.session_id == session_id;
    }
    return n;
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_text_;
  }
  // Waits until the log contains `needle` (the log pipe is collected by
  // the helper thread; a worker line may trail the client's bytes).
  bool WaitLog(absl::string_view needle, int timeout_ms = 5000) {
    for (int waited = 0; waited < timeout_ms; waited += 10) {
      if (absl::StrContains(Log(), needle)) return true;
      pollfd p{stop_read_.get(), 0, 0};
      ::poll(&p, 1, 10);  // a 10 ms tick without a bare sleep
    }
    return absl::StrContains(Log(), needle);
  }

  std::string dir_;
  PoolWorkerEnvironment env_;
  absl::Status open_status_;
  std::vector<std::string> messages_ = {"Subject: a\r\n\r\nhello\r\n",
                                        "Subject: b\r\n\r\nworld\r\n"};
  UniqueFd listener_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd master_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  std::thread helper_;
  std::mutex mu_;
  UniqueFd auth_;  // guarded by mu_ once the helper runs
  UniqueFd log_;
  std::string log_text_;
  std::vector<AuthWireRequest> auth_requests_;
  bool answer_auth_ = true;
};

TEST_F(PoolWorkerTest, LoginStatRetrQuit) {
  Start();
  UniqueFd c = HandOff(7);
  EXPECT_EQ(ReadUntil(c.get(), "\r\n"), "+OK\r\n");
  Send(c.get(), "USER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nQUIT\r\n");
  const std::string transcript = ReadToEof(c.get());
  EXPECT_EQ(transcript,
            "+OK\r\n+OK\r\n+OK 2 42\r\n+OK\r\n"
            "Subject: b\r\n\r\nworld\r\n.\r\n+OK\r\n");
  std::vector<WorkerReport> reports = ReadReports(2);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kAuthSucceeded, 7), 1);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 7), 1);
  ASSERT_TRUE(WaitLog("0 (0) deleted, 2 (42) left")) << Log();
  const std::string log = Log();
  EXPECT_TRUE(absl::StrContains(log, "info|Session from 127.0.0.1")) << log;
  EXPECT_TRUE(absl::StrContains(log, "info|Authentication passed for alice"));
  EXPECT_TRUE(absl::StrContains(log, "info|2 messages (42 bytes) loaded"));
  // The maildrop is opened for the authenticated uid, with the worker's
  // state sub-folder for it (0700, made on first login).
  EXPECT_TRUE(absl::StrContains(
      log, absl::StrCat("open_maildrop /var/mail/alice ", env_.state_dir, "/",
                        kAliceUid, " ", kAliceUid)))
      << log;
  struct stat st;
  ASSERT_EQ(::stat(absl::StrCat(env_.state_dir, "/", kAliceUid).c_str(), &st),
            0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(auth_requests_.size(), 1u);
  EXPECT_EQ(auth_requests_[0].remote_host, "127.0.0.1");
  EXPECT_EQ(auth_requests_[0].user, "alice");
}

TEST_F(PoolWorkerTest, ManyConcurrentSessions) {
  constexpr int kSessions = 200;
  Start();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kSessions; ++i) clients.push_back(HandOff(1000 + i));
  // Every greeting first: all 200 are live in the worker at once.
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_EQ(ReadUntil(clients[i].get(), "\r\n"), "+OK\r\n") << i;
  }
  for (int i = 0; i < kSessions; ++i) {
    Send(clients[i].get(), i % 2 == 0
                               ? "USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n"
                               : "USER bob\r\nPASS nope\r\n");
  }
  for (int i = 0; i < kSessions; ++i) {
    const std::string t = ReadToEof(clients[i].get());
    if (i % 2 == 0) {
      EXPECT_EQ(t, "+OK\r\n+OK\r\n+OK 2 42\r\n+OK\r\n") << i;
    } else {
      EXPECT_EQ(t, absl::StrCat("+OK\r\n", core::replies::kAuthFailed)) << i;
    }
  }
  std::vector<WorkerReport> reports = ReadReports(2 * kSessions);
  ASSERT_EQ(reports.size(), 2u * kSessions);
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 1000 + i), 1) << i;
    EXPECT_EQ(CountOf(reports,
                      i % 2 == 0 ? WorkerEvent::kAuthSucceeded
                                 : WorkerEvent::kAuthFailed,
                      1000 + i),
              1)
        << i;
  }
}

TEST_F(PoolWorkerTest, DeniedAuthLogsKnownNamesOnly) {
  Start();
  UniqueFd a = HandOff(1);
  Send(a.get(), "USER bob\r\nPASS wrong\r\n");
  EXPECT_EQ(ReadToEof(a.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthFailed));
  UniqueFd b = HandOff(2);
  Send(b.get(), "USER mallory\r\nPASS wrong\r\n");
  EXPECT_EQ(ReadToEof(b.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthFailed));
  std::vector<WorkerReport> reports = ReadReports(4);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kAuthFailed, 1), 1);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kAuthFailed, 2), 1);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 2), 1);
  ASSERT_TRUE(WaitLog("Authentication failed for UNKNOWN USER")) << Log();
  EXPECT_TRUE(absl::StrContains(Log(), "notice|Authentication failed for bob"));
  EXPECT_FALSE(absl::StrContains(Log(), "mallory"));
}

TEST_F(PoolWorkerTest, UidZeroIsDenied) {
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER root\r\nPASS secret\r\n");
  EXPECT_EQ(ReadToEof(c.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthFailed));
  EXPECT_EQ(CountOf(ReadReports(2), WorkerEvent::kAuthFailed, 1), 1);
  EXPECT_TRUE(WaitLog("Authentication failed for root")) << Log();
  EXPECT_FALSE(absl::StrContains(Log(), "open_maildrop"));
}

TEST_F(PoolWorkerTest, AuthTempFailureReply) {
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER temp\r\nPASS x\r\n");
  EXPECT_EQ(ReadToEof(c.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthTempFailure));
  std::vector<WorkerReport> reports = ReadReports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].event, WorkerEvent::kSessionEnded);
}

TEST_F(PoolWorkerTest, AuthTimeoutIsTemporaryFailure) {
  env_.auth_timeout = absl::Milliseconds(200);
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER silent\r\nPASS x\r\n");
  EXPECT_EQ(ReadToEof(c.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthTempFailure));
  EXPECT_TRUE(WaitLog("no reply within 200ms")) << Log();
  EXPECT_EQ(CountOf(ReadReports(1), WorkerEvent::kSessionEnded, 1), 1);
}

TEST_F(PoolWorkerTest, AuthProcessDeathFailsPendingKeepsLoggedIn) {
  Start();
  UniqueFd in = HandOff(1);
  Send(in.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadUntil(in.get(), "+OK\r\n+OK\r\n+OK\r\n"),
            "+OK\r\n+OK\r\n+OK\r\n");
  UniqueFd waiting = HandOff(2);
  Send(waiting.get(), "USER silent\r\nPASS x\r\n");
  EXPECT_EQ(ReadUntil(waiting.get(), "+OK\r\n+OK\r\n"), "+OK\r\n+OK\r\n");
  {
    // Wait until the request is at the "auth process", then kill it.
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auth_requests_.size() == 2) {
          ::shutdown(auth_.get(), SHUT_RDWR);
          break;
        }
      }
      WaitReadable(stop_read_.get(), 10);
    }
  }
  EXPECT_EQ(ReadToEof(waiting.get()), core::replies::kAuthTempFailure);
  // The logged-in session goes on.
  Send(in.get(), "STAT\r\nQUIT\r\n");
  EXPECT_EQ(ReadToEof(in.get()), "+OK 2 42\r\n+OK\r\n");
  // New logins fail at once, without a request.
  UniqueFd late = HandOff(3);
  Send(late.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadToEof(late.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kAuthTempFailure));
  EXPECT_TRUE(WaitLog("auth process gone")) << Log();
}

TEST_F(PoolWorkerTest, PreauthDeadlineClosesSilentClient) {
  env_.preauth_timeout = absl::Milliseconds(300);
  Start();
  UniqueFd silent = HandOff(1);
  UniqueFd slow = HandOff(2);
  // A client that talks but never logs in is cut all the same.
  Send(slow.get(), "USER alice\r\n");
  EXPECT_EQ(ReadToEof(silent.get()), "+OK\r\n");
  EXPECT_EQ(ReadToEof(slow.get()), "+OK\r\n+OK\r\n");
  std::vector<WorkerReport> reports = ReadReports(2);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 1), 1);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 2), 1);
  EXPECT_TRUE(WaitLog("info|Didn't attempt authentication")) << Log();
}

TEST_F(PoolWorkerTest, IdleTimeoutAfterLogin) {
  env_.idle_timeout = absl::Milliseconds(300);
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadToEof(c.get()), "+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_TRUE(WaitLog("info|Connection timed out")) << Log();
}

TEST_F(PoolWorkerTest, WriteTimeoutCutsReaderThatNeverReads) {
  env_.write_timeout = absl::Milliseconds(300);
  messages_ = {std::string(16 << 20, 'x') + "\r\n"};
  Start();
  UniqueFd c = HandOff(1, /*small_buffers=*/true);
  Send(c.get(), "USER alice\r\nPASS secret\r\nSTAT\r\n");
  EXPECT_EQ(ReadUntil(c.get(), "16777218\r\n"),
            "+OK\r\n+OK\r\n+OK\r\n+OK 1 16777218\r\n");
  // The maildrop (and its 16 MiB message) exists now; what RETR costs on
  // top of it is the point.
  const int64_t rss_after_login = ProcKib(pid_, "VmRSS:");
  Send(c.get(), "RETR 1\r\n");  // and never read
  EXPECT_EQ(CountOf(ReadReports(2), WorkerEvent::kSessionEnded, 1), 1);
  EXPECT_TRUE(WaitLog("info|Connection timed out")) << Log();
  // Views of the message, not copies: the peak stays within a few windows.
  const int64_t peak = ProcKib(pid_, "VmHWM:");
  ASSERT_GT(rss_after_login, 0);
  EXPECT_LT(peak - rss_after_login, 4 * 1024) << "KiB";
}

TEST_F(PoolWorkerTest, MaxSessionsRefusesWithALine) {
  env_.max_sessions = 2;
  Start();
  UniqueFd a = HandOff(1);
  UniqueFd b = HandOff(2);
  EXPECT_EQ(ReadUntil(a.get(), "\r\n"), "+OK\r\n");
  EXPECT_EQ(ReadUntil(b.get(), "\r\n"), "+OK\r\n");
  UniqueFd c = HandOff(3);
  EXPECT_EQ(ReadToEof(c.get()),
            "-ERR [SYS/TEMP] Too many sessions, try again later\r\n");
  EXPECT_EQ(CountOf(ReadReports(1), WorkerEvent::kSessionEnded, 3), 1);
  // A slot freed is a slot taken again.
  Send(a.get(), "QUIT\r\n");
  EXPECT_EQ(ReadToEof(a.get()), "+OK\r\n");
  EXPECT_EQ(CountOf(ReadReports(1), WorkerEvent::kSessionEnded, 1), 1);
  UniqueFd d = HandOff(4);
  EXPECT_EQ(ReadUntil(d.get(), "\r\n"), "+OK\r\n");
}

TEST_F(PoolWorkerTest, MasterEofDrainsThenExits) {
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadUntil(c.get(), "+OK\r\n+OK\r\n+OK\r\n"),
            "+OK\r\n+OK\r\n+OK\r\n");
  ::shutdown(master_.get(), SHUT_WR);  // the master stops handing off
  ASSERT_TRUE(WaitLog("Draining: 1 session still running")) << Log();
  // The running session is still served to its end; then the worker exits.
  Send(c.get(), "STAT\r\nQUIT\r\n");
  EXPECT_EQ(ReadToEof(c.get()), "+OK 2 42\r\n+OK\r\n");
  EXPECT_EQ(WaitExit(), 0);
  EXPECT_EQ(CountOf(ReadReports(2), WorkerEvent::kSessionEnded, 1), 1);
}

TEST_F(PoolWorkerTest, DrainTimeoutEndsStragglers) {
  env_.drain_timeout = absl::Milliseconds(200);
  Start();
  UniqueFd c = HandOff(1);
  EXPECT_EQ(ReadUntil(c.get(), "\r\n"), "+OK\r\n");
  ::shutdown(master_.get(), SHUT_WR);
  EXPECT_EQ(WaitExit(), 0);
  EXPECT_EQ(ReadToEof(c.get()), "");
  EXPECT_EQ(CountOf(ReadReports(1), WorkerEvent::kSessionEnded, 1), 1);
}

TEST_F(PoolWorkerTest, SigtermEndsEverySessionAtOnce) {
  Start();
  UniqueFd a = HandOff(1);
  UniqueFd b = HandOff(2);
  Send(b.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadUntil(a.get(), "\r\n"), "+OK\r\n");
  EXPECT_EQ(ReadUntil(b.get(), "+OK\r\n+OK\r\n+OK\r\n"),
            "+OK\r\n+OK\r\n+OK\r\n");
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(WaitExit(), 0);
  EXPECT_EQ(ReadToEof(a.get()), "");
  EXPECT_EQ(ReadToEof(b.get()), "");
  std::vector<WorkerReport> reports = ReadReports(3);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 1), 1);
  EXPECT_EQ(CountOf(reports, WorkerEvent::kSessionEnded, 2), 1);
}

TEST_F(PoolWorkerTest, LockedMailboxIsInUse) {
  open_status_ = absl::UnavailableError("locked");
  Start();
  UniqueFd c = HandOff(1);
  Send(c.get(), "USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ReadToEof(c.get()),
            absl::StrCat("+OK\r\n+OK\r\n", core::replies::kMailboxInUse));
  EXPECT_TRUE(WaitLog("Failed or refused to load /var/mail/alice")) << Log();
  EXPECT_FALSE(absl::StrContains(Log(), "Server failure"));
}

// Memory per idle pre-auth session, measured in-process: the worker runs on
// a thread here so mallinfo2() (all arenas) sees its heap.
TEST(PoolWorkerMemoryTest, IdleSessionCostsLittleHeap) {
  constexpr int kSessions = 200;
  std::printf("sizeof(PoolSession)=%zu sizeof(core::Session)=%zu\n",
              sizeof(PoolSession), sizeof(core::Session));
  core::CaptureLogSink sink;
  core::ScopedLogSink scoped(&sink);
  PoolWorkerEnvironment env;
  env.drain_timeout = absl::ZeroDuration();
  int master[2], auth[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, master), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, auth), 0);
  UniqueFd master_end(master[0]);
  UniqueFd auth_end(auth[0]);
  std::atomic<int> rc{-1};
  std::thread worker(
      [&] { rc = RunPoolWorker(env, UniqueFd(master[1]), UniqueFd(auth[1])); });
  std::vector<UniqueFd> clients;
  clients.reserve(kSessions + 1);
  std::string greeting(8, '\0');
  auto open_one = [&](uint64_t id) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    Handoff handoff;
    handoff.session_id = id;
    ASSERT_TRUE(
        SendMessage(master_end.get(), EncodeHandoff(handoff), sv[1]).ok());
    ::close(sv[1]);
    clients.emplace_back(sv[0]);
    ASSERT_TRUE(WaitReadable(sv[0], 5000));
    ASSERT_EQ(::read(sv[0], greeting.data(), greeting.size()), 5);
  };
  // One session first, so the worker's own buffers and tables exist.
  open_one(0);
  const size_t before = mallinfo2().uordblks;
  for (int i = 1; i <= kSessions; ++i) open_one(i);
  const size_t after = mallinfo2().uordblks;
  const double per_session =
      static_cast<double>(after - before) / static_cast<double>(kSessions);
  std::printf("heap per idle pre-auth session: %.0f bytes\n", per_session);
  EXPECT_LT(per_session, 2048);
  master_end.Reset();  // EOF: drain with a zero timeout, then exit
  worker.join();
  EXPECT_EQ(rc.load(), 0);
}

}  // namespace
}  // namespace popgate::net
