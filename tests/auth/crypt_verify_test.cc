#include "core/auth/crypt_verify.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/auth/hash_testing.h"

namespace popgate::core::auth {
namespace {

using testing::Bcrypt;
using testing::MakeHash;
using testing::Sha256;
using testing::Sha512;
using testing::Yescrypt;

TEST(CryptVerifyTest, EverySchemeVerifies) {
  for (const std::string& hash :
       {Sha512("pw1"), Sha256("pw1"), Bcrypt("pw1"), Yescrypt("pw1")}) {
    ASSERT_FALSE(hash.empty());
    EXPECT_TRUE(CryptVerify("pw1", hash)) << hash;
    EXPECT_FALSE(CryptVerify("pw2", hash)) << hash;
    EXPECT_FALSE(CryptVerify("pw1 ", hash)) << hash;
    EXPECT_FALSE(CryptVerify("", hash)) << hash;
  }
}

TEST(CryptVerifyTest, EmbeddedNulNeverMatchesTheTruncatedPassword) {
  const std::string hash = Sha512("secret");
  EXPECT_TRUE(CryptVerify("secret", hash));
  EXPECT_FALSE(CryptVerify(absl::string_view("secret\0junk", 11), hash));
}

TEST(CryptVerifyTest, HashOfPrefixDoesNotMatch) {
  // The stored hash is compared whole: a setting alone never matches.
  const std::string hash = Sha512("pw");
  const std::string setting = hash.substr(0, hash.rfind('$'));
  EXPECT_FALSE(CryptVerify("pw", setting));
}

TEST(CryptVerifyTest, UnusableSettingsFailButStillCostOneCall) {
  for (absl::string_view setting :
       {absl::string_view(""), absl::string_view("*"), absl::string_view("!"),
        absl::string_view("*0"), absl::string_view("$6$"),
        absl::string_view("garbage$$$")}) {
    const uint64_t before = CryptCallsForTest();
    EXPECT_FALSE(CryptVerify("", setting)) << setting;
    EXPECT_FALSE(CryptVerify("x", setting)) << setting;
    EXPECT_EQ(CryptCallsForTest() - before, 2u) << setting;
  }
}

TEST(CryptVerifyTest, OverlongPasswordRefusedWithOneCall) {
  const std::string hash = Sha512(std::string(100, 'a'));
  const uint64_t before = CryptCallsForTest();
  EXPECT_FALSE(CryptVerify(std::string(600, 'a'), hash));
  EXPECT_EQ(CryptCallsForTest() - before, 1u);
}

TEST(CryptVerifyTest, UsableHashes) {
  EXPECT_TRUE(IsUsableCryptHash(Sha512("x")));
  EXPECT_TRUE(IsUsableCryptHash(Yescrypt("x")));
  EXPECT_FALSE(IsUsableCryptHash(""));
  EXPECT_FALSE(IsUsableCryptHash("*"));
  EXPECT_FALSE(IsUsableCryptHash("!"));
  EXPECT_FALSE(IsUsableCryptHash("!" + Sha512("x")));
  EXPECT_FALSE(IsUsableCryptHash("*LK*"));
  EXPECT_FALSE(IsUsableCryptHash("$nonsense$abc"));
}

TEST(CryptVerifyTest, CompleteHashes) {
  for (const std::string& hash : {Sha512("x"), Sha256("x"), Bcrypt("x"),
                                  Yescrypt("x"), MakeHash("$1$", 0, "x"),
                                  MakeHash("", 0, "x")}) {
    ASSERT_FALSE(hash.empty());
    EXPECT_TRUE(IsCompleteCryptHash(hash)) << hash;
    EXPECT_FALSE(IsCompleteCryptHash(hash.substr(0, hash.size() - 1))) << hash;
  }
  const std::string sha = Sha512("x");
  EXPECT_FALSE(IsCompleteCryptHash(sha.substr(0, sha.rfind('$'))));
  EXPECT_FALSE(IsCompleteCryptHash("$6$"));
  EXPECT_FALSE(IsCompleteCryptHash("$y$j9T$salt"));
  EXPECT_FALSE(IsCompleteCryptHash("!" + sha));
}

TEST(CryptVerifyTest, CostKeys) {
  EXPECT_EQ(CryptCostKey("$6$salt$hash"), "$6$");
  EXPECT_EQ(CryptCostKey("$6$rounds=1000$salt$hash"), "$6$rounds=1000");
  EXPECT_EQ(CryptCostKey("$5$rounds=9999$salt$hash"), "$5$rounds=9999");
  EXPECT_EQ(CryptCostKey("$2b$12$abcdefghijklmnopqrstuv"), "$2b$12");
  EXPECT_EQ(CryptCostKey("$y$j9T$salt$hash"), "$y$j9T");
  EXPECT_EQ(CryptCostKey("$1$salt$hash"), "$1$");
  EXPECT_EQ(CryptCostKey("abJnggxhB/yWI"), "");
}

TEST(CryptVerifyTest, DummySettingCopiesSchemeAndCostWithFreshSalt) {
  for (const std::string& like :
       {Sha512("x"), MakeHash("$6$", 0, "x"), MakeHash("$6$", 20000, "x"),
        Sha256("x"), Bcrypt("x"), MakeHash("$2b$", 6, "x"), Yescrypt("x"),
        MakeHash("$y$", 5, "x")}) {
    ASSERT_FALSE(like.empty());
    const std::string dummy = MakeDummySetting(like);
    EXPECT_EQ(CryptCostKey(dummy), CryptCostKey(like)) << like;
    EXPECT_TRUE(IsUsableCryptHash(dummy)) << dummy;
    // A fresh salt: not the user's own hash.
    EXPECT_NE(dummy.substr(0, 20), like.substr(0, 20)) << like;
  }
}

TEST(CryptVerifyTest, DummySettingWithoutExampleIsLibcryptDefault) {
  const std::string dummy = MakeDummySetting("");
  EXPECT_TRUE(IsUsableCryptHash(dummy)) << dummy;
  EXPECT_FALSE(CryptVerify("", dummy));
}

}  // namespace
}  // namespace popgate::core::auth
