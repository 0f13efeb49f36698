// The -D master in a forked child. Fork mode with a trivial session
// function: admits, refuses per source, globally and by rate (silently, or
// with one -ERR line), and shuts down without orphans. Pool mode with fake
// worker and auth processes (poll loops speaking pool_protocol.h): hand-off
// to the least-loaded worker, slots released by reports and by a worker's
// death, respawn, SIGHUP replacement and SIGTERM drain. Needs no root.
#include "net/accept_loop.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "net/listener.h"
#include "net/pool_protocol.h"
#include "net/sd_notify.h"

namespace popgate::net {
namespace {

// Reads until EOF or `want` bytes, with a deadline so a bug can't hang CI.
std::string ReadSome(int fd, size_t want, int timeout_ms = 5000) {
  std::string out;
  char buf[256];
  while (out.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) {
      out += "<timeout>";
      break;
    }
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

UniqueFd Connect(uint16_t port, const char* from) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto src = MakeSocketAddress(from, 0);
  EXPECT_EQ(::bind(fd.get(), src->get(), src->length), 0);
  auto dst = MakeSocketAddress("127.0.0.1", port);
  if (::connect(fd.get(), dst->get(), dst->length) != 0) return UniqueFd();
  return fd;
}

// Waits up to `ms` for `pid`; returns its wait status or -1.
int WaitFor(pid_t pid, int ms) {
  for (int i = 0; i < ms / 10; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    ::usleep(10 * 1000);
  }
  return -1;
}

// SIGTERM to the master at `pid`: its listener on `port` must close at once
// while it stays up for the sessions still running.
void SigtermExpectDraining(pid_t pid, uint16_t port) {
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    refused = !Connect(port, "127.0.0.4").valid();
    if (!refused) ::usleep(10 * 1000);
  }
  EXPECT_TRUE(refused) << "listener still open after SIGTERM";
  EXPECT_EQ(WaitFor(pid, 200), -1) << "master exited with sessions running";
}

// The draining master at *pid must exit with status 0 once its sessions
// ended; *pid is then reaped (-1).
void ExpectDrainedExit(pid_t* pid) {
  const int status = WaitFor(*pid, 5000);
  ASSERT_NE(status, -1) << "master did not exit after its sessions ended";
  *pid = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

MasterOptions WithFlood(const limits::FloodOptions& flood) {
  MasterOptions options;
  options.admission.flood = flood;
  return options;
}

class MasterTest : public ::testing::Test {
 protected:
  void StartMaster(const limits::FloodOptions& flood,
                   bool exhaust_fds = false) {
    StartMaster(WithFlood(flood), exhaust_fds);
  }
  // `exhaust_fds`: once set up, the master's RLIMIT_NOFILE is lowered to
  // its lowest free fd number, so every accept fails with EMFILE.
  void StartMaster(const MasterOptions& options, bool exhaust_fds = false) {
    auto addr = MakeSocketAddress("127.0.0.1", 0);
    auto listener = OpenListener(*addr);
    ASSERT_TRUE(listener.ok()) << listener.status();
    port_ = Port(*LocalAddress(listener->get()));
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::vector<UniqueFd> listeners;
      listeners.push_back(std::move(*listener));
      const int marker = session_marker_;
      auto master = Master::Create(
          std::move(listeners), options,
          [marker](int fd, const SocketAddress&) {
            if (marker >= 0) (void)!::write(marker, "s", 1);
            static const char kHello[] = "+OK hi\r\n";
            (void)!::write(fd, kHello, sizeof(kHello) - 1);
            char buf[64];
            while (::read(fd, buf, sizeof(buf)) > 0) {
            }
            return 0;
          });
      if (!master.ok()) ::_exit(3);
      if (exhaust_fds) {
        int lowest_free = 0;
        while (::fcntl(lowest_free, F_GETFD) != -1) ++lowest_free;
        rlimit lim{static_cast<rlim_t>(lowest_free), 4096};
        if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(5);
      }
      ::_exit((*master)->Run().ok() ? 0 : 4);
    }
    // Our copy must go, or the port would stay open after the master
    // closes its listener at shutdown.
    listener->Reset();
  }
  void TearDown() override {
    if (pid_ > 0 && WaitFor(pid_, 10) == -1) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  // If set before StartMaster: each session writes one byte here first.
  int session_marker_ = -1;
};

TEST_F(MasterTest, AdmitsRefusesSilentlyAndDrainsOnSigterm) {
  StartMaster(limits::FloodOptions{3, 2, absl::ZeroDuration()});
  UniqueFd a = Connect(port_, "127.0.0.1");
  UniqueFd b = Connect(port_, "127.0.0.1");
  ASSERT_EQ(ReadSome(a.get(), 8), "+OK hi\r\n");
  ASSERT_EQ(ReadSome(b.get(), 8), "+OK hi\r\n");
  // Third from the same source: EOF, not a byte.
  UniqueFd c = Connect(port_, "127.0.0.1");
  EXPECT_EQ(ReadSome(c.get(), 8), "");
  // Another source is still served.
  UniqueFd d = Connect(port_, "127.0.0.2");
  ASSERT_EQ(ReadSome(d.get(), 8), "+OK hi\r\n");
  // Global cap (3) reached: a fourth source is refused too.
  UniqueFd e = Connect(port_, "127.0.0.3");
  EXPECT_EQ(ReadSome(e.get(), 8), "");

  // A session ends: with no minimum hold its slot is free again.
  a.Reset();
  std::string again;
  for (int i = 0; i < 100 && again.empty(); ++i) {
    UniqueFd f = Connect(port_, "127.0.0.1");
    again = ReadSome(f.get(), 8, 1000);
    if (again.empty()) ::usleep(20 * 1000);
    if (!again.empty()) break;
  }
  EXPECT_EQ(again, "+OK hi\r\n");

  // SIGTERM: stop accepting, keep serving, exit once the sessions end.
  SigtermExpectDraining(pid_, port_);
  b.Reset();
  d.Reset();
  ExpectDrainedExit(&pid_);
}

TEST_F(MasterTest, MinimumHoldKeepsSlotAfterSessionEnds) {
  StartMaster(limits::FloodOptions{10, 1, absl::Seconds(30)});
  {
    UniqueFd a = Connect(port_, "127.0.0.1");
    ASSERT_EQ(ReadSome(a.get(), 8), "+OK hi\r\n");
  }
  ::usleep(100 * 1000);  // the session ends and is reaped
  UniqueFd b = Connect(port_, "127.0.0.1");
  EXPECT_EQ(ReadSome(b.get(), 8), "");
  UniqueFd c = Connect(port_, "127.0.0.2");
  EXPECT_EQ(ReadSome(c.get(), 8), "+OK hi\r\n");
  c.Reset();
  ::kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(MasterTest, ClientsGoneBeforeAcceptStartNoSession) {
  int marker[2];
  ASSERT_EQ(::pipe2(marker, O_NONBLOCK), 0);
  session_marker_ = marker[1];
  StartMaster(limits::FloodOptions{100, 100, absl::ZeroDuration()});
  ::close(marker[1]);
  {
    UniqueFd first = Connect(port_, "127.0.0.1");  // the master is up
    ASSERT_EQ(ReadSome(first.get(), 8), "+OK hi\r\n");
  }
  // Stopped, the master accepts nothing: each client's FIN is queued before
  // the master sees its connection, as under a connect-and-close flood.
  ASSERT_EQ(::kill(pid_, SIGSTOP), 0);
  for (int i = 0; i < 20; ++i) {
    UniqueFd gone = Connect(port_, "127.0.0.1");
    ASSERT_TRUE(gone.valid());
  }
  ASSERT_EQ(::kill(pid_, SIGCONT), 0);
  UniqueFd live = Connect(port_, "127.0.0.1");
  EXPECT_EQ(ReadSome(live.get(), 8), "+OK hi\r\n");
  ::usleep(100 * 1000);  // a wrongly started session would have written
  char buf[64];
  EXPECT_EQ(::read(marker[0], buf, sizeof(buf)), 2) << "sessions started";
  ::close(marker[0]);
  live.Reset();
  ::kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Process CPU time (user + system) in clock ticks, from /proc.
long CpuTicks(pid_t pid) {
  FILE* f = ::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return -1;
  char buf[1024] = {0};
  const size_t n = ::fread(buf, 1, sizeof(buf) - 1, f);
  ::fclose(f);
  std::string stat(buf, n);
  // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
  size_t pos = stat.rfind(')');
  long utime = 0, stime = 0;
  if (pos == std::string::npos ||
      std::sscanf(stat.c_str() + pos + 2,
                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                  &stime) != 2) {
    return -1;
  }
  return utime + stime;
}

TEST_F(MasterTest, FdExhaustionPausesWithoutSpinningAndRecovers) {
  StartMaster(limits::FloodOptions{10, 5, absl::ZeroDuration()},
              /*exhaust_fds=*/true);
  UniqueFd a = Connect(port_, "127.0.0.1");
  ASSERT_TRUE(a.valid());  // the kernel completes the handshake (backlog)
  const long before = CpuTicks(pid_);
  EXPECT_EQ(ReadSome(a.get(), 8, 500), "<timeout>");
  const long after = CpuTicks(pid_);
  // A spinning master would burn ~50 ticks in 0.5 s; pausing costs ~none.
  EXPECT_LE(after - before, 10) << "master spins on EMFILE";
  // Give it descriptors: the paused accept is re-armed and serves.
  rlimit lim{1024, 4096};
  ASSERT_EQ(::prlimit(pid_, RLIMIT_NOFILE, &lim, nullptr), 0);
  EXPECT_EQ(ReadSome(a.get(), 8, 3000), "+OK hi\r\n");
  a.Reset();
  ::kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(MasterTest, SecondSigtermTerminatesSessions) {
  StartMaster(limits::FloodOptions{10, 5, absl::ZeroDuration()});
  UniqueFd a = Connect(port_, "127.0.0.1");
  ASSERT_EQ(ReadSome(a.get(), 8), "+OK hi\r\n");
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  ::usleep(200 * 1000);  // let the master take the first one alone
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The session got SIGTERM: our end sees EOF although we never closed.
  EXPECT_EQ(ReadSome(a.get(), 1), "");
}

TEST_F(MasterTest, RefuseWithErrorSendsOneTempLine) {
  MasterOptions options = WithFlood({10, 1, absl::ZeroDuration()});
  options.refuse_with_error = true;
  StartMaster(options);
  UniqueFd a = Connect(port_, "127.0.0.1");
  ASSERT_EQ(ReadSome(a.get(), 8), "+OK hi\r\n");
  UniqueFd b = Connect(port_, "127.0.0.1");
  // The line, then EOF (ReadSome stops at EOF: nothing more follows).
  EXPECT_EQ(ReadSome(b.get(), 1000), kRefusalReply);
  a.Reset();
  ::kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(MasterTest, RatePerSourceRefusesPastTheBurst) {
  MasterOptions options = WithFlood({100, 100, absl::ZeroDuration()});
  options.admission.rate_per_second = 0.001;  // no refill during the test
  options.admission.burst = 2;
  StartMaster(options);
  UniqueFd a = Connect(port_, "127.0.0.1");
  UniqueFd b = Connect(port_, "127.0.0.1");
  ASSERT_EQ(ReadSome(a.get(), 8), "+OK hi\r\n");
  ASSERT_EQ(ReadSome(b.get(), 8), "+OK hi\r\n");
  // Both sessions are still running, far below the slot caps: only the
  // bucket can refuse this one.
  UniqueFd c = Connect(port_, "127.0.0.1");
  EXPECT_EQ(ReadSome(c.get(), 8), "");
  // Another source has its own bucket.
  UniqueFd d = Connect(port_, "127.0.0.2");
  EXPECT_EQ(ReadSome(d.get(), 8), "+OK hi\r\n");
  a.Reset();
  b.Reset();
  d.Reset();
  ::kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(AdmissionRefusalLogLineTest, Popa3dTextsForItsCausesOursForNewOnes) {
  using limits::AdmissionRefusal;
  EXPECT_EQ(
      AdmissionRefusalLogLine(AdmissionRefusal::kSourceSessions, "1.2.3.4"),
      "1.2.3.4: per source limit reached");
  EXPECT_EQ(
      AdmissionRefusalLogLine(AdmissionRefusal::kGlobalSessions, "1.2.3.4"),
      "1.2.3.4: sessions limit reached");
  EXPECT_EQ(AdmissionRefusalLogLine(AdmissionRefusal::kSourceRate, "1.2.3.4"),
            "1.2.3.4: connection rate limit reached");
  EXPECT_EQ(AdmissionRefusalLogLine(AdmissionRefusal::kTableFull, "::1"),
            "::1: source table full");
}

// A datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  NotifySocket() {
    char dir[] = "/tmp/popgate_notify_XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/notify";
    fd_.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
        0) {
      fd_.Reset();
    }
  }
  ~NotifySocket() {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  bool ok() const { return fd_.valid(); }
  const std::string& path() const { return path_; }
  // The next datagram, or "<timeout>".
  std::string Next(int timeout_ms = 5000) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return "<timeout>";
    char buf[256];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    return n < 0 ? "<error>" : std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string dir_;
  std::string path_;
  UniqueFd fd_;
};

TEST(NotifyServiceManagerTest, SendsStateOrDoesNothingWithoutSocket) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(NotifyServiceManager("READY=1").ok());
  NotifySocket socket;
  ASSERT_TRUE(socket.ok());
  ::setenv("NOTIFY_SOCKET", socket.path().c_str(), 1);
  EXPECT_TRUE(NotifyServiceManager("READY=1").ok());
  EXPECT_EQ(socket.Next(), "READY=1");
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(NotifyServiceManager("READY=1").ok());
  ::unsetenv("NOTIFY_SOCKET");
}

TEST_F(MasterTest, NotifiesReadyAndStopping) {
  NotifySocket socket;
  ASSERT_TRUE(socket.ok());
  ::setenv("NOTIFY_SOCKET", socket.path().c_str(), 1);
  StartMaster(limits::FloodOptions{10, 5, absl::ZeroDuration()});
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_EQ(socket.Next(), "READY=1");
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_EQ(socket.Next(), "RELOADING=1");
  EXPECT_EQ(socket.Next(), "READY=1");
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(socket.Next(), "STOPPING=1");
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// ---- Pool mode with fake processes ----

// Reads one line (up to "\n"), "" at EOF, "<timeout>" on the deadline.
std::string ReadLine(int fd, int timeout_ms = 5000) {
  std::string out;
  char c;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return out + "<timeout>";
    if (::read(fd, &c, 1) != 1) return out;
    out += c;
    if (c == '\n') return out;
  }
}

// The worker pid a fake worker names in its greeting "+OK w<pid>\r\n", or
// -1 (refused: EOF, or anything else).
pid_t GreetingPid(int fd) {
  const std::string line = ReadLine(fd);
  int pid = -1;
  if (line.rfind("+OK w", 0) != 0 ||
      !absl::SimpleAtoi(line.substr(5, line.size() - 7), &pid)) {
    return -1;
  }
  return pid;
}

// A fake worker: greets each handed-off socket with its pid, reports the
// session's end when the client closes, and on EOF from the master drains
// (exits once its sessions are gone). It first sends a malformed report,
// which the master must ignore.
int FakeWorker(UniqueFd master, UniqueFd auth) {
  (void)!SendMessage(master.get(), "junk").ok();
  struct Conn {
    UniqueFd fd;
    uint64_t id;
  };
  std::vector<Conn> conns;
  bool draining = false;
  while (!draining || !conns.empty()) {
    std::vector<pollfd> fds;
    fds.push_back({draining ? -1 : master.get(), POLLIN, 0});
    for (const Conn& c : conns) fds.push_back({c.fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    // Only the connections polled above have revents; one handed off below
    // is checked next round (indexing past `fds` once made this worker
    // block in read() on a fresh socket, and a later hand-off never got
    // its greeting).
    const size_t polled = conns.size();
    if (fds[0].revents != 0) {
      std::string bytes;
      UniqueFd fd;
      absl::StatusOr<bool> got = ReceiveMessage(master.get(), &bytes, &fd);
      if (got.ok() && !*got) {
        draining = true;
      } else if (got.ok() && fd.valid()) {
        absl::StatusOr<Handoff> handoff = DecodeHandoff(bytes);
        if (handoff.ok()) {
          const std::string hello = absl::StrCat("+OK w", ::getpid(), "\r\n");
          (void)!::write(fd.get(), hello.data(), hello.size());
          conns.push_back({std::move(fd), handoff->session_id});
        }
      }
    }
    for (size_t i = polled; i-- > 0;) {
      if (fds[i + 1].revents == 0) continue;
      char buf[64];
      if (::read(conns[i].fd.get(), buf, sizeof(buf)) > 0) continue;
      (void)!SendMessage(
          master.get(),
          EncodeWorkerReport({WorkerEvent::kSessionEnded, conns[i].id}))
          .ok();
      conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  return 0;
}

// A fake auth process: holds the channel ends it is sent until EOF.
int FakeAuth(UniqueFd control) {
  std::vector<UniqueFd> channels;
  while (true) {
    pollfd p{control.get(), POLLIN, 0};
    if (::poll(&p, 1, -1) < 0) continue;
    std::string bytes;
    UniqueFd fd;
    absl::StatusOr<bool> got = ReceiveMessage(control.get(), &bytes, &fd);
    if (got.ok() && !*got) return 0;
    if (fd.valid()) channels.push_back(std::move(fd));
  }
}

class PoolMasterTest : public MasterTest {
 protected:
  void StartPool(const limits::FloodOptions& flood, int workers) {
    auto addr = MakeSocketAddress("127.0.0.1", 0);
    auto listener = OpenListener(*addr);
    ASSERT_TRUE(listener.ok()) << listener.status();
    port_ = Port(*LocalAddress(listener->get()));
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::vector<UniqueFd> listeners;
      listeners.push_back(std::move(*listener));
      PoolOptions pool;
      pool.workers = workers;
      pool.respawn_interval = absl::ZeroDuration();
      pool.run_auth = FakeAuth;
      pool.run_worker = FakeWorker;
      auto master =
          Master::CreatePool(std::move(listeners), WithFlood(flood), pool);
      if (!master.ok()) ::_exit(3);
      ::_exit((*master)->Run().ok() ? 0 : 4);
    }
    listener->Reset();
  }
  // SIGTERM, then the exit status (or -1 after 5 s).
  int Stop() {
    ::kill(pid_, SIGTERM);
    const int status = WaitFor(pid_, 5000);
    if (status != -1) pid_ = -1;
    return status;
  }
};

TEST_F(PoolMasterTest, HandsOffAndReleasesSlotsOnReports) {
  StartPool(limits::FloodOptions{10, 1, absl::ZeroDuration()}, 1);
  UniqueFd a = Connect(port_, "127.0.0.1");
  const pid_t worker = GreetingPid(a.get());
  ASSERT_GT(worker, 0);
  // The per-source cap (1) holds across the hand-off.
  UniqueFd b = Connect(port_, "127.0.0.1");
  EXPECT_EQ(ReadLine(b.get()), "");
  // The client leaves; the worker's report frees the slot.
  a.Reset();
  pid_t again = -1;
  for (int i = 0; i < 100 && again < 0; ++i) {
    UniqueFd c = Connect(port_, "127.0.0.1");
    again = GreetingPid(c.get());
    if (again < 0) ::usleep(20 * 1000);
  }
  EXPECT_EQ(again, worker);
  const int status = Stop();
  ASSERT_NE(status, -1);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(PoolMasterTest, SpreadsOverWorkersLeastLoadedFirst) {
  StartPool(limits::FloodOptions{10, 5, absl::ZeroDuration()}, 2);
  UniqueFd a = Connect(port_, "127.0.0.1");
  UniqueFd b = Connect(port_, "127.0.0.1");
  UniqueFd c = Connect(port_, "127.0.0.1");
  UniqueFd d = Connect(port_, "127.0.0.1");
  std::multiset<pid_t> seen = {GreetingPid(a.get()), GreetingPid(b.get()),
                               GreetingPid(c.get()), GreetingPid(d.get())};
  ASSERT_EQ(seen.count(-1), 0u);
  std::set<pid_t> distinct(seen.begin(), seen.end());
  ASSERT_EQ(distinct.size(), 2u);
  for (pid_t p : distinct) EXPECT_EQ(seen.count(p), 2u);
  a.Reset();
  b.Reset();
  c.Reset();
  d.Reset();
  const int status = Stop();
  ASSERT_NE(status, -1);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(PoolMasterTest, DeadWorkerReleasesItsSlotsAndIsReplaced) {
  StartPool(limits::FloodOptions{10, 1, absl::ZeroDuration()}, 1);
  UniqueFd a = Connect(port_, "127.0.0.1");
  const pid_t worker = GreetingPid(a.get());
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  EXPECT_EQ(ReadLine(a.get()), "");  // its session died with it
  // Same source again: served (slot released) by a new worker. `a` is
  // still open on our side, so only the death could have freed the slot.
  pid_t next = -1;
  for (int i = 0; i < 100 && next < 0; ++i) {
    UniqueFd b = Connect(port_, "127.0.0.1");
    next = GreetingPid(b.get());
    if (next < 0) ::usleep(20 * 1000);
  }
  EXPECT_GT(next, 0);
  EXPECT_NE(next, worker);
  const int status = Stop();
  ASSERT_NE(status, -1);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(PoolMasterTest, SighupReplacesWorkersOldSessionsContinue) {
  StartPool(limits::FloodOptions{10, 5, absl::ZeroDuration()}, 1);
  UniqueFd a = Connect(port_, "127.0.0.1");
  const pid_t old_worker = GreetingPid(a.get());
  ASSERT_GT(old_worker, 0);
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  pid_t fresh = old_worker;
  for (int i = 0; i < 100 && fresh == old_worker; ++i) {
    UniqueFd b = Connect(port_, "127.0.0.1");
    fresh = GreetingPid(b.get());
    if (fresh == old_worker) ::usleep(20 * 1000);
  }
  EXPECT_GT(fresh, 0);
  EXPECT_NE(fresh, old_worker);
  // The old worker drains: still alive while `a` is open.
  EXPECT_EQ(::kill(old_worker, 0), 0);
  EXPECT_EQ(ReadLine(a.get(), 200), "<timeout>");
  a.Reset();
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    // Reaped by the master: kill() then fails with ESRCH.
    gone = ::kill(old_worker, 0) != 0;
    if (!gone) ::usleep(10 * 1000);
  }
  EXPECT_TRUE(gone) << "old worker did not exit after draining";
  const int status = Stop();
  ASSERT_NE(status, -1);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(PoolMasterTest, SigtermDrainsWorkersThenExits) {
  StartPool(limits::FloodOptions{10, 5, absl::ZeroDuration()}, 2);
  UniqueFd a = Connect(port_, "127.0.0.1");
  ASSERT_GT(GreetingPid(a.get()), 0);
  SigtermExpectDraining(pid_, port_);
  a.Reset();
  ExpectDrainedExit(&pid_);
}

TEST_F(PoolMasterTest, SecondSigtermEndsEverything) {
  StartPool(limits::FloodOptions{10, 5, absl::ZeroDuration()}, 1);
  UniqueFd a = Connect(port_, "127.0.0.1");
  ASSERT_GT(GreetingPid(a.get()), 0);
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  ::usleep(200 * 1000);  // let the master take the first one alone
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1);
  pid_ = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadLine(a.get()), "");  // the worker died with the session
}

}  // namespace
}  // namespace popgate::net
