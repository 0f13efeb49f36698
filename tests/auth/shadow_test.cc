#include "core/auth/shadow.h"

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/auth/crypt_verify.h"
#include "gtest/gtest.h"
#include "tests/auth/hash_testing.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core::auth {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;
using testing::Sha512;
using testing::Yescrypt;

// In-memory passwd + shadow, so no account is created on the machine.
class FakeAccounts : public AccountSource {
 public:
  struct Account {
    PasswdInfo pw;
    std::optional<std::string> shadow_hash;
  };
  std::map<std::string, Account, std::less<>> accounts;
  bool fail_passwd = false;
  bool fail_shadow = false;
  int shadow_lookups = 0;

  absl::StatusOr<std::optional<PasswdInfo>> LookupPasswd(
      absl::string_view name) override {
    if (fail_passwd) return absl::UnavailableError("nss down");
    auto it = accounts.find(name);
    if (it == accounts.end()) return std::nullopt;
    return it->second.pw;
  }
  absl::StatusOr<std::optional<std::string>> LookupShadowHash(
      absl::string_view name) override {
    ++shadow_lookups;
    if (fail_shadow) return absl::UnavailableError("EACCES");
    auto it = accounts.find(name);
    if (it == accounts.end()) return std::nullopt;
    return it->second.shadow_hash;
  }
};

std::unique_ptr<FakeAccounts> MakeAccounts() {
  auto fake = std::make_unique<FakeAccounts>();
  auto add = [&](const std::string& name, uid_t uid,
                 std::optional<std::string> hash) {
    fake->accounts[name] = {PasswdInfo{name, uid, uid + 100, "/home/" + name},
                            std::move(hash)};
  };
  add("alice", 1000, Yescrypt("right"));
  add("bob", 1001, Sha512("right"));
  add("root", 0, Yescrypt("right"));
  add("locked", 1002, "!" + Yescrypt("right"));
  add("star", 1003, "*");
  add("empty", 1004, "");
  add("noshadow", 1005, std::nullopt);
  return fake;
}

TEST(ShadowTest, ShadowEntryWithoutPasswdEntryIsUnknown) {
  // Only in shadow: LookupPasswd must not find it.
  struct ShadowOnly : FakeAccounts {
    absl::StatusOr<std::optional<PasswdInfo>> LookupPasswd(
        absl::string_view name) override {
      if (name == "ghost") return std::nullopt;
      return FakeAccounts::LookupPasswd(name);
    }
  };
  auto ghost = std::make_unique<ShadowOnly>();
  ghost->accounts["ghost"] = {PasswdInfo{"ghost", 1010, 1010, "/"},
                              Yescrypt("right")};
  ShadowAuthenticator auth(std::move(ghost), ShadowOptions{false});
  bool known = true;
  EXPECT_EQ(auth.Authenticate("ghost", "right", &known).status(),
            AuthFailedError());
  EXPECT_FALSE(known);
}

