// shadow backend: getpwnam_r decides who the user is, getspnam_r + crypt_r
// check the password (popa3d's upstream default, auth_shadow.c).
//
// Privilege: needs root (or group shadow) to read /etc/shadow. As popa3d
// does, the shadow lookup and crypt run in a short-lived forked child that
// reports a 1-byte verdict through a pipe and _exits, so no shadow data
// (hash, NSS buffers, crypt state) ever exists in the long-lived process
// that later drops to the user.
//
// Threading: fork() from a multi-threaded process is only safe for what the
// child does if no other thread holds an NSS or malloc lock at that moment.
// glibc makes malloc fork-safe; NSS modules other than "files" may not be.
// So use the forking mode from single-threaded callers (the --mode=fork
// session process, as popa3d); a threaded auth service must either keep
// `fork_verifier` false or serialise its calls.
#ifndef POPGATE_CORE_AUTH_SHADOW_H_
#define POPGATE_CORE_AUTH_SHADOW_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/accounts.h"
#include "core/auth/authenticator.h"

namespace popgate::core::auth {

struct ShadowOptions {
  // Check the password in a forked child (popa3d's model). false runs the
  // check in-process: for tests (the crypt call counter lives in this
  // process) and for callers that cannot fork.
  bool fork_verifier = true;
};

class ShadowAuthenticator : public Authenticator {
 public:
  // `accounts` is the passwd/shadow seam; SystemAccounts() in production.
  ShadowAuthenticator(std::unique_ptr<AccountSource> accounts,
                      const ShadowOptions& options);

  // Contract: authenticator.h. Every path costs one fork (if enabled) and
  // one crypt_r. Unavailable if NSS fails or the child dies.
  absl::StatusOr<AuthenticatedUser> Authenticate(absl::string_view user,
                                                 absl::string_view password,
                                                 bool* known_user) override;

 private:
  // 'Y' (match), 'N' (no match or refused) or 'E' (lookup failed): the
  // whole shadow check, run in the child or in-process.
  char Verify(bool known, absl::string_view user, absl::string_view password);
  absl::StatusOr<char> VerifyInChild(bool known, absl::string_view user,
                                     absl::string_view password);

  std::unique_ptr<AccountSource> accounts_;
  const ShadowOptions options_;
  // libxcrypt's default scheme and cost (yescrypt on Debian 12, as
  // passwd(1) writes): we cannot see the shadow file from here to imitate
  // its most common cost, and the default is what new hashes use.
  const std::string dummy_setting_;
};

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_SHADOW_H_
