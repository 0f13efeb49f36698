#include "core/auth/crypt_verify.h"

#include <crypt.h>
#include <string.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace popgate::core::auth {
namespace {

std::atomic<uint64_t> g_crypt_calls{0};

// crypt_r's state is 32 KiB: on the heap, because auth may run on pool
// threads with small stacks. Zeroed first, as libxcrypt asks.
std::unique_ptr<crypt_data> NewCryptData() {
  return std::make_unique<crypt_data>();
}

// The field after the scheme id: "$2b$12$..." -> "12", "$y$j9T$..." -> "j9T".
absl::string_view SecondField(absl::string_view hash) {
  // hash starts with "$id$"; the second field runs to the next '$'.
  const size_t first = hash.find('$', 1);
  if (first == absl::string_view::npos) return "";
  const size_t second = hash.find('$', first + 1);
  if (second == absl::string_view::npos) return "";
  return hash.substr(first + 1, second - first - 1);
}

// A setting made by crypt_gensalt_rn, or "" on failure.
std::string GenSalt(const char* prefix, unsigned long count) {
  char output[CRYPT_GENSALT_OUTPUT_SIZE];
  if (::crypt_gensalt_rn(prefix, count, nullptr, 0, output,
                         sizeof(output)) == nullptr) {
    return "";
  }
  return output;
}

}  // namespace

bool CryptVerify(absl::string_view password, absl::string_view setting) {
  // Both strings go to crypt_r as C strings: copy them, and refuse embedded
  // NULs (they would truncate the password, letting "secret\0junk" pass).
  // The refusals still hash, so that every call costs one crypt_r.
  const bool password_ok = password.find('\0') == absl::string_view::npos &&
                           password.size() < CRYPT_MAX_PASSPHRASE_SIZE;
  const bool setting_ok = setting.find('\0') == absl::string_view::npos &&
                          !setting.empty() && setting.size() < CRYPT_OUTPUT_SIZE;
  std::string phrase(password_ok ? password : absl::string_view());
  const std::string salt(setting_ok ? setting : absl::string_view("*"));

  auto data = NewCryptData();
  g_crypt_calls.fetch_add(1, std::memory_order_relaxed);
  const char* result = ::crypt_r(phrase.c_str(), salt.c_str(), data.get());

  bool match = false;
  if (result != nullptr && result[0] != '*' && password_ok && setting_ok) {
    // Constant time in the position of the first difference: always walk
    // the whole stored hash. Lengths are public (the scheme fixes them).
    const size_t result_len = ::strlen(result);
    unsigned char diff = result_len == setting.size() ? 0 : 1;
    for (size_t i = 0; i < setting.size(); ++i) {
      const unsigned char a =
          i < result_len ? static_cast<unsigned char>(result[i]) : 0;
      diff |= a ^ static_cast<unsigned char>(setting[i]);
    }
    match = diff == 0;
  }
  // The output is as good as a password for a stolen-hash comparison, and
  // the phrase copy is the password: neither should linger on the heap.
  ::explicit_bzero(data.get(), sizeof(crypt_data));
  ::explicit_bzero(phrase.data(), phrase.size());
  return match;
}

bool IsUsableCryptHash(absl::string_view hash) {
  if (hash.empty() || hash[0] == '*' || hash[0] == '!') return false;
  if (hash.find('\0') != absl::string_view::npos) return false;
  if (hash.size() >= CRYPT_OUTPUT_SIZE) return false;
  const std::string copy(hash);
  const int verdict = ::crypt_checksalt(copy.c_str());
  return verdict == CRYPT_SALT_OK || verdict == CRYPT_SALT_METHOD_LEGACY ||
         verdict == CRYPT_SALT_TOO_CHEAP;
}

bool IsCompleteCryptHash(absl::string_view hash) {
  if (!IsUsableCryptHash(hash)) return false;
  if (!absl::StartsWith(hash, "$")) return hash.size() == 13;  // DES
  const size_t last = hash.rfind('$');
  // "$id$" then at least one more '$' before the digest.
  const size_t id_end = hash.find('$', 1);
  if (id_end == absl::string_view::npos || last <= id_end) return false;
  const absl::string_view id = hash.substr(0, id_end + 1);
  const size_t digest = hash.size() - last - 1;
  if (id == "$6$") return digest == 86;
  if (id == "$5$") return digest == 43;
  if (id == "$y$" || id == "$gy$" || id == "$7$") return digest == 43;
  if (id == "$1$") return digest == 22;
  if (id == "$2a$" || id == "$2b$" || id == "$2y$") return digest == 53;
  return digest > 0;
}

bool IsWeakCryptHash(absl::string_view hash) {
  const std::string copy(hash);
  const int verdict = ::crypt_checksalt(copy.c_str());
  return verdict == CRYPT_SALT_METHOD_LEGACY || verdict == CRYPT_SALT_TOO_CHEAP;
}

std::string CryptCostKey(absl::string_view hash) {
  if (!absl::StartsWith(hash, "$")) return "";  // traditional DES
  const size_t id_end = hash.find('$', 1);
  if (id_end == absl::string_view::npos) return std::string(hash);
  const absl::string_view id = hash.substr(0, id_end + 1);  // "$6$"
  if (id == "$5$" || id == "$6$") {
    const absl::string_view second = SecondField(hash);
    if (absl::StartsWith(second, "rounds=")) {
      return absl::StrCat(id, second);
    }
    return std::string(id);
  }
  if (id == "$2a$" || id == "$2b$" || id == "$2y$" || id == "$y$" ||
      id == "$gy$" || id == "$7$") {
    return absl::StrCat(id, SecondField(hash));
  }
  return std::string(id);  // $1$, $md5, $sha1$, ...: cost fixed by the id
}

std::string MakeDummySetting(absl::string_view like) {
  if (!IsUsableCryptHash(like)) return GenSalt(nullptr, 0);
  const std::string key = CryptCostKey(like);
  const size_t id_end = like.find('$', 1);
  std::string prefix;
  if (absl::StartsWith(like, "$") && id_end != absl::string_view::npos) {
    prefix = std::string(like.substr(0, id_end + 1));
  }
  // Candidate counts for crypt_gensalt_rn: the rounds/log-cost written in
  // the hash where it is a number; yescrypt encodes N, r, p in its params
  // field, so try the gensalt cost range (1..11) and keep the one that
  // reproduces it.
  std::string setting;
  const absl::string_view second = SecondField(like);
  unsigned long count = 0;
  if (absl::StartsWith(second, "rounds=") &&
      absl::SimpleAtoi(second.substr(7), &count)) {
    setting = GenSalt(prefix.c_str(), count);
  } else if (absl::StartsWith(prefix, "$2") &&
             absl::SimpleAtoi(second, &count)) {
    setting = GenSalt(prefix.c_str(), count);
  } else if (prefix == "$y$" || prefix == "$gy$" || prefix == "$7$") {
    for (unsigned long c = 1; c <= 11; ++c) {
      std::string candidate = GenSalt(prefix.c_str(), c);
      if (!candidate.empty() && CryptCostKey(candidate) == key) {
        setting = std::move(candidate);
        break;
      }
    }
  } else if (!prefix.empty()) {
    setting = GenSalt(prefix.c_str(), 0);
  } else {
    setting = GenSalt("", 0);  // DES: the only way to ask for it
  }
  if (setting.empty() || CryptCostKey(setting) != key) {
    return std::string(like);
  }
  return setting;
}

uint64_t CryptCallsForTest() {
  return g_crypt_calls.load(std::memory_order_relaxed);
}

}  // namespace popgate::core::auth
