// RunAuthProcess on a thread of the test, over socketpairs, with a fake
// backend: the test plays the master (control channel) and the workers.
// Waits are poll()s on the channels with a generous safety timeout, never
// sleeps; penalty timing is checked by ordering plus a lower bound only.
#include "net/auth_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/pool_protocol.h"
#include "net/unique_fd.h"
#include "tests/testing/status_matchers.h"

namespace popgate::net {
namespace {

using core::auth::AuthenticatedUser;
using ::popgate::testing::IsOk;

constexpr int kSafetyTimeoutMs = 10000;

// alice/secret -> uid 1000; root/toor -> uid 0 (a broken backend);
// "broken" -> backend failure; "held" waits for Open() and then succeeds.
class FakeAuthenticator : public core::auth::Authenticator {
 public:
  absl::StatusOr<AuthenticatedUser> Authenticate(absl::string_view user,
                                                 absl::string_view password,
                                                 bool* known_user) override {
    return AuthenticateFrom("", user, password, known_user);
  }
  absl::StatusOr<AuthenticatedUser> AuthenticateFrom(
      absl::string_view remote_host, absl::string_view user,
      absl::string_view password, bool* known_user) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      last_host_ = std::string(remote_host);
      if (user == "held") mu_.Await(absl::Condition(&open_));
    }
    if (known_user) *known_user = user != "nobody";
    if (user == "broken") return absl::UnavailableError("down");
    if (user == "alice" && password == "secret") {
      return AuthenticatedUser{"alice", 1000, 100, "/home/alice"};
    }
    if (user == "root" && password == "toor") {
      return AuthenticatedUser{"root", 0, 0, "/root"};
    }
    if (user == "held") return AuthenticatedUser{"held", 1001, 100, "/h"};
    return core::auth::AuthFailedError();
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // Waits (safety timeout) until the backend has been entered n times.
  bool WaitForCalls(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached),
                                absl::Milliseconds(kSafetyTimeoutMs));
  }
  std::string last_host() {
    absl::MutexLock lock(&mu_);
    return last_host_;
  }

 private:
  absl::Mutex mu_;
  bool open_ = false;
  int calls_ = 0;
  std::string last_host_;
};

AuthProcessOptions TestOptions() {
  AuthProcessOptions options;
  options.threads = 1;
  options.max_queue = 16;
  options.cache_entries = 64;
  options.cache_ttl = absl::Minutes(5);
  // No penalties unless a test asks: free failures, no lockout.
  options.penalty.free_failures = 1000;
  options.penalty.lockout_failures = 0;
  options.penalty.max_sources = 64;
  return options;
}

class AuthProcessTest : public ::testing::Test {
 protected:
  void TearDown() override {
    fake_.Open();  // never leave a pool thread held
    if (thread_.joinable()) Stop();
  }

