#include "net/privileges.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace popgate::net {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

class PrivilegesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/popgate_priv_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    (void)::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }
  bool root() const { return ::geteuid() == 0; }
  uid_t target_uid() const { return root() ? kNobody : ::geteuid(); }
  gid_t target_gid() const { return root() ? kNogroup : ::getegid(); }

  std::string dir_;
};

TEST_F(PrivilegesTest, CreatesPrivateUserDirectory) {
  const mode_t old_umask = ::umask(077);  // the daemon's umask
  const std::string state = dir_ + "/state";
  auto path = PrepareStateDir(state, target_uid(), target_gid());
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, absl::StrCat(state, "/", target_uid()));
  struct stat st {};
  ASSERT_EQ(::lstat(path->c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, target_uid());
  EXPECT_EQ(st.st_gid, target_gid());
  ASSERT_EQ(::lstat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  // Idempotent.
  EXPECT_TRUE(PrepareStateDir(state, target_uid(), target_gid()).ok());
  ::umask(old_umask);
}

TEST_F(PrivilegesTest, ExistingBaseGetsSearchPermission) {
  const std::string state = dir_ + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(state.c_str(), 0700), 0);
  ASSERT_TRUE(PrepareStateDir(state, target_uid(), target_gid()).ok());
  struct stat st {};
  ASSERT_EQ(::lstat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0711, 0711u);
}

TEST_F(PrivilegesTest, RefusesSymlinkedUserDirectory) {
  const std::string state = dir_ + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0711), 0);
  const std::string link = absl::StrCat(state, "/", target_uid());
  ASSERT_EQ(::symlink(dir_.c_str(), link.c_str()), 0);
  auto path = PrepareStateDir(state, target_uid(), target_gid());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition)
      << path.status();
}

TEST_F(PrivilegesTest, RefusesSymlinkedStateDir) {
  const std::string state = dir_ + "/state";
  ASSERT_EQ(::symlink(dir_.c_str(), state.c_str()), 0);
  EXPECT_EQ(PrepareStateDir(state, target_uid(), target_gid()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(PrivilegesTest, RefusesDirectoryOwnedBySomeoneElse) {
  if (!root()) GTEST_SKIP() << "needs root to plant a foreign directory";
  const std::string state = dir_ + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0711), 0);
  // A pre-existing directory owned by root, not by the user: never chowned.
  const std::string planted = absl::StrCat(state, "/", kNobody);
  ASSERT_EQ(::mkdir(planted.c_str(), 0700), 0);
  EXPECT_EQ(PrepareStateDir(state, kNobody, kNogroup).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Regression: concurrent first logins of one user used to race, and a
// loser that saw the winner's directory before its chown got [SYS/TEMP].
TEST_F(PrivilegesTest, ConcurrentFirstLoginsAllSucceed) {
  const std::string state = dir_ + "/state";
  constexpr int kRounds = 20;
  constexpr int kProcesses = 8;
  for (int round = 0; round < kRounds; ++round) {
    const std::string base = absl::StrCat(state, round);
    pid_t children[kProcesses];
    for (pid_t& child : children) {
      child = ::fork();
      ASSERT_GE(child, 0);
      if (child == 0) {
        _exit(PrepareStateDir(base, target_uid(), target_gid()).ok() ? 0 : 1);
      }
    }
    for (pid_t child : children) {
      int status = 0;
      ASSERT_EQ(::waitpid(child, &status, 0), child);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "round " << round;
    }
    // No temporary directory is left behind.
    EXPECT_EQ(::system(absl::StrCat("test -z \"$(ls -A '", base,
                                    "' | grep -v '^", target_uid(), "$')\"")
                           .c_str()),
              0);
  }
}

TEST_F(PrivilegesTest, RelativeStateDirRefused) {
  EXPECT_EQ(
      PrepareStateDir("state", target_uid(), target_gid()).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(DropPrivilegesTest, NeverUidZero) {
  EXPECT_EQ(DropPrivileges(0, 0).code(), absl::StatusCode::kPermissionDenied);
}

TEST(DropPrivilegesTest, NonRootOnlyBecomesItself) {
  if (::geteuid() == 0) GTEST_SKIP() << "non-root behaviour";
  EXPECT_TRUE(DropPrivileges(::getuid(), ::getgid()).ok());
  EXPECT_EQ(DropPrivileges(::getuid() + 1, ::getgid()).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(DropPrivilegesTest, RootDropsForGood) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!DropPrivileges(kNobody, kNogroup).ok()) ::_exit(2);
    if (::getuid() != kNobody || ::geteuid() != kNobody) ::_exit(3);
    if (::getgid() != kNogroup || ::getegid() != kNogroup) ::_exit(4);
    gid_t groups[4];
    if (::getgroups(4, groups) != 1 || groups[0] != kNogroup) ::_exit(5);
    if (::setuid(0) == 0 || ::seteuid(0) == 0) ::_exit(6);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace popgate::net
