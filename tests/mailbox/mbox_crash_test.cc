// Crash safety of the mbox update (mailbox/mbox_update.h). A forked child
// opens the mailbox and commits deletions; it dies (_exit from the crash
// hook, or SIGKILL at a random time) at every crash point, including every
// copied chunk. Another process delivers mail with fcntl-locked appends
// before and after the crash. Then a reopen (which repairs) must show every
// kept and every delivered message exactly once, byte for byte, and every
// deleted one either gone or whole. Repair itself is crashed at every point
// too.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mailbox/mbox.h"
#include "mailbox/mbox_index.h"
#include "mailbox/mbox_maildrop.h"
#include "mailbox/mbox_update.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::AppendLocked;
using ::popgate::mailbox::testing::ReadFile;
using ::popgate::mailbox::testing::TempDir;
using ::popgate::mailbox::testing::WriteFile;
using ::popgate::testing::IsOk;

constexpr int kHookExit = 42;
constexpr size_t kChunk = 128;
constexpr int kOriginal = 6;

std::string Message(int n) {
  std::string m =
      absl::StrCat("From sender", n, "@example.org Mon Jan  1 00:00:00 2024\n",
                   "Received: from mx", n, "\nSubject: m", n, "\n\n");
  for (int i = 0; i < 1 + n % 4 * 3; ++i) {
    absl::StrAppend(&m, "body of ", n, " line ", i, "\n");
  }
  return m + "\n";
}

// The expected file, message by message; optional ones may be absent.
struct Expected {
  std::string text;
  bool optional;
};

// Parses `file` and checks it is exactly `want` with optional entries
// dropped or kept whole.
void CheckMailbox(const std::string& file, const std::vector<Expected>& want) {
  auto index = IndexMbox(file, 1000);
  ASSERT_THAT(index, IsOk()) << file;
  size_t next = 0;
  for (const Expected& e : want) {
    if (next < index->size()) {
      const MboxMessage& m = (*index)[next];
      if (file.compare(m.raw_offset, m.raw_size, e.text) == 0) {
        ++next;
        continue;
      }
    }
    ASSERT_TRUE(e.optional) << "missing or damaged:\n"
                            << e.text << "\nin file:\n"
                            << file;
  }
  EXPECT_EQ(next, index->size()) << "unexpected extra data in:\n" << file;
}

class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_) != 0) std::abort();
  }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void Signal() {
    char c = 1;
    if (::write(fds_[1], &c, 1) != 1) std::abort();
  }
  bool Wait() {
    char c;
    return ::read(fds_[0], &c, 1) == 1;
  }

 private:
  int fds_[2];
};

struct ChildResult {
  bool crashed;   // Died at the crash point (or by SIGKILL).
  bool finished;  // Ran to the end with OK.
};