  void Start(const AuthProcessOptions& options,
             std::function<bool()> source_changed = nullptr,
             std::function<void()> reload = nullptr) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    control_.Reset(sv[0]);
    thread_ = std::thread([this, options, sv1 = sv[1],
                           source_changed = std::move(source_changed),
                           reload = std::move(reload)]() mutable {
      exit_code_ = RunAuthProcess(options, fake_, std::move(source_changed),
                                  std::move(reload), UniqueFd(sv1));
    });
  }

  // Closes control (master gone) and waits for the loop to return.
  int Stop() {
    control_.Reset();
    thread_.join();
    return exit_code_;
  }

  // A new worker: its channel's far end goes to the auth process.
  UniqueFd AddWorker() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd far(sv[1]);
    EXPECT_THAT(
        SendMessage(control_.get(), std::string(1, kAuthChannelTag), far.get()),
        IsOk());
    return UniqueFd(sv[0]);
  }

  static void Request(const UniqueFd& worker, uint64_t id,
                      absl::string_view user, absl::string_view password,
                      absl::string_view host = "192.0.2.1") {
    AuthWireRequest request;
    request.request_id = id;
    request.remote_host = std::string(host);
    request.user = std::string(user);
    request.password = std::string(password);
    ASSERT_THAT(SendMessage(worker.get(), EncodeAuthRequest(request)), IsOk());
  }

  // The next reply on `worker`; a kTempFailure with id 0 on timeout.
  static AuthWireReply Receive(const UniqueFd& worker) {
    AuthWireReply failed;
    failed.verdict = AuthWireVerdict::kTempFailure;
    pollfd p{worker.get(), POLLIN, 0};
    if (::poll(&p, 1, kSafetyTimeoutMs) != 1) {
      ADD_FAILURE() << "no reply within the safety timeout";
      return failed;
    }
    std::string bytes;
    absl::StatusOr<bool> received =
        ReceiveMessage(worker.get(), &bytes, nullptr);
    if (!received.ok() || !*received) {
      ADD_FAILURE() << "channel failed or closed";
      return failed;
    }
    absl::StatusOr<AuthWireReply> reply = DecodeAuthReply(bytes);
    EXPECT_THAT(reply, IsOk());
    return reply.ok() ? *reply : AuthWireReply{};
  }

  static bool HasReply(const UniqueFd& worker) {
    pollfd p{worker.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

  FakeAuthenticator fake_;
  UniqueFd control_;
  std::thread thread_;
  int exit_code_ = -1;
};

TEST_F(AuthProcessTest, RightPasswordIsOk) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 11, "alice", "secret", "2001:db8::5");
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 11u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kOk);
  EXPECT_TRUE(reply.known_user);
  EXPECT_EQ(reply.uid, 1000u);
  EXPECT_EQ(reply.gid, 100u);
  EXPECT_EQ(reply.name, "alice");
  EXPECT_EQ(reply.home, "/home/alice");
  EXPECT_EQ(fake_.last_host(), "2001:db8::5");  // for PAM_RHOST
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, WrongPasswordIsDenied) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "wrong");
  Request(worker, 2, "nobody", "x");
  AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 1u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kDenied);
  EXPECT_TRUE(reply.known_user);
  EXPECT_EQ(reply.name, "");
  reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 2u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kDenied);
  EXPECT_FALSE(reply.known_user);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, NonNumericHostIsNotPassedToTheBackend) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "secret", "evil.example\nInjected");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(fake_.last_host(), "");
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, BackendFailureIsTempFailure) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 3, "broken", "x");
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 3u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kTempFailure);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, UidZeroIsNeverOk) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "root", "toor");
  AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kDenied);
  EXPECT_EQ(reply.uid, 0u);
  EXPECT_EQ(reply.name, "");
  // ...and not from the cache either.
  Request(worker, 2, "root", "toor");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kDenied);
  EXPECT_EQ(fake_.calls(), 2);
  EXPECT_EQ(Stop(), 0);
}

// A penalised refusal is held on a timer while other work goes on: the
// later, successful request from another source is answered first.
TEST_F(AuthProcessTest, DenialIsHeldForThePenaltyDelay) {
  constexpr absl::Duration kDelay = absl::Milliseconds(200);
  AuthProcessOptions options = TestOptions();
  options.penalty.free_failures = 0;
  options.penalty.base_delay = kDelay;
  options.penalty.max_delay = kDelay;
  Start(options);
  UniqueFd worker = AddWorker();
  const absl::Time sent = absl::Now();
  Request(worker, 1, "alice", "wrong", "192.0.2.1");
  Request(worker, 2, "alice", "secret", "198.51.100.1");
  AuthWireReply first = Receive(worker);
  AuthWireReply second = Receive(worker);
  const absl::Duration waited = absl::Now() - sent;
  EXPECT_EQ(first.request_id, 2u);
  EXPECT_EQ(first.verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(second.request_id, 1u);
  EXPECT_EQ(second.verdict, AuthWireVerdict::kDenied);
  EXPECT_GE(waited, kDelay);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, LockedOutSourceIsDeniedWithoutHashing) {
  AuthProcessOptions options = TestOptions();
  options.penalty.free_failures = 0;
  options.penalty.base_delay = absl::Milliseconds(1);
  options.penalty.max_delay = absl::Milliseconds(1);
  options.penalty.lockout_failures = 2;
  options.penalty.lockout = absl::Minutes(10);
  Start(options);
  UniqueFd worker = AddWorker();
  // Enough failures to lock out under either reading of "past a
  // threshold"; each is answered before the next is sent.
  for (uint64_t id = 1; id <= 3; ++id) {
    Request(worker, id, "alice", "wrong", "203.0.113.9");
    EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kDenied);
  }
  const int calls = fake_.calls();
  EXPECT_GE(calls, 2);
  EXPECT_LE(calls, 3);
  // The right password from the locked-out source: refused, no hash.
  Request(worker, 4, "alice", "secret", "203.0.113.9");
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 4u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kDenied);
  EXPECT_EQ(fake_.calls(), calls);
  // Another source is unaffected.
  Request(worker, 5, "alice", "secret", "198.51.100.1");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(fake_.calls(), calls + 1);
  EXPECT_EQ(Stop(), 0);
}

