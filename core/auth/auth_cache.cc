#include "core/auth/auth_cache.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdlib>

#include "core/logging.h"

namespace popgate::core::auth {
namespace {

[[noreturn]] void Die(absl::string_view what) {
  Log(Severity::kCrit, what);
  std::abort();
}

void FillRandom(uint8_t* out, size_t size) {
  while (size > 0) {
    const ssize_t n = ::getrandom(out, size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("auth cache: getrandom failed");
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

AuthCache::AuthCache(size_t max_entries, absl::Duration ttl)
    : max_entries_(max_entries), ttl_(ttl) {
  std::array<uint8_t, 32> key;
  FillRandom(key.data(), key.size());
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) Die("auth cache: no HMAC in OpenSSL");
  hmac_template_ = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);  // the context holds its own reference
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  const bool ok =
      hmac_template_ != nullptr &&
      EVP_MAC_init(hmac_template_, key.data(), key.size(), params) == 1;
  // OpenSSL keeps its own (padded) copy of the key; ours goes now.
  OPENSSL_cleanse(key.data(), key.size());
  if (!ok) Die("auth cache: HMAC-SHA256 init failed");
}

AuthCache::~AuthCache() { EVP_MAC_CTX_free(hmac_template_); }

AuthCache::Key AuthCache::KeyOf(absl::string_view user,
                                absl::string_view password) const {
  // A copy of the initialised context, so no lock is needed and the key
  // schedule is not recomputed per call. Fed piecewise: the password is
  // never copied into a buffer of ours.
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(hmac_template_);
  if (ctx == nullptr) Die("auth cache: out of memory");
  uint8_t length[8];
  const uint64_t user_size = user.size();
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<uint8_t>(user_size >> (8 * i));
  Key key;
  size_t key_size = 0;
  const bool ok =
      EVP_MAC_update(ctx, length, sizeof(length)) == 1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const uint8_t*>(user.data()),
                     user.size()) == 1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const uint8_t*>(password.data()),
                     password.size()) == 1 &&
      EVP_MAC_final(ctx, key.data(), &key_size, key.size()) == 1 &&
      key_size == key.size();
  // Frees and cleanses the context (which saw the password).
  EVP_MAC_CTX_free(ctx);
  if (!ok) Die("auth cache: HMAC failed");
  return key;
}

std::optional<AuthenticatedUser> AuthCache::Lookup(const Key& key,
                                                   absl::Time now) {
  if (!enabled()) return std::nullopt;
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  if (now >= it->second->expires) {
    lru_.erase(it->second);
    index_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->user;
}

void AuthCache::Insert(const Key& key, const AuthenticatedUser& user,
                       absl::Time now, uint64_t epoch) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  if (epoch != epoch_) return;
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->user = user;
    it->second->expires = now + ttl_;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  // Evict before inserting so the map never holds max_entries + 1. The
  // tail is the least recently used; expired entries elsewhere are removed
  // lazily by Lookup, which is fine because max_entries bounds memory.
  while (lru_.size() >= max_entries_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, user, now + ttl_});
  index_.emplace(key, lru_.begin());
}

void AuthCache::Flush() {
  absl::MutexLock lock(&mu_);
  ++epoch_;
  index_.clear();
  lru_.clear();
}

uint64_t AuthCache::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

size_t AuthCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

}  // namespace popgate::core::auth