TEST(ShadowTest, InProcessVerdicts) {
  auto fake = MakeAccounts();
  FakeAccounts* accounts = fake.get();
  ShadowAuthenticator auth(std::move(fake), ShadowOptions{false});

  bool known = false;
  absl::StatusOr<AuthenticatedUser> alice =
      auth.Authenticate("alice", "right", &known);
  ASSERT_THAT(alice, IsOk()) << alice.status();
  EXPECT_TRUE(known);
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->uid, 1000u);
  EXPECT_EQ(alice->gid, 1100u);
  EXPECT_EQ(alice->home, "/home/alice");
  EXPECT_THAT(auth.Authenticate("bob", "right", nullptr), IsOk());

  struct Case {
    const char* why;
    const char* user;
    const char* password;
    bool known;
  };
  const Case cases[] = {
      {"wrong password", "alice", "wrong", true},
      {"unknown user", "mallory", "right", false},
      {"uid 0", "root", "right", true},
      {"locked !", "locked", "right", true},
      {"locked *", "star", "right", true},
      {"empty hash", "empty", "", true},
      {"empty hash, any password", "empty", "x", true},
      {"no shadow entry", "noshadow", "right", true},
      {"empty password", "alice", "", true},
  };
  for (const Case& c : cases) {
    bool k = !c.known;
    const uint64_t before = CryptCallsForTest();
    absl::StatusOr<AuthenticatedUser> user =
        auth.Authenticate(c.user, c.password, &k);
    EXPECT_EQ(CryptCallsForTest() - before, 1u) << c.why;
    ASSERT_FALSE(user.ok()) << c.why;
    EXPECT_EQ(user.status(), AuthFailedError()) << c.why;
    EXPECT_EQ(k, c.known) << c.why;
  }
  // Unknown users cost the same shadow lookup as known ones.
  int lookups = accounts->shadow_lookups;
  EXPECT_FALSE(auth.Authenticate("mallory", "x", nullptr).ok());
  EXPECT_EQ(accounts->shadow_lookups, lookups + 1);
  lookups = accounts->shadow_lookups;
  EXPECT_FALSE(auth.Authenticate("alice", "x", nullptr).ok());
  EXPECT_EQ(accounts->shadow_lookups, lookups + 1);
}

TEST(ShadowTest, LookupFailuresAreUnavailableNotDenied) {
  auto fake = MakeAccounts();
  fake->fail_shadow = true;
  ShadowAuthenticator auth(std::move(fake), ShadowOptions{false});
  EXPECT_THAT(auth.Authenticate("alice", "right", nullptr),
              StatusIs(absl::StatusCode::kUnavailable));

  auto fake2 = MakeAccounts();
  fake2->fail_passwd = true;
  ShadowAuthenticator auth2(std::move(fake2), ShadowOptions{false});
  EXPECT_THAT(auth2.Authenticate("alice", "right", nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ShadowTest, ForkedChildDoesTheHashing) {
  ShadowAuthenticator auth(MakeAccounts(), ShadowOptions{true});
  // The counter lives in this process: if crypt ran here it would move.
  const uint64_t before = CryptCallsForTest();
  bool known = false;
  absl::StatusOr<AuthenticatedUser> alice =
      auth.Authenticate("alice", "right", &known);
  ASSERT_THAT(alice, IsOk()) << alice.status();
  EXPECT_TRUE(known);
  EXPECT_EQ(alice->uid, 1000u);
  EXPECT_EQ(auth.Authenticate("alice", "wrong", nullptr).status(),
            AuthFailedError());
  EXPECT_EQ(auth.Authenticate("root", "right", nullptr).status(),
            AuthFailedError());
  known = true;
  EXPECT_EQ(auth.Authenticate("mallory", "right", &known).status(),
            AuthFailedError());
  EXPECT_FALSE(known);
  EXPECT_EQ(CryptCallsForTest(), before);
}

TEST(ShadowTest, ForkedChildLookupFailureIsUnavailable) {
  auto fake = MakeAccounts();
  fake->fail_shadow = true;
  ShadowAuthenticator auth(std::move(fake), ShadowOptions{true});
  EXPECT_THAT(auth.Authenticate("alice", "right", nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ShadowTest, SystemAccountsKnowRootAndNotNonsense) {
  // Read-only use of the real NSS: root exists everywhere; a random name
  // does not. No account is created.
  auto accounts = SystemAccounts();
  absl::StatusOr<std::optional<PasswdInfo>> root = accounts->LookupPasswd("root");
  ASSERT_THAT(root, IsOk());
  ASSERT_TRUE(root->has_value());
  EXPECT_EQ((*root)->uid, 0u);
  absl::StatusOr<std::optional<PasswdInfo>> none =
      accounts->LookupPasswd("popgate-no-such-user-7f3a");
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
  absl::StatusOr<std::optional<PasswdInfo>> nul =
      accounts->LookupPasswd(absl::string_view("root\0x", 6));
  ASSERT_THAT(nul, IsOk());
  EXPECT_FALSE(nul->has_value());
}

}  // namespace
}  // namespace popgate::core::auth