// threads (1) + max_queue (1) verifications at most; the next request is
// answered kTempFailure at once, while the others are still running.
TEST_F(AuthProcessTest, FullQueueIsTempFailureAtOnce) {
  AuthProcessOptions options = TestOptions();
  options.max_queue = 1;
  Start(options);
  UniqueFd worker = AddWorker();
  Request(worker, 1, "held", "x");
  Request(worker, 2, "held", "x");
  Request(worker, 3, "alice", "secret");
  AuthWireReply reply = Receive(worker);  // the backend is still held
  EXPECT_EQ(reply.request_id, 3u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kTempFailure);
  fake_.Open();
  EXPECT_EQ(Receive(worker).request_id, 1u);
  EXPECT_EQ(Receive(worker).request_id, 2u);
  EXPECT_EQ(fake_.calls(), 2);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, CacheHitSkipsTheBackend) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  Request(worker, 2, "alice", "secret");
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 2u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(reply.uid, 1000u);
  EXPECT_EQ(reply.home, "/home/alice");
  EXPECT_EQ(fake_.calls(), 1);
  // A wrong password is never answered from the cache.
  Request(worker, 3, "alice", "wrong");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kDenied);
  EXPECT_EQ(fake_.calls(), 2);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, DisabledCacheAlwaysHashes) {
  AuthProcessOptions options = TestOptions();
  options.cache_entries = 0;
  Start(options);
  UniqueFd worker = AddWorker();
  for (uint64_t id = 1; id <= 2; ++id) {
    Request(worker, id, "alice", "secret");
    EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  }
  EXPECT_EQ(fake_.calls(), 2);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, MalformedRequestsAreDroppedNotFatal) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  const std::string valid =
      EncodeAuthRequest(AuthWireRequest{9, "192.0.2.1", "alice", "secret"});
  ASSERT_THAT(SendMessage(worker.get(), "garbage"), IsOk());
  ASSERT_THAT(SendMessage(worker.get(), valid.substr(0, valid.size() - 1)),
              IsOk());
  ASSERT_THAT(SendMessage(worker.get(), valid + "trailing"), IsOk());
  ASSERT_THAT(SendMessage(worker.get(), EncodeAuthReply(AuthWireReply{})),
              IsOk());
  ASSERT_THAT(SendMessage(worker.get(), std::string(kMaxMessageBytes, '\xff')),
              IsOk());
  // An fd from a worker is closed, the request itself still served.
  UniqueFd junk(::eventfd(0, EFD_CLOEXEC));
  ASSERT_THAT(SendMessage(worker.get(),
                          EncodeAuthRequest(AuthWireRequest{7, "192.0.2.1",
                                                            "alice", "secret"}),
                          junk.get()),
              IsOk());
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 7u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(fake_.calls(), 1);  // nothing malformed reached the backend
  EXPECT_FALSE(HasReply(worker));
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, WorkersAreServedIndependently) {
  Start(TestOptions());
  UniqueFd one = AddWorker();
  UniqueFd two = AddWorker();
  Request(one, 1, "alice", "secret");
  Request(two, 1, "alice", "wrong");
  EXPECT_EQ(Receive(two).verdict, AuthWireVerdict::kDenied);
  EXPECT_EQ(Receive(one).verdict, AuthWireVerdict::kOk);
  EXPECT_FALSE(HasReply(one));
  EXPECT_FALSE(HasReply(two));
  EXPECT_EQ(Stop(), 0);
}

