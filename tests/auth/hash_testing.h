// Test helper: real crypt(3) hashes made on the fly, at the cheapest cost
// each scheme allows, so tests exercise libxcrypt itself without slow runs.
#ifndef POPGATE_TESTS_AUTH_HASH_TESTING_H_
#define POPGATE_TESTS_AUTH_HASH_TESTING_H_

#include <crypt.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace popgate::core::auth::testing {

// A hash of `password` under `prefix` ("$6$", "$5$", "$2b$", "$y$", "" for
// DES) at `count` (0 = the scheme's default). Empty string on failure, which
// the caller's ASSERT turns into a test failure.
inline std::string MakeHash(const char* prefix, unsigned long count,
                            const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (::crypt_gensalt_rn(prefix, count, nullptr, 0, setting,
                         sizeof(setting)) == nullptr) {
    ADD_FAILURE() << "crypt_gensalt_rn(" << prefix << ") failed";
    return "";
  }
  auto data = std::make_unique<crypt_data>();
  const char* hash = ::crypt_r(password.c_str(), setting, data.get());
  if (hash == nullptr || hash[0] == '*') {
    ADD_FAILURE() << "crypt_r(" << setting << ") failed";
    return "";
  }
  return hash;
}

// Cheapest settings per scheme: sha-crypt's minimum rounds is 1000, bcrypt's
// log-cost 4, yescrypt's cost 1.
inline std::string Sha512(const std::string& pw) { return MakeHash("$6$", 1000, pw); }
inline std::string Sha256(const std::string& pw) { return MakeHash("$5$", 1000, pw); }
inline std::string Bcrypt(const std::string& pw) { return MakeHash("$2b$", 4, pw); }
inline std::string Yescrypt(const std::string& pw) { return MakeHash("$y$", 1, pw); }

}  // namespace popgate::core::auth::testing

#endif  // POPGATE_TESTS_AUTH_HASH_TESTING_H_
