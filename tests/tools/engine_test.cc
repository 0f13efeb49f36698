// Engine + scenarios against a scripted POP3 server on 127.0.0.1 (a thread
// in this test), for a fraction of a second each: sessions complete, replies
// are verified, and server faults land in the right counters.
#include "tools/flood/engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

// Two messages. The second has a line starting with '.', so RETR must stuff
// it and the client must unstuff it to match LIST.
const char* const kMessages[] = {"Subject: one\r\n\r\nhello\r\n",
                                 "Subject: two\r\n\r\n.dot line\r\nend\r\n"};

struct ServerFaults {
  bool list_size_off = false;  // LIST reports one octet too many
  bool no_stuffing = false;    // RETR forgets to dot-stuff
  bool close_after_auth_failure = true;
};

// A blocking, thread-per-connection POP3 server with user "alice"/"secret".
class FakeServer {
 public:
  explicit FakeServer(ServerFaults faults) : faults_(faults) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listen_fd_, 128);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakeServer() {
    stop_ = true;
    acceptor_.join();
    for (std::thread& t : sessions_) t.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  int sessions_seen() const { return seen_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++seen_;
      sessions_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  static std::string Stuff(absl::string_view body) {
    std::string out;
    bool line_start = true;
    for (char c : body) {
      if (line_start && c == '.') out += '.';
      out += c;
      line_start = c == '\n';
    }
    return out;
  }

  void Serve(int fd) {
    timeval tv{0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    auto send_all = [fd](const std::string& s) {
      send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    };
    send_all("+OK fake ready\r\n");
    std::string in;
    bool authed = false;
    char buf[4096];
    while (!stop_) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0) break;
      if (n < 0) continue;  // SO_RCVTIMEO: look at stop_ again
      in.append(buf, n);
      size_t eol;
      bool quit = false;
      while (!quit && (eol = in.find("\r\n")) != std::string::npos) {
        const std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        const std::string verb = line.substr(0, line.find(' '));
        const std::string arg = line.find(' ') == std::string::npos
                                    ? ""
                                    : line.substr(line.find(' ') + 1);
        if (verb == "USER") {
          send_all("+OK\r\n");
        } else if (verb == "PASS") {
          authed = arg == "secret";
          send_all(authed ? "+OK 2 messages\r\n"
                          : "-ERR Authentication failed (bad password?)\r\n");
          if (!authed && faults_.close_after_auth_failure) quit = true;
        } else if (verb == "QUIT") {
          send_all("+OK bye\r\n");
          quit = true;
        } else if (!authed) {
          send_all("-ERR unknown command\r\n");
        } else if (verb == "STAT") {
          send_all(absl::StrCat(
              "+OK 2 ", strlen(kMessages[0]) + strlen(kMessages[1]), "\r\n"));
        } else if (verb == "LIST") {
          const int off = faults_.list_size_off ? 1 : 0;
          send_all(absl::StrCat("+OK\r\n1 ", strlen(kMessages[0]) + off,
                                "\r\n2 ", strlen(kMessages[1]) + off,
                                "\r\n.\r\n"));
        } else if (verb == "UIDL") {
          send_all("+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n");
        } else if (verb == "RETR") {
          int msn = 0;
          if (!absl::SimpleAtoi(arg, &msn) || msn < 1 || msn > 2) {
            send_all("-ERR no such message\r\n");
          } else {
            const std::string body = kMessages[msn - 1];
            send_all(absl::StrCat(
                "+OK\r\n", faults_.no_stuffing ? body : Stuff(body), ".\r\n"));
          }
        } else if (verb == "DELE") {
          send_all("+OK\r\n");
        } else {
          send_all("-ERR unknown command\r\n");
        }
      }
      if (quit) break;
    }
    close(fd);
  }

  const ServerFaults faults_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> seen_{0};
  std::thread acceptor_;
  std::vector<std::thread> sessions_;  // joined at the end; few per test
};

struct RunResult {
  std::vector<ScenarioStats> stats;
  LocalLimits limits;
};

RunResult RunFor(Options options, uint16_t port,
                 absl::Duration duration = absl::Milliseconds(300)) {
  options.users = {{"alice", "secret"}};
  options.threads = 1;
  options.timeout = absl::Seconds(2);
  UidlTracker uidls(false);
  Shared shared{&options, &uidls};
  absl::StatusOr<SockAddr> target = ParseIp("127.0.0.1", port);
  EXPECT_TRUE(target.ok());
  Engine engine(shared, *target, EngineSlice{});
  std::atomic<bool> stop{false};
  engine.Run(duration, stop);
  EXPECT_EQ(engine.open_connections(), 0u);
  return {engine.Snapshot(), engine.limits()};
}

Options WithScenario(ScenarioKind kind, int clients) {
  Options o;
  o.scenarios = {{kind, clients}};
  return o;
}

TEST(EngineTest, PollSessionsSucceedAndVerify) {
  FakeServer server({});
  RunResult r = RunFor(WithScenario(ScenarioKind::kPoll, 2), server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kOk), 5u);
  EXPECT_EQ(s.failed(), 0u) << s.finished();
  for (uint64_t c : s.checks) EXPECT_EQ(c, 0u);
  EXPECT_EQ(s.latency_us.count(), s.outcome(Outcome::kOk));
  EXPECT_GE(s.greeting_us.count(), s.outcome(Outcome::kOk));
  // 5 commands per session, all answered +OK.
  EXPECT_GE(s.commands, 5 * s.outcome(Outcome::kOk));
  EXPECT_GT(s.bytes_in, 0u);
}

