// MaildropOpener: results come back tagged and in order through the
// eventfd, opens run on the opener's thread (a blocked open does not block
// Submit), and the destructor drops what has not started, waits for the
// open in progress, and leaves a stuck one behind after its grace.
//
// The open functions share their state through a shared_ptr captured by
// value: the opener's thread may outlive the test body (the stuck case).
#include "net/maildrop_opener.h"

#include <poll.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_maildrop.h"

namespace popgate::net {
namespace {

// A gate the open function waits at until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int entered = 0;   // opens that reached the gate
  int finished = 0;  // opens that passed it
  std::thread::id thread;

  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  // Waits (bounded) until `n` opens reached the gate.
  bool WaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return entered >= n; });
  }
  bool WaitFinished(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return finished >= n; });
  }
};

// Opens a FakeMaildrop with one message per path character count, or
// fails for path "locked" (Unavailable), after passing `gate` (if given).
MaildropOpener::OpenFn GatedOpen(std::shared_ptr<Gate> gate) {
  return [gate](const std::string& path, const std::string& state_dir,
                uid_t owner)
             -> absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> {
    {
      std::unique_lock<std::mutex> lock(gate->mu);
      gate->thread = std::this_thread::get_id();
      ++gate->entered;
      gate->cv.notify_all();
      gate->cv.wait(lock, [&] { return gate->open; });
      ++gate->finished;
      gate->cv.notify_all();
    }
    if (path == "locked") return absl::UnavailableError("locked");
    auto drop = std::make_unique<testing::FakeMaildrop>();
    drop->Add(absl::StrCat(path, " ", state_dir, " ", owner, "\n"));
    return std::unique_ptr<mailbox::Maildrop>(std::move(drop));
  };
}

MaildropOpener::Request MakeRequest(uint64_t tag, std::string path) {
  MaildropOpener::Request request;
  request.tag = tag;
  request.path = std::move(path);
  request.state_dir = "/state/1000";
  request.owner = 1000;
  return request;
}

// Takes results until `n` came (each wait on ready_fd bounded), in order.
std::vector<MaildropOpener::Result> Collect(MaildropOpener& opener, size_t n) {
  std::vector<MaildropOpener::Result> all;
  for (int round = 0; round < 100 && all.size() < n; ++round) {
    pollfd pfd{opener.ready_fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 10000) != 1) break;
    for (auto& r : opener.TakeResults()) all.push_back(std::move(r));
  }
  return all;
}

TEST(MaildropOpenerTest, ResultsComeBackTaggedAndInOrder) {
  auto gate = std::make_shared<Gate>();
  gate->Open();
  auto opener = MaildropOpener::Start(GatedOpen(gate));
  ASSERT_TRUE(opener.ok()) << opener.status();
  (*opener)->Submit(MakeRequest(7, "/var/mail/a"));
  (*opener)->Submit(MakeRequest(3, "locked"));
  (*opener)->Submit(MakeRequest(9, "/var/mail/b"));
  std::vector<MaildropOpener::Result> results = Collect(**opener, 3);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].tag, 7u);
  EXPECT_EQ(results[1].tag, 3u);
  EXPECT_EQ(results[2].tag, 9u);
  ASSERT_TRUE(results[0].maildrop.ok());
  EXPECT_EQ((*results[0].maildrop)->message_count(), 1u);
  EXPECT_TRUE(absl::IsUnavailable(results[1].maildrop.status()));
  ASSERT_TRUE(results[2].maildrop.ok());
  // Nothing more. The eventfd may still be readable: a result posted
  // between Collect's read of it and its take leaves a stale wake-up,
  // which a take answers with nothing and clears.
  EXPECT_TRUE((*opener)->TakeResults().empty());
  pollfd pfd{(*opener)->ready_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
}

TEST(MaildropOpenerTest, ABlockedOpenBlocksNeitherSubmitNorTheCaller) {
  auto gate = std::make_shared<Gate>();
  auto opener = MaildropOpener::Start(GatedOpen(gate));
  ASSERT_TRUE(opener.ok());
  (*opener)->Submit(MakeRequest(1, "/var/mail/a"));
  ASSERT_TRUE(gate->WaitEntered(1));
  (*opener)->Submit(MakeRequest(2, "/var/mail/b"));  // returns at once
  EXPECT_NE(gate->thread, std::this_thread::get_id());
  EXPECT_TRUE((*opener)->TakeResults().empty());
  gate->Open();
  std::vector<MaildropOpener::Result> results = Collect(**opener, 2);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].tag, 1u);
  EXPECT_EQ(results[1].tag, 2u);
}

TEST(MaildropOpenerTest, DestructorFinishesTheOpenInProgressDropsTheRest) {
  auto gate = std::make_shared<Gate>();
  {
    auto opener = MaildropOpener::Start(GatedOpen(gate), absl::Seconds(30));
    ASSERT_TRUE(opener.ok());
    (*opener)->Submit(MakeRequest(1, "/var/mail/a"));
    ASSERT_TRUE(gate->WaitEntered(1));
    (*opener)->Submit(MakeRequest(2, "/var/mail/b"));
    (*opener)->Submit(MakeRequest(3, "/var/mail/c"));
    std::thread opener_of_the_gate([gate] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      gate->Open();
    });
    opener->reset();  // waits for open 1, never starts 2 and 3
    opener_of_the_gate.join();
  }
  std::lock_guard<std::mutex> lock(gate->mu);
  EXPECT_EQ(gate->entered, 1);
  EXPECT_EQ(gate->finished, 1);
}

TEST(MaildropOpenerTest, DestructorLeavesAStuckOpenBehindAfterItsGrace) {
  auto gate = std::make_shared<Gate>();
  auto opener = MaildropOpener::Start(GatedOpen(gate), absl::Milliseconds(50));
  ASSERT_TRUE(opener.ok());
  (*opener)->Submit(MakeRequest(1, "/var/mail/a"));
  ASSERT_TRUE(gate->WaitEntered(1));
  const auto start = std::chrono::steady_clock::now();
  opener->reset();  // the open is still at the gate: returns after the grace
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // The thread left behind finishes once its open does, touching only what
  // it shares (kept alive by its own references).
  gate->Open();
  EXPECT_TRUE(gate->WaitFinished(1));
}

}  // namespace
}  // namespace popgate::net
