#include "core/auth/passwd_file.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/auth/crypt_verify.h"
#include "core/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/auth/hash_testing.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core::auth {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;
using testing::Bcrypt;
using testing::MakeHash;
using testing::Sha256;
using testing::Sha512;
using testing::Yescrypt;

// A temp dir holding the passwd file; removed at the end.
class PasswdFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/popgate_passwd_test_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/passwd";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::unlink((path_ + ".new").c_str());
    ::rmdir(dir_.c_str());
  }

  // Writes via rename, as admins' tools do, so the inode changes.
  void WriteFile(const std::string& contents) {
    const std::string tmp = path_ + ".new";
    {
      std::ofstream out(tmp, std::ios::binary);
      out << contents;
    }
    ::chmod(tmp.c_str(), 0600);
    ASSERT_EQ(::rename(tmp.c_str(), path_.c_str()), 0);
  }

  std::unique_ptr<PasswdFileAuthenticator> OpenOrDie() {
    absl::StatusOr<std::unique_ptr<PasswdFileAuthenticator>> a =
        PasswdFileAuthenticator::Open(path_);
    EXPECT_THAT(a, IsOk()) << a.status();
    return a.ok() ? std::move(*a) : nullptr;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(PasswdFileTest, EverySchemeAuthenticates) {
  WriteFile(absl::StrCat(
      "# comment line\n", "\n", "   \n",
      "alice:{SHA512-CRYPT}", Sha512("a-pw"), ":1001:1001::/home/alice:/bin/false\n",
      "bob:{SHA256-CRYPT}", Sha256("b-pw"), ":1002:1002:Bob:/home/bob:\n",
      "carol:{BLF-CRYPT}", Bcrypt("c-pw"), ":1003:1003::/home/carol\n",
      "dave:{CRYPT}", Yescrypt("d-pw"), ":1004:1004\n",
      "erin:", Sha512("e-pw"), ":1005:1005::/home/erin::userdb_quota=1G\n",
      "frank:", Yescrypt("f-pw"), ":1006:1006::/home/frank::\n",
      "grace:{sha512-crypt}", Sha512("g-pw"), ":1007:1007::/home/grace\r\n"));
  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  auto auth = OpenOrDie();
  ASSERT_NE(auth, nullptr);
  // Only SHA256-crypt draws a warning: Debian's libxcrypt calls it legacy.
  const auto warnings = capture.entries();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].message.find("line 5: user bob: weak hash"),
            std::string::npos)
      << warnings[0].message;
  EXPECT_EQ(auth->size(), 7u);

  struct Want {
    const char* user;
    const char* password;
    uid_t uid;
    const char* home;
  };
  for (const Want& w : {Want{"alice", "a-pw", 1001, "/home/alice"},
                        Want{"bob", "b-pw", 1002, "/home/bob"},
                        Want{"carol", "c-pw", 1003, "/home/carol"},
                        Want{"dave", "d-pw", 1004, ""},
                        Want{"erin", "e-pw", 1005, "/home/erin"},
                        Want{"frank", "f-pw", 1006, "/home/frank"},
                        Want{"grace", "g-pw", 1007, "/home/grace"}}) {
    bool known = false;
    absl::StatusOr<AuthenticatedUser> user =
        auth->Authenticate(w.user, w.password, &known);
    ASSERT_THAT(user, IsOk()) << w.user << ": " << user.status();
    EXPECT_TRUE(known);
    EXPECT_EQ(user->name, w.user);
    EXPECT_EQ(user->uid, w.uid);
    EXPECT_EQ(user->gid, w.uid);
    EXPECT_EQ(user->home, w.home);
  }
}