// A worker that died with a verification running: its reply is dropped and
// the process goes on serving the others.
TEST_F(AuthProcessTest, ReplyToAClosedWorkerIsDropped) {
  Start(TestOptions());
  UniqueFd gone = AddWorker();
  Request(gone, 1, "held", "x");
  UniqueFd alive = AddWorker();
  gone.Reset();
  fake_.Open();
  Request(alive, 2, "alice", "secret");
  const AuthWireReply reply = Receive(alive);
  EXPECT_EQ(reply.request_id, 2u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, ControlEofFinishesInFlightWorkThenExits) {
  Start(TestOptions());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "held", "x");
  // In the backend before control closes (once draining, requests are no
  // longer read).
  ASSERT_TRUE(fake_.WaitForCalls(1));
  control_.Reset();
  fake_.Open();
  const AuthWireReply reply = Receive(worker);
  EXPECT_EQ(reply.request_id, 1u);
  EXPECT_EQ(reply.verdict, AuthWireVerdict::kOk);
  thread_.join();
  EXPECT_EQ(exit_code_, 0);
}

TEST_F(AuthProcessTest, ControlEofWithNothingInFlightExitsAtOnce) {
  Start(TestOptions());
  EXPECT_EQ(Stop(), 0);
}

TEST_F(AuthProcessTest, UnexpectedControlMessagesAreIgnored) {
  Start(TestOptions());
  ASSERT_THAT(SendMessage(control_.get(), "A"), IsOk());  // tag, no fd
  ASSERT_THAT(SendMessage(control_.get(), "not a channel"), IsOk());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(Stop(), 0);
}

// An eventfd the reload callback bumps, so the test can wait for it.
class ReloadCounter {
 public:
  ReloadCounter() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  std::function<void()> Callback() {
    return [fd = fd_.get()] {
      const uint64_t one = 1;
      (void)!::write(fd, &one, sizeof(one));
    };
  }
  // Waits (safety timeout) for at least one reload; returns how many.
  uint64_t Wait() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, kSafetyTimeoutMs) != 1) return 0;
    uint64_t count = 0;
    (void)!::read(fd_.get(), &count, sizeof(count));
    return count;
  }

 private:
  UniqueFd fd_;
};

// source_changed() is asked at most once a second: a burst of requests
// costs one check (a stat() in production), not one each.
TEST_F(AuthProcessTest, SourceCheckIsRateLimited) {
  std::atomic<int> asked{0};
  Start(
      TestOptions(),
      [&] {
        ++asked;
        return false;
      },
      nullptr);
  UniqueFd worker = AddWorker();
  const absl::Time start = absl::Now();
  for (uint64_t id = 1; id <= 5; ++id) {
    Request(worker, id, "alice", "secret");
    EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  }
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(asked.load(), 1);
  EXPECT_LE(asked.load(), 1 + absl::ToInt64Seconds(elapsed) + 1);
  EXPECT_EQ(fake_.calls(), 1);  // no change, so the cache stayed
  EXPECT_EQ(Stop(), 0);
}

// The first check happens before the first request is served, so a change
// made while the process was idle is seen in time.
TEST_F(AuthProcessTest, ChangedSourceReloads) {
  ReloadCounter reloads;
  Start(
      TestOptions(), [] { return true; }, reloads.Callback());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_GE(reloads.Wait(), 1u);
  EXPECT_EQ(Stop(), 0);
}

// SIGHUP is taken through a signalfd: blocked in this thread before the
// loop starts (its thread inherits the mask), so the process-directed
// signal waits for the signalfd instead of killing the test.
TEST_F(AuthProcessTest, SighupReloadsAndFlushesTheCache) {
  sigset_t hup, old;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &hup, &old), 0);
  ReloadCounter reloads;
  Start(TestOptions(), nullptr, reloads.Callback());
  UniqueFd worker = AddWorker();
  Request(worker, 1, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  Request(worker, 2, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(fake_.calls(), 1);

  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  EXPECT_EQ(reloads.Wait(), 1u);
  Request(worker, 3, "alice", "secret");
  EXPECT_EQ(Receive(worker).verdict, AuthWireVerdict::kOk);
  EXPECT_EQ(fake_.calls(), 2);  // flushed: hashed again
  EXPECT_EQ(Stop(), 0);
  // The signal was consumed by the signalfd; nothing is pending now.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGHUP));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace
}  // namespace popgate::net
