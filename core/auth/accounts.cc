#include "core/auth/accounts.h"

#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <string.h>
#include <unistd.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace popgate::core::auth {
namespace {

// NSS buffers: start at sysconf's suggestion and double on ERANGE, up to a
// cap so a broken NSS module cannot make us allocate without bound.
constexpr size_t kMaxNssBuffer = 1 << 20;

size_t InitialBufferSize(int name) {
  const long suggested = ::sysconf(name);
  return suggested > 0 ? static_cast<size_t>(suggested) : 16384;
}

// Always Unavailable, whatever the errno: ErrnoToStatus would turn EACCES
// into PermissionDenied, which callers must only ever see for "refused".
absl::Status NssError(absl::string_view call, int err) {
  const char* text = err != 0 ? ::strerrordesc_np(err) : "no result";
  return absl::UnavailableError(
      absl::StrCat(call, ": ", text != nullptr ? text : "unknown error"));
}

class SystemAccountSource : public AccountSource {
 public:
  absl::StatusOr<std::optional<PasswdInfo>> LookupPasswd(
      absl::string_view name) override {
    if (name.find('\0') != absl::string_view::npos) return std::nullopt;
    const std::string key(name);
    std::vector<char> buffer(InitialBufferSize(_SC_GETPW_R_SIZE_MAX));
    for (;;) {
      struct passwd pw;
      struct passwd* result = nullptr;
      const int err =
          ::getpwnam_r(key.c_str(), &pw, buffer.data(), buffer.size(), &result);
      if (err == ERANGE && buffer.size() < kMaxNssBuffer) {
        buffer.resize(buffer.size() * 2);
        continue;
      }
      // getpwnam_r reports "not found" as 0 with a null result; some NSS
      // modules use ENOENT/ESRCH/EBADF/EPERM for the same (getpwnam(3)).
      if (result == nullptr &&
          (err == 0 || err == ENOENT || err == ESRCH || err == EBADF ||
           err == EPERM)) {
        return std::nullopt;
      }
      if (err != 0 || result == nullptr) {
        return NssError("getpwnam_r", err);
      }
      PasswdInfo info{pw.pw_name, pw.pw_uid, pw.pw_gid,
                      pw.pw_dir != nullptr ? pw.pw_dir : ""};
      // The passwd field may hold a hash on systems without shadow.
      if (pw.pw_passwd != nullptr) {
        ::explicit_bzero(pw.pw_passwd, ::strlen(pw.pw_passwd));
      }
      return info;
    }
  }

  absl::StatusOr<std::optional<std::string>> LookupShadowHash(
      absl::string_view name) override {
    if (name.find('\0') != absl::string_view::npos) return std::nullopt;
    const std::string key(name);
    std::vector<char> buffer(InitialBufferSize(_SC_GETPW_R_SIZE_MAX));
    for (;;) {
      struct spwd sp;
      struct spwd* result = nullptr;
      errno = 0;
      const int rc =
          ::getspnam_r(key.c_str(), &sp, buffer.data(), buffer.size(), &result);
      // glibc's getspnam_r returns the error number (and sets errno).
      const int err = rc != 0 ? rc : 0;
      if (err == ERANGE && buffer.size() < kMaxNssBuffer) {
        buffer.resize(buffer.size() * 2);
        continue;
      }
      if (result == nullptr && (err == 0 || err == ENOENT)) {
        ::explicit_bzero(buffer.data(), buffer.size());
        return std::nullopt;
      }
      if (err != 0 || result == nullptr) {
        ::explicit_bzero(buffer.data(), buffer.size());
        return NssError("getspnam_r", err);
      }
      std::string hash = sp.sp_pwdp != nullptr ? sp.sp_pwdp : "";
      ::explicit_bzero(buffer.data(), buffer.size());
      return hash;
    }
  }
};

}  // namespace

std::unique_ptr<AccountSource> SystemAccounts() {
  return std::make_unique<SystemAccountSource>();
}

}  // namespace popgate::core::auth
