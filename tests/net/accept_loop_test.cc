// The -D master in a forked child with a trivial session function: admits,
// refuses silently per source and globally, and shuts down without orphans.
// Needs no root: the session function never authenticates.
#include "net/accept_loop.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "net/listener.h"

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

class MasterTest : public ::testing::Test {
 protected:
  // `exhaust_fds`: once set up, the master's RLIMIT_NOFILE is lowered to
  // its lowest free fd number, so every accept fails with EMFILE.
  void StartMaster(const limits::FloodOptions& flood,
                   bool exhaust_fds = false) {
    auto addr = MakeSocketAddress("127.0.0.1", 0);
    auto listener = OpenListener(*addr);
    ASSERT_TRUE(listener.ok()) << listener.status();
    port_ = Port(*LocalAddress(listener->get()));
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::vector<UniqueFd> listeners;
      listeners.push_back(std::move(*listener));
      auto master = Master::Create(
          std::move(listeners), flood, [](int fd, const SocketAddress&) {
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
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    refused = !Connect(port_, "127.0.0.4").valid();
    if (!refused) ::usleep(10 * 1000);
  }
  EXPECT_TRUE(refused) << "listener still open after SIGTERM";
  EXPECT_EQ(WaitFor(pid_, 200), -1) << "master exited with sessions running";
  b.Reset();
  d.Reset();
  const int status = WaitFor(pid_, 5000);
  ASSERT_NE(status, -1) << "master did not exit after its sessions ended";
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
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

}  // namespace
}  // namespace popgate::net
