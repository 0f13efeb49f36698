#include "core/auth/auth_service.h"

#include <poll.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core::auth {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

// alice/secret succeeds; "broken" is a backend failure; "held" waits until
// Open() (to keep pool threads busy); everything else is refused.
class FakeAuthenticator : public Authenticator {
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
      hosts_.emplace_back(remote_host);
      if (user == "held") mu_.Await(absl::Condition(&open_));
    }
    *known_user = user == "alice" || user == "held";
    if (user == "broken") return absl::UnavailableError("backend down");
    if ((user == "alice" && password == "secret") || user == "held") {
      return AuthenticatedUser{std::string(user), 1000, 100, "/home"};
    }
    return AuthFailedError();
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<std::string> hosts() {
    absl::MutexLock lock(&mu_);
    return hosts_;
  }

 private:
  absl::Mutex mu_;
  bool open_ = false;
  int calls_ = 0;
  std::vector<std::string> hosts_;
};

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

// Waits on the eventfd, as the auth process loop does, until `count`
// completions arrived (10 s safety net, never reached when correct).
std::map<uint64_t, AuthCompletion> Collect(AuthService& service, size_t count) {
  std::map<uint64_t, AuthCompletion> out;
  while (out.size() < count) {
    if (!Readable(service.wake_fd(), 10000)) {
      ADD_FAILURE() << "no wake-up; have " << out.size() << " of " << count;
      break;
    }
    service.DrainCompletions([&](AuthCompletion completion) {
      const uint64_t tag = completion.tag;
      out.emplace(tag, std::move(completion));
    });
  }
  return out;
}

std::unique_ptr<AuthService> MakeService(Authenticator& authenticator,
                                         int threads, size_t max_queue) {
  absl::StatusOr<std::unique_ptr<AuthService>> service =
      AuthService::Create(authenticator, threads, max_queue);
  EXPECT_THAT(service, IsOk());
  return service.ok() ? std::move(*service) : nullptr;
}

TEST(AuthServiceTest, CompletionsCarryEachResult) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 2, 8);
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(service->Submit(AuthJob(1, "192.0.2.1", "alice", "secret")));
  ASSERT_TRUE(service->Submit(AuthJob(2, "192.0.2.2", "alice", "wrong")));
  ASSERT_TRUE(service->Submit(AuthJob(3, "", "broken", "x")));
  std::map<uint64_t, AuthCompletion> done = Collect(*service, 3);
  ASSERT_EQ(done.size(), 3u);

  ASSERT_THAT(done[1].result, IsOk());
  EXPECT_EQ(done[1].result->name, "alice");
  EXPECT_EQ(done[1].result->uid, 1000u);
  EXPECT_TRUE(done[1].known_user);
  EXPECT_THAT(done[2].result, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(done[2].known_user);
  EXPECT_THAT(done[3].result, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(done[3].known_user);

  EXPECT_THAT(fake.hosts(),
              ::testing::UnorderedElementsAre("192.0.2.1", "192.0.2.2", ""));
  EXPECT_EQ(service->in_flight(), 0u);
}

TEST(AuthServiceTest, EventfdWakesOnlyWhenSomethingCompleted) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 1, 4);
  ASSERT_NE(service, nullptr);
  EXPECT_FALSE(Readable(service->wake_fd(), 0));
  ASSERT_TRUE(service->Submit(AuthJob(7, "", "held", "x")));
  // Held in the backend: nothing completed, nothing to wake for.
  EXPECT_FALSE(Readable(service->wake_fd(), 0));
  EXPECT_EQ(service->in_flight(), 1u);
  fake.Open();
  ASSERT_TRUE(Readable(service->wake_fd(), 10000));
  EXPECT_EQ(
      service->DrainCompletions([](AuthCompletion c) { EXPECT_EQ(c.tag, 7u); }),
      1u);
  // Drained: the eventfd is reset.
  EXPECT_FALSE(Readable(service->wake_fd(), 0));
  EXPECT_EQ(service->DrainCompletions([](AuthCompletion) {
    ADD_FAILURE() << "nothing should be left";
  }),
            0u);
}

