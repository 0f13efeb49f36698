#include "net/state_migration.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace popgate::net {
namespace {

constexpr uid_t kUser = 65534;  // a mailbox owner
constexpr PoolAccountIds kPool{65533, 65533};

class StateMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "moves and chowns need root";
    char tmpl[] = "/tmp/popgate_migrate_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    state_ = tmpl;
  }
  void TearDown() override {
    if (!state_.empty()) {
      (void)::system(absl::StrCat("rm -rf '", state_, "'").c_str());
    }
  }
  void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  static bool Exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
  }
  static uid_t Owner(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_uid;
  }

  std::string state_;
};

TEST_F(StateMigrationTest, PoolStartAdoptsForkRecords) {
  const std::string fork_dir = absl::StrCat(state_, "/", kUser);
  ASSERT_EQ(::mkdir(fork_dir.c_str(), 0700), 0);
  Write(fork_dir + "/mbox-1-2.redo", "record");
  Write(fork_dir + "/mbox-1-2.index", "cache stays");

  EXPECT_EQ(AdoptRedoRecords(state_, kPool), 1);
  const std::string target =
      absl::StrCat(state_, "/", kPool.uid, "/", kUser, "/mbox-1-2.redo");
  EXPECT_TRUE(Exists(target));
  EXPECT_EQ(Owner(target), kPool.uid);
  EXPECT_FALSE(Exists(fork_dir + "/mbox-1-2.redo"));
  EXPECT_TRUE(Exists(fork_dir + "/mbox-1-2.index"));
  // Idempotent.
  EXPECT_EQ(AdoptRedoRecords(state_, kPool), 0);
}

TEST_F(StateMigrationTest, ForkStartAdoptsPoolRecords) {
  const std::string pool_dir = absl::StrCat(state_, "/", kPool.uid);
  const std::string user_dir = absl::StrCat(pool_dir, "/", kUser);
  ASSERT_EQ(::mkdir(pool_dir.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(user_dir.c_str(), 0700), 0);
  Write(user_dir + "/mbox-3-4.redo", "record");

  EXPECT_EQ(AdoptRedoRecords(state_, std::nullopt), 1);
  const std::string target = absl::StrCat(state_, "/", kUser, "/mbox-3-4.redo");
  EXPECT_TRUE(Exists(target));
  EXPECT_EQ(Owner(target), kUser);
  EXPECT_EQ(Owner(absl::StrCat(state_, "/", kUser)), kUser);
  EXPECT_FALSE(Exists(user_dir + "/mbox-3-4.redo"));
}

TEST_F(StateMigrationTest, NeverOverwritesARecordInPlace) {
  const std::string fork_dir = absl::StrCat(state_, "/", kUser);
  const std::string pool_user_dir =
      absl::StrCat(state_, "/", kPool.uid, "/", kUser);
  ASSERT_EQ(::mkdir(fork_dir.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(absl::StrCat(state_, "/", kPool.uid).c_str(), 0700), 0);
  ASSERT_EQ(::chown(absl::StrCat(state_, "/", kPool.uid).c_str(), kPool.uid,
                    kPool.gid),
            0);
  ASSERT_EQ(::mkdir(pool_user_dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(pool_user_dir.c_str(), kPool.uid, kPool.gid), 0);
  Write(fork_dir + "/mbox-5-6.redo", "old");
  Write(pool_user_dir + "/mbox-5-6.redo", "newer");

  EXPECT_EQ(AdoptRedoRecords(state_, kPool), 0);
  std::ifstream in(pool_user_dir + "/mbox-5-6.redo");
  std::string text;
  in >> text;
  EXPECT_EQ(text, "newer");
  EXPECT_TRUE(Exists(fork_dir + "/mbox-5-6.redo"));
}

TEST_F(StateMigrationTest, MissingStateDirIsNothingToDo) {
  EXPECT_EQ(AdoptRedoRecords(state_ + "/absent", kPool), 0);
  EXPECT_EQ(AdoptRedoRecords(state_ + "/absent", std::nullopt), 0);
}

}  // namespace
}  // namespace popgate::net
