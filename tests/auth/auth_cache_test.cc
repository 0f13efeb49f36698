#include "core/auth/auth_cache.h"

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace popgate::core::auth {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000000);
const absl::Duration kTtl = absl::Minutes(5);

AuthenticatedUser Alice() { return {"alice", 1000, 100, "/home/alice"}; }
AuthenticatedUser Bob() { return {"bob", 1001, 100, "/home/bob"}; }

absl::string_view View(const AuthCache::Key& key) {
  return absl::string_view(reinterpret_cast<const char*>(key.data()),
                           key.size());
}

TEST(AuthCacheTest, HitAfterInsertReturnsTheAccount) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  std::optional<AuthenticatedUser> hit = cache.Lookup(key, kStart);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->name, "alice");
  EXPECT_EQ(hit->uid, 1000u);
  EXPECT_EQ(hit->gid, 100u);
  EXPECT_EQ(hit->home, "/home/alice");
  EXPECT_EQ(cache.size(), 1u);
}

TEST(AuthCacheTest, EmptyCacheMisses) {
  AuthCache cache(16, kTtl);
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("alice", "secret"), kStart));
}

TEST(AuthCacheTest, WrongPasswordOrOtherUserMisses) {
  AuthCache cache(16, kTtl);
  cache.Insert(cache.KeyOf("alice", "secret"), Alice(), kStart, cache.epoch());
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("alice", "Secret"), kStart));
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("alice", "secret "), kStart));
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("alice", ""), kStart));
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("bob", "secret"), kStart));
  EXPECT_TRUE(cache.Lookup(cache.KeyOf("alice", "secret"), kStart));
}

// The user/password boundary is part of the key: moving bytes across it
// (even a NUL) gives a different key.
TEST(AuthCacheTest, KeySeparatesUserFromPassword) {
  AuthCache cache(16, kTtl);
  using namespace std::string_literals;
  EXPECT_NE(cache.KeyOf("a\0b"s, "c"), cache.KeyOf("a", "b\0c"s));
  EXPECT_NE(cache.KeyOf("ab", "c"), cache.KeyOf("a", "bc"));
  EXPECT_NE(cache.KeyOf("", "abc"), cache.KeyOf("abc", ""));
}

TEST(AuthCacheTest, KeyIsDeterministicPerCacheAndSecretAcrossCaches) {
  AuthCache one(16, kTtl);
  AuthCache two(16, kTtl);
  EXPECT_EQ(one.KeyOf("alice", "secret"), one.KeyOf("alice", "secret"));
  // A fresh random HMAC key per cache: a key from one process (or a memory
  // dump) says nothing about another.
  EXPECT_NE(one.KeyOf("alice", "secret"), two.KeyOf("alice", "secret"));
}

TEST(AuthCacheTest, KeyNeverContainsThePassword) {
  AuthCache cache(16, kTtl);
  // A password exactly as long as the key, and one that fills several.
  const std::string same_size(32, 'p');
  const AuthCache::Key a = cache.KeyOf("alice", same_size);
  EXPECT_NE(View(a), same_size);
  EXPECT_EQ(View(a).find("pppp"), absl::string_view::npos);
  const std::string long_password = "correct horse battery staple";
  const AuthCache::Key b = cache.KeyOf("alice", long_password);
  EXPECT_EQ(View(b).find("horse"), absl::string_view::npos);
  EXPECT_EQ(View(b).find("alice"), absl::string_view::npos);
  // Not all zero either (an HMAC failure must not pass as a key).
  EXPECT_NE(b, AuthCache::Key{});
}

TEST(AuthCacheTest, EntryExpiresAfterTtl) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  EXPECT_TRUE(cache.Lookup(key, kStart + kTtl - absl::Nanoseconds(1)));
  EXPECT_FALSE(cache.Lookup(key, kStart + kTtl));
  EXPECT_EQ(cache.size(), 0u);  // the expired entry is gone
}

// A hit does not extend the TTL, so a password changed behind our back
// stops working from the cache at most ttl after the last real check.
TEST(AuthCacheTest, HitDoesNotExtendTtl) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  for (int minute = 1; minute < 5; ++minute) {
    EXPECT_TRUE(cache.Lookup(key, kStart + absl::Minutes(minute)));
  }
  EXPECT_FALSE(cache.Lookup(key, kStart + kTtl));
}

TEST(AuthCacheTest, ReinsertRefreshesExpiry) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  cache.Insert(key, Alice(), kStart + absl::Minutes(4), cache.epoch());
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(cache.Lookup(key, kStart + absl::Minutes(8)));
}

TEST(AuthCacheTest, EvictsLeastRecentlyUsedAtTheBound) {
  AuthCache cache(2, kTtl);
  const AuthCache::Key a = cache.KeyOf("alice", "a");
  const AuthCache::Key b = cache.KeyOf("bob", "b");
  const AuthCache::Key c = cache.KeyOf("carol", "c");
  cache.Insert(a, Alice(), kStart, cache.epoch());
  cache.Insert(b, Bob(), kStart, cache.epoch());
  ASSERT_TRUE(cache.Lookup(a, kStart));  // a is now the most recent
  cache.Insert(c, Bob(), kStart, cache.epoch());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.Lookup(b, kStart));
  EXPECT_TRUE(cache.Lookup(a, kStart));
  EXPECT_TRUE(cache.Lookup(c, kStart));
}

TEST(AuthCacheTest, SizeNeverExceedsTheBound) {
  AuthCache cache(8, kTtl);
  for (int i = 0; i < 100; ++i) {
    cache.Insert(cache.KeyOf(std::to_string(i), "pw"), Alice(), kStart,
                 cache.epoch());
    ASSERT_LE(cache.size(), 8u);
  }
  // The last eight are the survivors.
  EXPECT_TRUE(cache.Lookup(cache.KeyOf("99", "pw"), kStart));
  EXPECT_TRUE(cache.Lookup(cache.KeyOf("92", "pw"), kStart));
  EXPECT_FALSE(cache.Lookup(cache.KeyOf("91", "pw"), kStart));
}

TEST(AuthCacheTest, FlushEmptiesTheCache) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  cache.Flush();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.Lookup(key, kStart));
}

// A verification that started before a Flush (e.g. against the old
// passwd-file) must not repopulate the cache after it.
TEST(AuthCacheTest, InsertFromBeforeAFlushIsDropped) {
  AuthCache cache(16, kTtl);
  const AuthCache::Key key = cache.KeyOf("alice", "old");
  const uint64_t before = cache.epoch();
  cache.Flush();
  EXPECT_NE(cache.epoch(), before);
  cache.Insert(key, Alice(), kStart, before);
  EXPECT_FALSE(cache.Lookup(key, kStart));
  cache.Insert(key, Alice(), kStart, cache.epoch());
  EXPECT_TRUE(cache.Lookup(key, kStart));
}

TEST(AuthCacheTest, ZeroEntriesDisables) {
  AuthCache cache(0, kTtl);
  EXPECT_FALSE(cache.enabled());
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  EXPECT_FALSE(cache.Lookup(key, kStart));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(AuthCacheTest, ZeroTtlDisables) {
  AuthCache cache(16, absl::ZeroDuration());
  EXPECT_FALSE(cache.enabled());
  const AuthCache::Key key = cache.KeyOf("alice", "secret");
  cache.Insert(key, Alice(), kStart, cache.epoch());
  EXPECT_FALSE(cache.Lookup(key, kStart));
}

}  // namespace
}  // namespace popgate::core::auth
