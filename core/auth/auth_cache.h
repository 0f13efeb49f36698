// A cache of successful logins, so a client that logs in every minute (most
// mail clients poll) costs one hash per TTL instead of one per session.
//
// Entries are keyed by HMAC-SHA256(k, len(user) || user || password) with a
// random 32-byte k drawn at construction: the password itself is never
// stored, the key is useless outside this process, and a dump of memory
// cannot be checked offline faster than the real hashes. The length prefix
// keeps ("a\0b", "c") and ("a", "b\0c") apart.
//
// Policy: only successes are cached. A failure is never cached, so every
// wrong password costs a real hash and a password changed in the backend
// stops working from the cache at the next Flush() (the auth process
// flushes on SIGHUP and when the account source changes). Entries expire
// `ttl` after insertion (a hit does not extend them, so the staleness after
// a change the process did not notice is bounded by ttl) and at most
// `max_entries` are kept, the least recently used evicted first.
//
// Callers: net/'s auth process, on its loop thread. Thread-safe anyway
// (one absl::Mutex) so a pool thread could insert directly. Time injected.
#ifndef POPGATE_CORE_AUTH_AUTH_CACHE_H_
#define POPGATE_CORE_AUTH_AUTH_CACHE_H_

#include <openssl/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/auth/authenticator.h"

namespace popgate::core::auth {

class AuthCache {
 public:
  using Key = std::array<uint8_t, 32>;

  // max_entries == 0 or ttl <= 0 disables the cache: Lookup() always
  // misses and Insert() does nothing. Aborts if the kernel has no
  // randomness or OpenSSL has no HMAC (neither happens on a working
  // system; a predictable key would be worse than dying).
  AuthCache(size_t max_entries, absl::Duration ttl);
  ~AuthCache();
  AuthCache(const AuthCache&) = delete;
  AuthCache& operator=(const AuthCache&) = delete;

  bool enabled() const {
    return max_entries_ > 0 && ttl_ > absl::ZeroDuration();
  }

  // The keyed hash of (user, password). Compute it as soon as the password
  // arrives and wipe the password; Lookup/Insert only need the key.
  Key KeyOf(absl::string_view user, absl::string_view password) const;

  // The cached account for `key`, if present and not expired at `now`
  // (an expired entry is removed). A hit becomes most recently used.
  std::optional<AuthenticatedUser> Lookup(const Key& key, absl::Time now);

  // Caches a successful login. `epoch` is epoch() as read before the
  // verification started: if Flush() ran since, the result may come from
  // the account source as it was before the flush, so it is dropped.
  void Insert(const Key& key, const AuthenticatedUser& user, absl::Time now,
              uint64_t epoch);

  // Empties the cache and starts a new epoch.
  void Flush();
  uint64_t epoch() const;
  size_t size() const;

 private:
  struct Entry {
    Key key;
    AuthenticatedUser user;
    absl::Time expires;
  };
  using List = std::list<Entry>;

  const size_t max_entries_;
  const absl::Duration ttl_;
  // Initialised with the HMAC key; KeyOf() works on copies, so this one is
  // never modified after construction and needs no lock.
  EVP_MAC_CTX* hmac_template_ = nullptr;

  mutable absl::Mutex mu_;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Most recently used first. `index_` points into `lru_`; std::list
  // iterators stay valid across inserts and other erases.
  List lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, List::iterator> index_ ABSL_GUARDED_BY(mu_);
};

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_AUTH_CACHE_H_