// threads + max_queue jobs at most; the next Submit is refused at once
// (the caller answers [SYS/TEMP]) and the pool recovers once jobs finish.
TEST(AuthServiceTest, FullQueueRefusesWithoutBlocking) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 1, 2);
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(service->Submit(AuthJob(1, "", "held", "x")));
  ASSERT_TRUE(service->Submit(AuthJob(2, "", "held", "x")));
  ASSERT_TRUE(service->Submit(AuthJob(3, "", "held", "x")));
  EXPECT_FALSE(service->Submit(AuthJob(4, "", "alice", "secret")));
  EXPECT_FALSE(service->Submit(AuthJob(5, "", "alice", "secret")));
  EXPECT_EQ(service->in_flight(), 3u);
  EXPECT_LE(fake.calls(), 1);  // one thread: at most one job started

  fake.Open();
  std::map<uint64_t, AuthCompletion> done = Collect(*service, 3);
  EXPECT_EQ(done.size(), 3u);
  EXPECT_EQ(done.count(4), 0u);
  EXPECT_EQ(fake.calls(), 3);

  ASSERT_TRUE(service->Submit(AuthJob(6, "", "alice", "secret")));
  done = Collect(*service, 1);
  ASSERT_EQ(done.count(6), 1u);
  EXPECT_THAT(done[6].result, IsOk());
}

TEST(AuthServiceTest, ZeroQueueStillRunsOnePerThread) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 2, 0);
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(service->Submit(AuthJob(1, "", "held", "x")));
  ASSERT_TRUE(service->Submit(AuthJob(2, "", "held", "x")));
  EXPECT_FALSE(service->Submit(AuthJob(3, "", "held", "x")));
  fake.Open();
  EXPECT_EQ(Collect(*service, 2).size(), 2u);
}

TEST(AuthServiceTest, UndrainedCompletionsCountAsInFlight) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 1, 1);
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(service->Submit(AuthJob(1, "", "alice", "secret")));
  ASSERT_TRUE(Readable(service->wake_fd(), 10000));
  EXPECT_EQ(service->in_flight(), 1u);
  service->DrainCompletions([](AuthCompletion) {});
  EXPECT_EQ(service->in_flight(), 0u);
}

// Destruction with queued jobs and undrained completions neither hangs
// nor leaks (ASan builds check the latter).
TEST(AuthServiceTest, DestructionDropsQueuedJobs) {
  FakeAuthenticator fake;
  auto service = MakeService(fake, 1, 8);
  ASSERT_NE(service, nullptr);
  for (uint64_t tag = 1; tag <= 4; ++tag) {
    ASSERT_TRUE(service->Submit(AuthJob(tag, "", "alice", "secret")));
  }
  service.reset();
  EXPECT_LE(fake.calls(), 4);
}

TEST(WipeSecretTest, ClearsEveryByteOfTheBuffer) {
  std::string secret = "hunter2-hunter2-hunter2-hunter2";  // heap buffer
  const char* data = secret.data();
  const size_t capacity = secret.capacity();
  WipeSecret(&secret);
  EXPECT_TRUE(secret.empty());
  ASSERT_EQ(secret.data(), data);  // no reallocation: same buffer
  for (size_t i = 0; i < capacity; ++i) {
    EXPECT_EQ(data[i], '\0') << i;
  }
}

TEST(WipeSecretTest, CoversTheInlineBufferOfAMovedFromString) {
  std::string secret = "short";  // fits the inline (SSO) buffer
  std::string moved = std::move(secret);
  secret.clear();  // moved-from: valid but unspecified
  const char* data = secret.data();
  WipeSecret(&secret);
  for (size_t i = 0; i < secret.capacity(); ++i) {
    EXPECT_EQ(data[i], '\0') << i;
  }
  EXPECT_EQ(moved, "short");
}

}  // namespace
}  // namespace popgate::core::auth