TEST(EngineTest, PipelinedDownloadUnstuffsAndMatchesList) {
  FakeServer server({});
  Options o = WithScenario(ScenarioKind::kDownload, 2);
  o.pipeline = true;
  o.dele = true;
  RunResult r = RunFor(o, server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kOk), 5u);
  EXPECT_EQ(s.failed(), 0u);
  EXPECT_EQ(s.check(Check::kRetrSizeMismatch), 0u);
  EXPECT_EQ(s.messages, 2 * s.outcome(Outcome::kOk));
  EXPECT_EQ(s.payload_bytes,
            s.messages / 2 * (strlen(kMessages[0]) + strlen(kMessages[1])));
}

TEST(EngineTest, ListSizeMismatchIsAVerifyError) {
  ServerFaults f;
  f.list_size_off = true;
  FakeServer server(f);
  RunResult r =
      RunFor(WithScenario(ScenarioKind::kRetrThroughput, 1), server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_EQ(s.outcome(Outcome::kOk), 0u);
  EXPECT_GT(s.outcome(Outcome::kVerifyError), 0u);
  EXPECT_GT(s.check(Check::kRetrSizeMismatch), 0u);
  EXPECT_GT(s.check(Check::kStatListMismatch), 0u);
}

TEST(EngineTest, MissingDotStuffingIsAProtocolError) {
  ServerFaults f;
  f.no_stuffing = true;
  FakeServer server(f);
  RunResult r = RunFor(WithScenario(ScenarioKind::kDownload, 1), server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kProtocolError), 0u);
  EXPECT_GT(s.check(Check::kUnstuffedDot), 0u);
}

TEST(EngineTest, GuessingIsCutOffAndNeverLetIn) {
  FakeServer server({});
  RunResult r = RunFor(WithScenario(ScenarioKind::kGuess, 2), server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kClosedByServer), 0u);
  EXPECT_EQ(s.check(Check::kWrongPasswordAccepted), 0u);
  EXPECT_GT(s.err_replies, 0u);
  EXPECT_EQ(s.failed(), 0u);
}

TEST(EngineTest, ConnectCloseCountsAcceptedConnections) {
  FakeServer server({});
  RunResult r =
      RunFor(WithScenario(ScenarioKind::kConnectClose, 4), server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kOk), 10u);
  EXPECT_EQ(s.attacker_accepted(), s.established);
}

TEST(EngineTest, HoldIdleIsHeldAtEnd) {
  FakeServer server({});
  RunResult r = RunFor(WithScenario(ScenarioKind::kHoldIdle, 3), server.port(),
                       absl::Milliseconds(200));
  const ScenarioStats& s = r.stats[0];
  EXPECT_EQ(s.outcome(Outcome::kHeldAtEnd), 3u);
  EXPECT_EQ(s.greetings_ok, 3u);
}

TEST(EngineTest, OverlongLineGetsOneReplyThenQuit) {
  FakeServer server({});
  Options o = WithScenario(ScenarioKind::kOverlong, 1);
  o.overlong_bytes = 100000;
  RunResult r = RunFor(o, server.port());
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kNotClosed), 0u);
  EXPECT_EQ(s.check(Check::kLineSplit), 0u);
}

TEST(EngineTest, RefusedWhenNothingListens) {
  // Grab a free port, then close it so nothing listens there.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  RunResult r = RunFor(WithScenario(ScenarioKind::kPoll, 2),
                       ntohs(addr.sin_port), absl::Milliseconds(100));
  const ScenarioStats& s = r.stats[0];
  EXPECT_GT(s.outcome(Outcome::kRefusedAtConnect), 0u);
  EXPECT_EQ(s.outcome(Outcome::kOk), 0u);
  // The legit backoff keeps a dead server from becoming a busy loop.
  EXPECT_LT(s.connects, 100u);
}

TEST(EngineTest, SourceAddressesAreRoundRobin) {
  FakeServer server({});
  Options o = WithScenario(ScenarioKind::kConnectClose, 2);
  absl::StatusOr<std::vector<SockAddr>> src =
      ParseSourceList("127.0.0.2-127.0.0.3");
  ASSERT_TRUE(src.ok());
  o.sources = *src;
  RunResult r = RunFor(o, server.port(), absl::Milliseconds(100));
  EXPECT_GT(r.stats[0].outcome(Outcome::kOk), 0u);
  EXPECT_EQ(r.stats[0].outcome(Outcome::kLocalError), 0u);
}

TEST(EngineTest, FdBudgetDropsClientsAndSaysSo) {
  FakeServer server({});
  Options o = WithScenario(ScenarioKind::kHoldIdle, 5);
  o.users = {{"alice", "secret"}};
  o.threads = 1;
  UidlTracker uidls(false);
  Shared shared{&o, &uidls};
  EngineSlice slice;
  slice.fd_budget = 2;
  Engine engine(shared, *ParseIp("127.0.0.1", server.port()), slice);
  std::atomic<bool> stop{false};
  engine.Run(absl::Milliseconds(100), stop);
  EXPECT_EQ(engine.limits().clients_dropped, 3u);
  EXPECT_EQ(engine.Snapshot()[0].clients, 5u);
  EXPECT_EQ(engine.Snapshot()[0].clients_run, 2u);
}

}  // namespace
}  // namespace popgate::flood
