// Builds the password backend that --auth names.
//
// Callers: net/'s wiring, once at startup (and again on SIGHUP for
// passwd-file, via PasswdFileAuthenticator::Reload).
#ifndef POPGATE_CORE_AUTH_FACTORY_H_
#define POPGATE_CORE_AUTH_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/auth/authenticator.h"
#include "core/config.h"

namespace popgate::core::auth {

struct AuthOptions {
  // --pam_service: "popgate", or "popa3d" for a drop-in replacement.
  std::string pam_service = "popgate";
  // shadow: check each password in a forked child (popa3d's model; see
  // shadow.h for the threading caveat). false only for callers that cannot
  // fork.
  bool shadow_fork_verifier = true;
};

// The AuthOptions a Config implies.
AuthOptions AuthOptionsFromConfig(const Config& config);

// PAM and shadow never fail here (their failures show per call). For
// passwd-file: Unavailable if the file cannot be read, InvalidArgument if it
// is absurdly large; refused lines are logged as warnings, not errors.
absl::StatusOr<std::unique_ptr<Authenticator>> MakeAuthenticator(
    const AuthSpec& spec, const AuthOptions& options);

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_FACTORY_H_
