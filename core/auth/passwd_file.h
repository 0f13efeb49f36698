// passwd-file backend: Dovecot-compatible virtual users in one file,
//
//   user:{SCHEME}hash:uid:gid:gecos:home:shell[:extra fields, ignored]
//
// gecos, home and shell may be missing or empty (home is only needed when
// --mail uses ~). The password field is {CRYPT}, {SHA512-CRYPT},
// {SHA256-CRYPT} or {BLF-CRYPT} followed by a crypt(3) hash (yescrypt "$y$"
// goes under {CRYPT}), or a bare crypt hash. '#' starts a comment line.
//
// The file is parsed once (Open) into a map and re-read only on Reload()
// (SIGHUP, later). identity() lets an auth cache notice a changed file.
//
// Trust: the file is admin-owned, but we treat it as hostile-ish anyway: a
// bad line (too long, missing fields, non-numeric ids, unknown scheme) is
// skipped or locked with a warning, never a crash, never a partial account.
//
// Threading: Authenticate() may run on many threads at once, concurrently
// with Reload(); the table is swapped under a lock, and crypt runs unlocked.
#ifndef POPGATE_CORE_AUTH_PASSWD_FILE_H_
#define POPGATE_CORE_AUTH_PASSWD_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/auth/authenticator.h"

namespace popgate::core::auth {

// One account. `hash` is empty when the line's password cannot be used
// (locked '*'/'!', empty, unknown or mismatched scheme): the user is then
// "known" for the log line but can never log in.
struct PasswdFileEntry {
  std::string name;
  std::string hash;  // a crypt(3) hash, scheme prefix stripped
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

struct PasswdFileTable {
  absl::flat_hash_map<std::string, PasswdFileEntry> entries;
  // One line per skipped or locked line: "line 7: ...". Never contains a
  // hash or anything from the password field beyond its {SCHEME}.
  std::vector<std::string> warnings;
  // The hash the dummy setting imitates: the one with the most common cost
  // (ties: the earliest line). Empty when no usable hash exists.
  std::string representative_hash;
};

// Hard limits on what the parser accepts. A longer line is skipped; a larger
// file is refused as a whole (it is certainly not a passwd file).
inline constexpr size_t kPasswdFileMaxLineBytes = 4096;
inline constexpr size_t kPasswdFileMaxBytes = 64 << 20;

// Pure parser (no I/O, no logging): the fuzz target. Never fails; what it
// cannot use it reports in `warnings`. Duplicate users: the first line wins,
// as in Dovecot.
PasswdFileTable ParsePasswdFile(absl::string_view contents);

// Identifies one version of the file, for cache invalidation.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  int64_t size = 0;
  absl::Time mtime;

  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

class PasswdFileAuthenticator : public Authenticator {
 public:
  // Reads and parses `path` (logs a warning per refused line).
  // Unavailable if the file cannot be read or is not a regular file;
  // InvalidArgument if larger than kPasswdFileMaxBytes.
  static absl::StatusOr<std::unique_ptr<PasswdFileAuthenticator>> Open(
      std::string path);

  // Contract: authenticator.h. Every refusal costs exactly one crypt_r.
  absl::StatusOr<AuthenticatedUser> Authenticate(absl::string_view user,
                                                 absl::string_view password,
                                                 bool* known_user) override;

  // Re-reads the file. On error the old table stays in force and the error
  // is returned (and logged by the caller, which knows why it reloaded).
  absl::Status Reload();
  void WipeSecrets() override;

  // The (device, inode, size, mtime) of the file as last loaded.
  FileIdentity identity() const;
  size_t size() const;

 private:
  explicit PasswdFileAuthenticator(std::string path);

  const std::string path_;
  mutable std::shared_mutex mu_;
  // Guarded by mu_; replaced whole on Reload().
  std::shared_ptr<const PasswdFileTable> table_;
  std::string dummy_setting_;  // guarded by mu_
  FileIdentity identity_;      // guarded by mu_
};

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_PASSWD_FILE_H_
