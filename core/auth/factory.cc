#include "core/auth/factory.h"

#include <utility>

#include "core/auth/accounts.h"
#include "core/auth/pam.h"
#include "core/auth/passwd_file.h"
#include "core/auth/shadow.h"
#include "core/status_macros.h"

namespace popgate::core::auth {

AuthOptions AuthOptionsFromConfig(const Config& config) {
  AuthOptions options;
  options.pam_service = config.pam_service;
  return options;
}

absl::StatusOr<std::unique_ptr<Authenticator>> MakeAuthenticator(
    const AuthSpec& spec, const AuthOptions& options) {
  switch (spec.kind) {
    case AuthKind::kPam:
      return std::make_unique<PamAuthenticator>(options.pam_service,
                                                SystemAccounts());
    case AuthKind::kShadow: {
      ShadowOptions shadow;
      shadow.fork_verifier = options.shadow_fork_verifier;
      return std::make_unique<ShadowAuthenticator>(SystemAccounts(), shadow);
    }
    case AuthKind::kPasswdFile: {
      ASSIGN_OR_RETURN(std::unique_ptr<PasswdFileAuthenticator> file,
                       PasswdFileAuthenticator::Open(spec.path));
      return std::unique_ptr<Authenticator>(std::move(file));
    }
  }
  return absl::InvalidArgumentError("unknown --auth kind");
}

}  // namespace popgate::core::auth
