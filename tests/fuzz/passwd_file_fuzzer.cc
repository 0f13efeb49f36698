// Fuzz target for the passwd-file parser (core/auth/passwd_file.h): any
// bytes must parse without crashing, and whatever is accepted must satisfy
// the table's invariants. Never hashes (crypt would make runs slow).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "core/auth/crypt_verify.h"
#include "core/auth/passwd_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view contents(reinterpret_cast<const char*>(data), size);
  popgate::core::auth::PasswdFileTable table =
      popgate::core::auth::ParsePasswdFile(contents);
  for (const auto& [name, entry] : table.entries) {
    // Names are non-empty, printable, and keys match the entry.
    if (name.empty() || name != entry.name) std::abort();
    if (name.find(':') != std::string::npos) std::abort();
    for (char c : name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) std::abort();
    }
    // A kept hash is a complete one libcrypt accepts, never a locked marker.
    if (!entry.hash.empty() &&
        (entry.hash[0] == '*' || entry.hash[0] == '!' ||
         !popgate::core::auth::IsCompleteCryptHash(entry.hash))) {
      std::abort();
    }
    if (entry.uid == 0xffffffffu || entry.gid == 0xffffffffu) std::abort();
  }
  // The representative is one of the usable hashes, or empty.
  if (!table.representative_hash.empty() &&
      !popgate::core::auth::IsUsableCryptHash(table.representative_hash)) {
    std::abort();
  }
  return 0;
}
