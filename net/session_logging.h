// popa3d's per-session log lines that do not depend on how a session is
// driven: shared by the one-process driver (session_process.cc) and the
// --mode=pool worker (pool_worker.cc), so both modes log the same texts
// (admins' fail2ban filters match them).
//
// Threading: calls core::Log, callable from any thread.
#ifndef POPGATE_NET_SESSION_LOGGING_H_
#define POPGATE_NET_SESSION_LOGGING_H_

#include <cstddef>
#include <cstdint>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/session.h"
#include "mailbox/maildrop.h"

namespace popgate::net {

// What the driver knows about a session that core::Session does not.
struct SessionLogFacts {
  bool authenticated = false;   // PASS succeeded (TRANSACTION reached)
  bool auth_attempted = false;  // a PASS reached the backend
  // The auth verdict already got its line ("Failed or refused to load
  // ..."): no "Server failure accessing" for the same event.
  bool auth_failure_logged = false;
  // The write side broke (EPIPE, reset) before the session ended itself.
  bool peer_gone = false;
  absl::string_view mail_path;  // for CRIT lines after the load
};

// The end-of-session line for session.end_reason() ("Didn't attempt
// authentication", "<d> (<db>) deleted, <l> (<lb>) left", ...), or none.
void LogSessionEnd(const core::Session& session, const SessionLogFacts& facts);

// "Authentication failed for <user>" (notice). popa3d never logs a name that
// is not an account (it may be a password typed into USER): "UNKNOWN USER".
void LogAuthDenied(absl::string_view user, bool known_user);

// After a successful PASS: logs how opening the maildrop at `path` went
// ("Failed or refused to load <path>" plus a line saying why, or
// "<n> messages (<b> bytes) loaded") and returns the verdict for the session: kOk with *maildrop set,
// kInUse when another session holds it (Unavailable), else kLoadFailed.
core::AuthVerdict AcceptOpenedMaildrop(
    absl::string_view path,
    absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> opened,
    std::unique_ptr<mailbox::Maildrop>* maildrop);

}  // namespace popgate::net

#endif  // POPGATE_NET_SESSION_LOGGING_H_