// The fixture for refusals: one account per reason.
class PasswdFileRefusalTest : public PasswdFileTest {
 protected:
  void SetUp() override {
    PasswdFileTest::SetUp();
    WriteFile(absl::StrCat(
        "good:{SHA512-CRYPT}", Sha512("right"), ":1001:1001::/home/good\n",
        "root:{SHA512-CRYPT}", Sha512("right"), ":0:0::/root\n",
        "toor:", Sha512("right"), ":0:1001::/root\n",
        "emptyhash::1002:1002::/home/x\n",
        "star:*:1003:1003::/home/x\n",
        "bang:!", Sha512("right"), ":1004:1004::/home/x\n",
        "schemebang:{SHA512-CRYPT}!", Sha512("right"), ":1005:1005\n",
        "plain:{PLAIN}right:1006:1006::/home/x\n",
        "mismatch:{SHA256-CRYPT}", Sha512("right"), ":1007:1007\n",
        "nopass:{SHA512-CRYPT}", Sha512(""), ":1008:1008\n"));
    // The load warnings are expected here; keep them out of the test log.
    scoped_ = std::make_unique<ScopedLogSink>(&capture_);
    auth_ = OpenOrDie();
    ASSERT_NE(auth_, nullptr);
  }
  void TearDown() override {
    scoped_.reset();
    PasswdFileTest::TearDown();
  }
  CaptureLogSink capture_;
  std::unique_ptr<ScopedLogSink> scoped_;
  std::unique_ptr<PasswdFileAuthenticator> auth_;
};

TEST_F(PasswdFileRefusalTest, EveryFailureIsTheSamePermissionDenied) {
  struct Case {
    const char* why;
    absl::string_view user;
    absl::string_view password;
    bool known;
  };
  const Case cases[] = {
      {"wrong password", "good", "wrong", true},
      {"case-changed password", "good", "Right", true},
      {"unknown user", "nobody-here", "right", false},
      {"user name differs in case", "Good", "right", false},
      {"uid 0", "root", "right", true},
      {"uid 0 under another name", "toor", "right", true},
      {"empty hash", "emptyhash", "", true},
      {"empty hash, any password", "emptyhash", "right", true},
      {"locked *", "star", "right", true},
      {"locked !hash", "bang", "right", true},
      {"locked {SCHEME}!hash", "schemebang", "right", true},
      {"unsupported scheme", "plain", "right", true},
      {"hash does not match its scheme", "mismatch", "right", true},
      {"empty password", "good", "", true},
      {"empty password matching the hash of \"\"", "nopass", "", true},
      {"password with NUL", "good", absl::string_view("right\0x", 7), true},
      {"user with NUL", absl::string_view("good\0", 5), "right", false},
      {"empty user", "", "right", false},
  };
  const absl::Status expected = AuthFailedError();
  for (const Case& c : cases) {
    bool known = !c.known;
    const uint64_t before = CryptCallsForTest();
    absl::StatusOr<AuthenticatedUser> user =
        auth_->Authenticate(c.user, c.password, &known);
    // One crypt_r on every path: unknown users cost what known ones cost.
    EXPECT_EQ(CryptCallsForTest() - before, 1u) << c.why;
    ASSERT_FALSE(user.ok()) << c.why;
    EXPECT_EQ(user.status(), expected) << c.why;
    EXPECT_EQ(known, c.known) << c.why;
  }
  // And success costs the same single call.
  const uint64_t before = CryptCallsForTest();
  EXPECT_THAT(auth_->Authenticate("good", "right", nullptr), IsOk());
  EXPECT_EQ(CryptCallsForTest() - before, 1u);
}

TEST_F(PasswdFileRefusalTest, UnknownUserHashesAtTheFilesCommonCost) {
  // Most users here are $6$ at 1000 rounds: the dummy must be the same, or
  // an unknown name would answer faster than a wrong password.
  PasswdFileTable table = ParsePasswdFile(absl::StrCat(
      "a:", Yescrypt("x"), ":1:1\n", "b:", Sha512("x"), ":2:2\n", "c:",
      Sha512("y"), ":3:3\n"));
  EXPECT_EQ(CryptCostKey(table.representative_hash), "$6$rounds=1000");
  const std::string dummy = MakeDummySetting(table.representative_hash);
  EXPECT_EQ(CryptCostKey(dummy), "$6$rounds=1000");
}

struct MalformedCase {
  const char* name;
  std::string line;
  bool user_kept;  // the user exists (locked) rather than being skipped
};

