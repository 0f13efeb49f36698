#include "core/auth/shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <utility>

#include "core/auth/crypt_verify.h"
#include "core/status_macros.h"

namespace popgate::core::auth {

ShadowAuthenticator::ShadowAuthenticator(
    std::unique_ptr<AccountSource> accounts, const ShadowOptions& options)
    : accounts_(std::move(accounts)),
      options_(options),
      dummy_setting_(MakeDummySetting("")) {}

char ShadowAuthenticator::Verify(bool known, absl::string_view user,
                                 absl::string_view password) {
  // The shadow lookup runs for unknown names too (it finds nothing), so an
  // unknown user costs the same NSS work as a known one, not just the same
  // crypt.
  absl::StatusOr<std::optional<std::string>> looked_up =
      accounts_->LookupShadowHash(user);
  if (!looked_up.ok()) {
    // Still hash, so a failing lookup costs what a refusal costs.
    CryptVerify(password, dummy_setting_);
    return 'E';
  }
  std::optional<std::string> hash;
  // A shadow entry without a passwd entry is never used: "known" is
  // getpwnam's verdict, as in popa3d.
  if (known) hash = *std::move(looked_up);
  // popa3d's rule: a missing entry, or a hash that is empty or starts with
  // '*' or '!', is checked against the dummy and refused.
  const bool usable = hash.has_value() && IsCompleteCryptHash(*hash);
  const bool match = CryptVerify(password, usable ? *hash : dummy_setting_);
  if (hash.has_value()) ::explicit_bzero(hash->data(), hash->size());
  return usable && match ? 'Y' : 'N';
}

absl::StatusOr<char> ShadowAuthenticator::VerifyInChild(
    bool known, absl::string_view user, absl::string_view password) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::UnavailableError("pipe2 failed");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::UnavailableError("fork failed");
  }
  if (pid == 0) {
    // Child: look up, hash, report one byte, and _exit without running
    // atexit handlers or destructors that belong to the parent.
    ::close(fds[0]);
    const char verdict = Verify(known, user, password);
    ssize_t n;
    do {
      n = ::write(fds[1], &verdict, 1);
    } while (n < 0 && errno == EINTR);
    ::_exit(n == 1 ? 0 : 1);
  }
  ::close(fds[1]);
  char verdict = 0;
  ssize_t n;
  do {
    n = ::read(fds[0], &verdict, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  // A child that died (crashed, killed) or said anything unexpected is a
  // backend failure, never a pass.
  if (n != 1 || waited != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0 ||
      (verdict != 'Y' && verdict != 'N' && verdict != 'E')) {
    return absl::UnavailableError("shadow check child failed");
  }
  return verdict;
}

absl::StatusOr<AuthenticatedUser> ShadowAuthenticator::Authenticate(
    absl::string_view user, absl::string_view password, bool* known_user) {
  if (known_user != nullptr) *known_user = false;
  // getpwnam decides "known" here, in the parent, as popa3d does; only the
  // shadow part goes to the child.
  ASSIGN_OR_RETURN(std::optional<PasswdInfo> pw, accounts_->LookupPasswd(user));
  if (known_user != nullptr) *known_user = pw.has_value();

  char verdict;
  if (options_.fork_verifier) {
    ASSIGN_OR_RETURN(verdict, VerifyInChild(pw.has_value(), user, password));
  } else {
    verdict = Verify(pw.has_value(), user, password);
  }
  if (verdict == 'E') {
    return absl::UnavailableError("shadow lookup failed");
  }
  // Refusals after the check, so they cost what a wrong password costs.
  if (verdict != 'Y' || !pw.has_value() || password.empty() || pw->uid == 0) {
    return AuthFailedError();
  }
  return AuthenticatedUser{pw->name, pw->uid, pw->gid, pw->home};
}

}  // namespace popgate::core::auth
