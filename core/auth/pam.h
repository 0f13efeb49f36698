// PAM backend (Debian's popa3d build, auth_pam.c): pam_authenticate then
// pam_acct_mgmt under a configurable service ("popgate"; "popa3d" for a
// drop-in replacement using Debian's /etc/pam.d/popa3d).
//
// Privilege: pam_unix reads /etc/shadow directly as root, or through the
// setgid unix_chkpwd helper otherwise. Unlike the shadow backend we do not
// fork: as popa3d, PAM runs in the calling process, because modules may keep
// state across the handle and fork-per-call would break those that talk to
// daemons (sssd, winbind) over inherited connections.
//
// Empty passwords: refused before PAM is called, with no dummy work. The
// refusal depends only on what the client itself sent, so its timing reveals
// nothing the client does not know (not whether the user exists), and PAM
// would otherwise spend its fail delay and a log line on a guaranteed no.
// The same holds for user names or passwords containing a NUL, which PAM's
// C strings cannot carry faithfully.
//
// Timing for unknown users: left to PAM. pam_unix hashes against a dummy for
// unknown users and applies its fail delay (2 s nominal, randomised) to
// every failure, which dominates any difference (popa3d-behaviour.md §5.3).
//
// Threading: each call uses its own PAM handle; safe to call concurrently
// if the configured modules are (pam_unix is).
#ifndef POPGATE_CORE_AUTH_PAM_H_
#define POPGATE_CORE_AUTH_PAM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/accounts.h"
#include "core/auth/authenticator.h"

namespace popgate::core::auth {

class PamAuthenticator : public Authenticator {
 public:
  // `accounts` resolves the (possibly PAM-mapped) user to uid/gid/home and
  // the typed name to "known"; SystemAccounts() in production.
  PamAuthenticator(std::string service, std::unique_ptr<AccountSource> accounts);

  // Contract: authenticator.h. Same as AuthenticateFrom("", ...).
  absl::StatusOr<AuthenticatedUser> Authenticate(absl::string_view user,
                                                 absl::string_view password,
                                                 bool* known_user) override;

  // Sets PAM_RHOST to `remote_host` when it is not empty. PermissionDenied
  // for every refusal; Unavailable when PAM cannot run (pam_start failed,
  // PAM_AUTHINFO_UNAVAIL, PAM_BUF_ERR, PAM_ABORT) or the passwd lookup
  // fails. PAM_SYSTEM_ERR is a refusal: pam_exec uses it for "no".
  absl::StatusOr<AuthenticatedUser> AuthenticateFrom(
      absl::string_view remote_host, absl::string_view user,
      absl::string_view password, bool* known_user) override;

  const std::string& service() const { return service_; }

 private:
  const std::string service_;
  std::unique_ptr<AccountSource> accounts_;
};

// Test hook: runs our PAM conversation function on prompts of the given
// styles (PAM_PROMPT_ECHO_ON = 2, PAM_PROMPT_ECHO_OFF = 1, PAM_ERROR_MSG =
// 3, PAM_TEXT_INFO = 4, ...) and returns its PAM code; on PAM_SUCCESS
// `answers` gets one entry per prompt ("" where no answer was given).
int ConversePamForTest(const std::vector<int>& styles, absl::string_view user,
                       absl::string_view password,
                       std::vector<std::string>* answers);

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_PAM_H_