TEST(PasswdFileParseTest, MalformedLinesAreSkippedWithAWarning) {
  const std::string hash = Sha512("pw");
  const MalformedCase cases[] = {
      {"only a name", "x", false},
      {"two fields", "x:" + hash, false},
      {"three fields", "x:" + hash + ":1000", false},
      {"non-numeric uid", "x:" + hash + ":abc:1000", false},
      {"non-numeric gid", "x:" + hash + ":1000:abc", false},
      {"negative uid", "x:" + hash + ":-1:1000", false},
      {"plus sign uid", "x:" + hash + ":+5:1000", false},
      {"uid with space", "x:" + hash + ": 5:1000", false},
      {"uid overflows 32 bits", "x:" + hash + ":4294967296:1000", false},
      {"uid -1 as unsigned", "x:" + hash + ":4294967295:1000", false},
      {"empty uid", "x:" + hash + "::1000", false},
      {"empty user", ":" + hash + ":1000:1000", false},
      {"control char in user", "x\x01y:" + hash + ":1000:1000", false},
      {"too long", "x:" + hash + ":1000:1000:" + std::string(5000, 'g'),
       false},
      {"unknown scheme", "x:{SSHA}abc:1000:1000", true},
      {"unterminated scheme", "x:{SHA512-CRYPT" + hash + ":1000:1000", true},
      {"scheme/prefix mismatch", "x:{BLF-CRYPT}" + hash + ":1000:1000", true},
      {"garbage hash", "x:{CRYPT}$6$:1000:1000", true},
      {"setting without digest", "x:" + hash.substr(0, hash.rfind('$')) +
                                     ":1000:1000", true},
      {"truncated digest", "x:" + hash.substr(0, hash.size() - 1) +
                               ":1000:1000", true},
      {"uid 0", "x:" + hash + ":0:0", true},
  };
  for (const MalformedCase& c : cases) {
    PasswdFileTable table = ParsePasswdFile(c.line + "\nok:" + hash + ":7:7\n");
    EXPECT_EQ(table.warnings.size(), 1u) << c.name;
    EXPECT_EQ(table.entries.contains("x"), c.user_kept) << c.name;
    if (c.user_kept && table.entries.contains("x")) {
      const PasswdFileEntry& e = table.entries.at("x");
      EXPECT_TRUE(e.hash.empty() || e.uid == 0) << c.name;
    }
    // The good line after a bad one still loads.
    ASSERT_TRUE(table.entries.contains("ok")) << c.name;
    EXPECT_EQ(table.entries.at("ok").uid, 7u);
    for (const std::string& w : table.warnings) {
      // Warnings carry line numbers, never hash material.
      EXPECT_EQ(w.find(hash.substr(hash.rfind('$'))), std::string::npos)
          << w;
      EXPECT_EQ(w.rfind("line 1:", 0), 0u) << w;
    }
  }
}

TEST(PasswdFileParseTest, FirstDuplicateWins) {
  PasswdFileTable table = ParsePasswdFile(absl::StrCat(
      "x:", Sha512("first"), ":1:1\n", "x:", Sha512("second"), ":2:2\n"));
  ASSERT_TRUE(table.entries.contains("x"));
  EXPECT_EQ(table.entries.at("x").uid, 1u);
  EXPECT_EQ(table.warnings.size(), 1u);
}

TEST(PasswdFileParseTest, EmptyAndCommentOnlyFiles) {
  EXPECT_TRUE(ParsePasswdFile("").entries.empty());
  EXPECT_TRUE(ParsePasswdFile("\n\n# x:y:1:1\n  # indented\n").entries.empty());
  EXPECT_TRUE(ParsePasswdFile("# only\n").warnings.empty());
  EXPECT_TRUE(ParsePasswdFile("").representative_hash.empty());
}

TEST(PasswdFileParseTest, EveryTruncationParses) {
  // A file cut anywhere (a torn write) yields some prefix of the accounts,
  // never a crash or an account with fields from two lines.
  const std::string contents = absl::StrCat(
      "a:{SHA512-CRYPT}", Sha512("1"), ":11:11::/h/a:/bin/sh\n", "# c\n",
      "b:", Yescrypt("2"), ":12:12::/h/b\r\n");
  for (size_t cut = 0; cut <= contents.size(); ++cut) {
    PasswdFileTable table = ParsePasswdFile(contents.substr(0, cut));
    for (const auto& [name, entry] : table.entries) {
      EXPECT_TRUE(name == "a" || name == "b") << cut;
      EXPECT_EQ(entry.uid, name == "a" ? 11u : 12u) << cut;
      EXPECT_TRUE(entry.hash.empty() || IsUsableCryptHash(entry.hash)) << cut;
    }
  }
}

