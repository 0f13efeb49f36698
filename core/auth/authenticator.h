// Password verification backends (PAM, shadow, passwd-file) behind one seam.
//
// Callers: net/ only (the session process in --mode=fork, before it drops
// privileges). Implementations may block for a long time (crypt, PAM fail
// delays) and must never run on an event-loop thread.
//
// Security contract, shared by every backend:
//  - every failure (unknown user, wrong password, uid 0, empty password,
//    locked account) returns the same PermissionDenied status, after the
//    same kind of work (a dummy hash for unknown users);
//  - nothing here logs a password; an unknown user's name is never logged.
#ifndef POPGATE_CORE_AUTH_AUTHENTICATOR_H_
#define POPGATE_CORE_AUTH_AUTHENTICATOR_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::core::auth {

// Who the session becomes after a successful PASS.
struct AuthenticatedUser {
  std::string name;  // the (possibly backend-mapped) account name
  uid_t uid = 0;     // never 0: backends refuse root
  gid_t gid = 0;     // the only group the session keeps
  std::string home;  // for `~` in --mail
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;

  // Returns the account on success. PermissionDenied for every refusal
  // (whether the user exists is not revealed, not even in the message);
  // Unavailable when the backend itself failed (PAM could not run, file
  // unreadable): the client then gets [SYS/TEMP].
  // `known_user` is set to whether the name exists, for popa3d's log line
  // ("Authentication failed for UNKNOWN USER"); it may be null.
  virtual absl::StatusOr<AuthenticatedUser> Authenticate(
      absl::string_view user, absl::string_view password,
      bool* known_user) = 0;

  // As Authenticate(), with the client's address (numeric text, may be
  // empty) for backends that use it: PAM passes it as PAM_RHOST so modules
  // (pam_access, pam_faillock, pam_unix's log line) see the real source.
  // The default ignores it. A separate name, not an overload, so overriding
  // one does not hide the other.
  virtual absl::StatusOr<AuthenticatedUser> AuthenticateFrom(
      absl::string_view remote_host, absl::string_view user,
      absl::string_view password, bool* known_user) {
    return Authenticate(user, password, known_user);
  }

  // Zeroes and drops every secret the backend keeps in memory (a
  // passwd-file's hashes), for a process about to lose its privileges: a
  // session running as the user, a pool worker. Authenticate() refuses
  // everyone afterwards. REQUIRES: no concurrent Authenticate() call.
  virtual void WipeSecrets() {}
};

// The one refusal every backend returns, whatever the reason. The message is
// fixed so that nothing downstream can tell the reasons apart.
inline absl::Status AuthFailedError() {
  return absl::PermissionDeniedError("authentication failed");
}

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_AUTHENTICATOR_H_
