// crypt(3) helpers shared by the shadow and passwd-file backends: verify a
// passphrase against a stored hash in constant time, classify hashes, and
// make the "dummy" setting that unknown users are hashed against so they
// cost what a known user costs.
//
// Threading: every function is thread-safe (crypt_r/crypt_gensalt_rn with
// per-call state; the call counter is atomic).
#ifndef POPGATE_CORE_AUTH_CRYPT_VERIFY_H_
#define POPGATE_CORE_AUTH_CRYPT_VERIFY_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace popgate::core::auth {

// Runs crypt_r(password, setting) and compares the result with `setting`
// (the stored hash) in time independent of where they differ. Exactly one
// crypt_r call, whatever the inputs, so callers can equalise work by
// calling it once on every path. False on any crypt failure, for a password
// containing a NUL (C strings would silently truncate it) or one longer
// than libxcrypt's 512-byte passphrase limit.
bool CryptVerify(absl::string_view password, absl::string_view setting);

// Whether libxcrypt can use `hash` as a setting at all (crypt_checksalt is
// OK, legacy or too cheap). Empty, '*' and '!' (locked) hashes are not.
bool IsUsableCryptHash(absl::string_view hash);

// IsUsableCryptHash, and shaped like a complete hash rather than a bare
// setting ("$6$salt" or "$6$" are settings): for the schemes we know, the
// final field has the scheme's exact length. A setting could never match
// anyway (crypt's output is longer), but accepting one as "an account with
// a password" would skew the dummy cost and hide a broken line.
bool IsCompleteCryptHash(absl::string_view hash);

// Whether libxcrypt calls `hash` weak (DES, MD5, few rounds), for a warning.
bool IsWeakCryptHash(absl::string_view hash);

// The part of a hash that determines its cost: "$6$rounds=N" / "$6$",
// "$2b$12", "$y$j9T", "$1$", "" for DES. Hashes with equal keys cost the
// same to check.
std::string CryptCostKey(absl::string_view hash);

// A fresh setting (crypt_gensalt_rn with a random salt) whose scheme and
// cost equal `like`'s, so checking a password against it costs what
// checking against `like` costs. Falls back to `like` itself when the cost
// parameters cannot be reproduced (the result is only ever discarded, so
// hashing against a real user's salt leaks nothing). With an empty or
// unusable `like`, libxcrypt's default (yescrypt on Debian 12, the same as
// passwd(1) there).
std::string MakeDummySetting(absl::string_view like);

// Number of crypt_r calls made through this file since process start. Test
// hook: proves that every failure path does the same hashing work, without
// measuring time.
uint64_t CryptCallsForTest();

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_CRYPT_VERIFY_H_
