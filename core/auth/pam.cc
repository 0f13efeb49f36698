#include "core/auth/pam.h"

#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"

namespace popgate::core::auth {
namespace {

struct ConversationData {
  const char* user;
  const char* password;
};

void FreeResponses(struct pam_response* responses, int count) {
  if (responses == nullptr) return;
  for (int i = 0; i < count; ++i) {
    if (responses[i].resp != nullptr) {
      // May be a password copy: wipe before free.
      ::explicit_bzero(responses[i].resp, ::strlen(responses[i].resp));
      ::free(responses[i].resp);
    }
  }
  ::free(responses);
}

// Answers PROMPT_ECHO_ON with the user and PROMPT_ECHO_OFF with the
// password; ERROR_MSG and TEXT_INFO get no answer. Anything else (binary
// prompts) fails the conversation. Linux-PAM passes `messages` as an array
// of pointers (messages[i]); we rely on that layout, as every Linux-PAM
// application does. PAM frees the responses and their strings on success;
// on failure we free everything we allocated and return no array.
int Converse(int count, const struct pam_message** messages,
                        struct pam_response** responses, void* appdata) {
  if (count <= 0 || count > PAM_MAX_NUM_MSG || responses == nullptr ||
      appdata == nullptr) {
    return PAM_CONV_ERR;
  }
  *responses = nullptr;
  const auto* data = static_cast<const ConversationData*>(appdata);
  auto* reply = static_cast<struct pam_response*>(
      ::calloc(static_cast<size_t>(count), sizeof(struct pam_response)));
  if (reply == nullptr) return PAM_BUF_ERR;
  for (int i = 0; i < count; ++i) {
    const char* answer = nullptr;
    switch (messages[i]->msg_style) {
      case PAM_PROMPT_ECHO_ON:
        answer = data->user;
        break;
      case PAM_PROMPT_ECHO_OFF:
        answer = data->password;
        break;
      case PAM_ERROR_MSG:
      case PAM_TEXT_INFO:
        continue;
      default:
        FreeResponses(reply, count);
        return PAM_CONV_ERR;
    }
    reply[i].resp = ::strdup(answer);
    if (reply[i].resp == nullptr) {
      FreeResponses(reply, count);
      return PAM_BUF_ERR;
    }
  }
  *responses = reply;
  return PAM_SUCCESS;
}

// Codes that mean "PAM could not decide", which the client sees as
// [SYS/TEMP] instead of a refusal. PAM_SYSTEM_ERR is deliberately not one:
// modules such as pam_exec return it for an ordinary "no" (the helper
// exited non-zero), and answering [SYS/TEMP] there would tell a guesser
// which attempts reached the check. Every other code is a refusal.
bool IsBackendFailure(int rc) {
  return rc == PAM_AUTHINFO_UNAVAIL || rc == PAM_BUF_ERR || rc == PAM_ABORT;
}

}  // namespace

PamAuthenticator::PamAuthenticator(std::string service,
                                   std::unique_ptr<AccountSource> accounts)
    : service_(std::move(service)), accounts_(std::move(accounts)) {}

absl::StatusOr<AuthenticatedUser> PamAuthenticator::Authenticate(
    absl::string_view user, absl::string_view password, bool* known_user) {
  return AuthenticateFrom("", user, password, known_user);
}

absl::StatusOr<AuthenticatedUser> PamAuthenticator::AuthenticateFrom(
    absl::string_view remote_host, absl::string_view user,
    absl::string_view password, bool* known_user) {
  if (known_user != nullptr) *known_user = false;
  // "Known" always comes from the typed name, as in popa3d, whatever PAM
  // maps it to.
  ASSIGN_OR_RETURN(std::optional<PasswdInfo> typed,
                   accounts_->LookupPasswd(user));
  if (known_user != nullptr) *known_user = typed.has_value();

  // See pam.h for why these need no dummy work.
  if (password.empty() || user.empty() ||
      password.find('\0') != absl::string_view::npos ||
      user.find('\0') != absl::string_view::npos ||
      remote_host.find('\0') != absl::string_view::npos) {
    return AuthFailedError();
  }

  const std::string user_copy(user);
  std::string password_copy(password);
  ConversationData data{user_copy.c_str(), password_copy.c_str()};
  const struct pam_conv conversation = {&Converse, &data};
  pam_handle_t* handle = nullptr;
  int rc = ::pam_start(service_.c_str(), user_copy.c_str(), &conversation,
                       &handle);
  if (rc != PAM_SUCCESS) {
    ::explicit_bzero(password_copy.data(), password_copy.size());
    if (handle != nullptr) ::pam_end(handle, rc);
    return absl::UnavailableError(absl::StrCat("pam_start(", service_,
                                               ") failed: ", rc));
  }
  if (!remote_host.empty()) {
    const std::string host(remote_host);
    rc = ::pam_set_item(handle, PAM_RHOST, host.c_str());
  }
  if (rc == PAM_SUCCESS) rc = ::pam_authenticate(handle, 0);
  if (rc == PAM_SUCCESS) rc = ::pam_acct_mgmt(handle, 0);
  std::string mapped;
  if (rc == PAM_SUCCESS) {
    // Modules may rewrite the user (e.g. lowercasing, aliases); the session
    // runs as the mapped account, as popa3d does.
    const void* item = nullptr;
    rc = ::pam_get_item(handle, PAM_USER, &item);
    if (rc == PAM_SUCCESS) {
      if (item != nullptr) {
        mapped = static_cast<const char*>(item);
      } else {
        rc = PAM_SYSTEM_ERR;
      }
    }
  }
  // The password is no longer needed: wipe it before anything else.
  ::explicit_bzero(password_copy.data(), password_copy.size());
  ::pam_end(handle, rc);

  if (IsBackendFailure(rc)) {
    return absl::UnavailableError(
        absl::StrCat("PAM service ", service_, " failed: ",
                     ::pam_strerror(nullptr, rc)));
  }
  if (rc != PAM_SUCCESS) return AuthFailedError();

  ASSIGN_OR_RETURN(std::optional<PasswdInfo> account,
                   accounts_->LookupPasswd(mapped));
  if (!account.has_value()) {
    // PAM accepted a name the passwd database does not know: we cannot pick
    // a uid, so refuse, and tell the admin (the name is PAM's, not typed).
    Logf(Severity::kWarning, "PAM mapped %s to %s, which has no passwd entry",
         user, mapped);
    return AuthFailedError();
  }
  if (account->uid == 0) return AuthFailedError();
  return AuthenticatedUser{account->name, account->uid, account->gid,
                           account->home};
}

int ConversePamForTest(const std::vector<int>& styles, absl::string_view user,
                       absl::string_view password,
                       std::vector<std::string>* answers) {
  const std::string user_copy(user);
  const std::string password_copy(password);
  ConversationData data{user_copy.c_str(), password_copy.c_str()};
  std::vector<struct pam_message> storage(styles.size());
  std::vector<const struct pam_message*> pointers;
  for (size_t i = 0; i < styles.size(); ++i) {
    storage[i].msg_style = styles[i];
    storage[i].msg = "prompt: ";
    pointers.push_back(&storage[i]);
  }
  struct pam_response* responses = nullptr;
  const int rc = Converse(static_cast<int>(styles.size()), pointers.data(),
                          &responses, &data);
  if (rc == PAM_SUCCESS) {
    answers->clear();
    for (size_t i = 0; i < styles.size(); ++i) {
      answers->push_back(responses[i].resp != nullptr ? responses[i].resp : "");
    }
    FreeResponses(responses, static_cast<int>(styles.size()));
  } else if (responses != nullptr) {
    return -1;  // a failed conversation must not hand back responses
  }
  return rc;
}

}  // namespace popgate::core::auth