TEST_F(PasswdFileTest, WarningsAreLoggedAtLoad) {
  WriteFile(absl::StrCat("x:{PLAIN}secret:1:1\n", "y:", Sha512("p"),
                         ":nope:1\n"));
  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  auto auth = OpenOrDie();
  ASSERT_NE(auth, nullptr);
  const auto entries = capture.entries();
  ASSERT_EQ(entries.size(), 3u);
  for (const auto& e : entries) {
    EXPECT_EQ(e.severity, Severity::kWarning);
    EXPECT_NE(e.message.find(path_), std::string::npos);
    EXPECT_EQ(e.message.find("secret"), std::string::npos) << e.message;
  }
  EXPECT_TRUE(capture.Contains("line 1: user x: unsupported scheme {PLAIN}"));
  EXPECT_TRUE(capture.Contains("line 2: uid/gid not a number"));
  EXPECT_TRUE(capture.Contains("no account can log in"));
}

TEST_F(PasswdFileTest, ReloadPicksUpChangesAndIdentityMoves) {
  WriteFile(absl::StrCat("u:", Sha512("old"), ":1000:1000\n"));
  auto auth = OpenOrDie();
  ASSERT_NE(auth, nullptr);
  const FileIdentity first = auth->identity();
  EXPECT_GT(first.size, 0);
  EXPECT_THAT(auth->Authenticate("u", "old", nullptr), IsOk());

  WriteFile(absl::StrCat("u:", Sha512("new"), ":1000:1000\n", "v:",
                         Sha512("v"), ":1001:1001\n"));
  // Not re-read until asked: the table is parsed once.
  EXPECT_THAT(auth->Authenticate("u", "old", nullptr), IsOk());
  ASSERT_THAT(auth->Reload(), IsOk());
  EXPECT_THAT(auth->Authenticate("u", "old", nullptr),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(auth->Authenticate("u", "new", nullptr), IsOk());
  EXPECT_THAT(auth->Authenticate("v", "v", nullptr), IsOk());
  const FileIdentity second = auth->identity();
  EXPECT_NE(first, second);  // rename: new inode and size
  EXPECT_NE(first.inode, second.inode);
}

TEST_F(PasswdFileTest, FailedReloadKeepsTheOldTable) {
  WriteFile(absl::StrCat("u:", Sha512("pw"), ":1000:1000\n"));
  auto auth = OpenOrDie();
  ASSERT_NE(auth, nullptr);
  const FileIdentity before = auth->identity();
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  EXPECT_THAT(auth->Reload(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(auth->Authenticate("u", "pw", nullptr), IsOk());
  EXPECT_EQ(auth->identity(), before);
}

TEST_F(PasswdFileTest, MissingOrNonRegularFileIsUnavailable) {
  EXPECT_THAT(PasswdFileAuthenticator::Open(path_),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(PasswdFileAuthenticator::Open(dir_),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(PasswdFileTest, EmptyFileRefusesEveryoneAtDefaultCost) {
  WriteFile("");
  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  auto auth = OpenOrDie();
  EXPECT_TRUE(capture.Contains("no account can log in"));
  ASSERT_NE(auth, nullptr);
  bool known = true;
  const uint64_t before = CryptCallsForTest();
  EXPECT_EQ(auth->Authenticate("anyone", "x", &known).status(),
            AuthFailedError());
  EXPECT_FALSE(known);
  EXPECT_EQ(CryptCallsForTest() - before, 1u);
}

}  // namespace
}  // namespace popgate::core::auth

namespace popgate::core::auth {
namespace {

// A session about to become the user (or a pool worker about to drop) wipes
// the table: nobody logs in from it afterwards, and a reload restores it.
TEST_F(PasswdFileTest, WipeSecretsRefusesEveryoneUntilReload) {
  WriteFile(absl::StrCat("alice:", Sha512("pw"), ":1001:1001::/home/alice:\n"));
  auto auth = OpenOrDie();
  ASSERT_NE(auth, nullptr);
  ASSERT_THAT(auth->Authenticate("alice", "pw", nullptr), IsOk());
  auth->WipeSecrets();
  bool known = true;
  EXPECT_EQ(auth->Authenticate("alice", "pw", &known).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(known);
  EXPECT_EQ(auth->size(), 0u);
  ASSERT_THAT(auth->Reload(), IsOk());
  EXPECT_THAT(auth->Authenticate("alice", "pw", nullptr), IsOk());
}

}  // namespace
}  // namespace popgate::core::auth