// Forks a child that opens `path` (repairing if needed), tells us, waits,
// and commits `deleted` with the crash hook set to die at hook call
// `crash_at` (0: never). `sleep_us` per hook call widens the window for
// random kills. The parent appends `during` between the open and the
// commit; with `kill_after_us`, it SIGKILLs the child that long after.
ChildResult RunChild(const std::string& path, const std::string& redo_dir,
                     std::vector<size_t> deleted, int crash_at,
                     const std::string& during,
                     std::optional<int> kill_after_us = std::nullopt,
                     int sleep_us = 0) {
  Pipe ready, go;
  pid_t pid = ::fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    int calls = 0;
    SetUpdateHooksForTest(
        [&calls, crash_at, sleep_us](int step) {
          if (++calls == crash_at) _exit(kHookExit);
          if (sleep_us > 0) ::usleep(sleep_us);
        },
        kChunk);
    MboxOptions options;
    options.redo_dir = redo_dir;
    auto md = OpenMbox(path, options);
    if (!md.ok()) _exit(3);
    ready.Signal();
    if (!go.Wait()) _exit(4);
    absl::Status status = (*md)->Commit(deleted);
    _exit(status.ok() ? 0 : 5);
  }
  EXPECT_TRUE(ready.Wait());
  if (!during.empty()) {
    EXPECT_TRUE(AppendLocked(path, during));
  }
  go.Signal();
  if (kill_after_us.has_value()) {
    ::usleep(*kill_after_us);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  ChildResult result;
  result.crashed = (WIFEXITED(status) && WEXITSTATUS(status) == kHookExit) ||
                   (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  result.finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  EXPECT_TRUE(result.crashed || result.finished) << "child status " << status;
  return result;
}

// A child that only opens (and so repairs), dying at hook call `crash_at`.
bool RunRepairChild(const std::string& path, const std::string& redo_dir,
                    int crash_at) {
  pid_t pid = ::fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    int calls = 0;
    SetUpdateHooksForTest(
        [&calls, crash_at](int) {
          if (++calls == crash_at) _exit(kHookExit);
        },
        kChunk);
    MboxOptions options;
    options.redo_dir = redo_dir;
    _exit(OpenMbox(path, options).ok() ? 0 : 3);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_TRUE(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == kHookExit);
  return WEXITSTATUS(status) == kHookExit;
}

bool RedoExists(const std::string& path, const std::string& redo_dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  return std::filesystem::exists(RedoPath(redo_dir, st.st_dev, st.st_ino));
}

std::vector<Expected> Expectation(const std::vector<size_t>& deleted,
                                  const std::vector<std::string>& appended,
                                  bool first_optional = false) {
  std::vector<Expected> want;
  for (int i = 0; i < kOriginal; ++i) {
    bool del = std::find(deleted.begin(), deleted.end(),
                         static_cast<size_t>(i)) != deleted.end();
    want.push_back({Message(i), del || (i == 0 && first_optional)});
  }
  for (const std::string& a : appended) want.push_back({a, false});
  return want;
}

std::string Originals() {
  std::string s;
  for (int i = 0; i < kOriginal; ++i) s += Message(i);
  return s;
}

// Reopens in this process (repairing), checks, then proves the result is
// a healthy mailbox by committing one more deletion.
void ReopenAndCheck(const std::string& path, const std::string& redo_dir,
                    const std::vector<Expected>& want) {
  MboxOptions options;
  options.redo_dir = redo_dir;
  auto md = OpenMbox(path, options);
  ASSERT_THAT(md, IsOk());
  EXPECT_FALSE(RedoExists(path, redo_dir));
  CheckMailbox(ReadFile(path), want);
  ASSERT_THAT((*md)->Commit({0}), IsOk());
  EXPECT_FALSE(RedoExists(path, redo_dir));
}

const std::vector<std::vector<size_t>>& DeleteSets() {
  static const auto* sets = new std::vector<std::vector<size_t>>{
      {1, 3, 4}, {0}, {kOriginal - 1}, {0, 1, 2, 3, 4, 5}};
  return *sets;
}

TEST(MboxCrashTest, EveryCrashPointOfCommit) {
  int points = 0;
  for (const auto& deleted : DeleteSets()) {
    for (int k = 1;; ++k) {
      SCOPED_TRACE(::testing::Message() << "delete set starting " << deleted[0]
                                        << ", crash at " << k);
      TempDir dir;
      const std::string path = dir.File("mbox");
      WriteFile(path, Originals());
      // A session opened before the crash, to commit after it.
      MboxOptions options;
      options.redo_dir = dir.path();
      auto observer = OpenMbox(path, options);
      ASSERT_THAT(observer, IsOk());

      const std::string a1 = Message(100), a2 = Message(101);
      ChildResult r = RunChild(path, dir.path(), deleted, k, a1);
      ASSERT_TRUE(AppendLocked(path, a2));
      // The earlier session must not apply its deletion over a half-done
      // update: it either completes the repair and gives up (Aborted), or
      // finds the file consistent and deletes message 0.
      absl::Status obs = (*observer)->Commit({0});
      EXPECT_TRUE(obs.ok() || absl::IsAborted(obs)) << obs;
      ASSERT_NO_FATAL_FAILURE(ReopenAndCheck(
          path, dir.path(), Expectation(deleted, {a1, a2}, obs.ok())));
      ++points;
      if (!r.crashed) {
        // Ran to completion: the deletions took effect.
        EXPECT_TRUE(r.finished);
        break;
      }
    }
  }
  EXPECT_GT(points, 40);
}

TEST(MboxCrashTest, EveryCrashPointOfRepair) {
  const std::vector<size_t> deleted = {1, 3, 4};
  int nested = 0;
  for (int k = 1;; ++k) {
    bool commit_crashed = false;
    bool any_record = false;
    for (int j = 1;; ++j) {
      SCOPED_TRACE(::testing::Message()
                   << "commit crash " << k << ", repair crash " << j);
      TempDir dir;
      const std::string path = dir.File("mbox");
      WriteFile(path, Originals());
      const std::string a1 = Message(100), a2 = Message(101), a3 = Message(102);
      ChildResult r = RunChild(path, dir.path(), deleted, k, a1);
      commit_crashed = r.crashed;
      ASSERT_TRUE(AppendLocked(path, a2));
      if (!RedoExists(path, dir.path())) break;  // Nothing to repair.
      any_record = true;
      const bool repair_crashed = RunRepairChild(path, dir.path(), j);
      ASSERT_TRUE(AppendLocked(path, a3));
      ASSERT_NO_FATAL_FAILURE(
          ReopenAndCheck(path, dir.path(), Expectation(deleted, {a1, a2, a3})));
      ++nested;
      if (!repair_crashed) break;
    }
    if (!commit_crashed) break;
    (void)any_record;
  }
  EXPECT_GT(nested, 100);
}

TEST(MboxCrashTest, RandomSigkill) {
  std::mt19937 rng(20261127);
  const std::vector<size_t> deleted = {0, 2, 5};
  for (int iter = 0; iter < 60; ++iter) {
    SCOPED_TRACE(::testing::Message() << "iteration " << iter);
    TempDir dir;
    const std::string path = dir.File("mbox");
    WriteFile(path, Originals());
    const std::string a1 = Message(100), a2 = Message(101);
    // ~40 hook calls at 100 us each: kill somewhere in 0..6 ms.
    RunChild(path, dir.path(), deleted, 0, a1, static_cast<int>(rng() % 6000),
             100);
    ASSERT_TRUE(AppendLocked(path, a2));
    ASSERT_NO_FATAL_FAILURE(
        ReopenAndCheck(path, dir.path(), Expectation(deleted, {a1, a2})));
  }
}

// Lock compatibility with an MDA: a process delivers as fast as it can with
// classic fcntl locks while we repeatedly open and delete the first
// message until the mailbox is drained. Every message must come up first
// exactly once and in delivery order: a lost, duplicated or damaged
// delivery breaks the sequence.
TEST(MboxConcurrencyTest, DeliveryDuringRepeatedCommits) {
  TempDir dir;
  const std::string path = dir.File("mbox");
  std::vector<std::string> sequence;
  for (int i = 0; i < 3; ++i) sequence.push_back(Message(i));
  constexpr int kDeliveries = 300;
  for (int i = 0; i < kDeliveries; ++i) sequence.push_back(Message(1000 + i));
  std::string initial;
  for (int i = 0; i < 3; ++i) initial += sequence[i];
  WriteFile(path, initial);

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (int i = 0; i < kDeliveries; ++i) {
      if (!AppendLocked(path, Message(1000 + i))) _exit(1);
      // Pacing, not synchronisation: spread deliveries over the commits.
      ::usleep(300);
    }
    _exit(0);
  }
  MboxOptions options;
  options.redo_dir = dir.path();
  size_t deleted = 0;
  bool child_done = false;
  int status = 0;
  for (;;) {
    if (!child_done) child_done = ::waitpid(pid, &status, WNOHANG) == pid;
    auto md = MboxMaildrop::Open(path, options);
    ASSERT_THAT(md, IsOk());
    if ((*md)->message_count() == 0) {
      if (child_done) break;
      continue;
    }
    // Only appends happen meanwhile, so our region of the file is stable.
    const MboxMessage& first = (*md)->messages()[0];
    const std::string text =
        ReadFile(path).substr(first.raw_offset, first.raw_size);
    ASSERT_EQ(text, sequence[deleted]);
    ASSERT_THAT((*md)->Commit({0}), IsOk());
    ++deleted;
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(deleted, sequence.size());
  EXPECT_EQ(ReadFile(path), "");
}

}  // namespace
}  // namespace popgate::mailbox
