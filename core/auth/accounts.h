// The system account database (passwd + shadow) behind a seam, so the shadow
// and PAM backends can be tested without creating users on the machine.
//
// Threading: SystemAccounts() is thread-safe (the _r NSS calls). Fakes used
// in tests are whatever the test makes them.
#ifndef POPGATE_CORE_AUTH_ACCOUNTS_H_
#define POPGATE_CORE_AUTH_ACCOUNTS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::core::auth {

// What we keep of a passwd entry. The password field is deliberately absent.
struct PasswdInfo {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

class AccountSource {
 public:
  virtual ~AccountSource() = default;
  // nullopt if there is no such user; Unavailable if the lookup itself
  // failed (NSS error other than "not found"), so an LDAP outage is a
  // temporary failure, not "unknown user".
  virtual absl::StatusOr<std::optional<PasswdInfo>> LookupPasswd(
      absl::string_view name) = 0;
  // The shadow hash (sp_pwdp), nullopt if there is no shadow entry.
  // Unavailable on lookup errors (e.g. EACCES when not root).
  virtual absl::StatusOr<std::optional<std::string>> LookupShadowHash(
      absl::string_view name) = 0;
};

// getpwnam_r / getspnam_r. Names with a NUL are reported absent.
std::unique_ptr<AccountSource> SystemAccounts();

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_ACCOUNTS_H_
