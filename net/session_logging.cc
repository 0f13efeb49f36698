#include "net/session_logging.h"

#include <string>

#include "core/logging.h"
#include "net/session_process.h"

namespace popgate::net {

using core::Severity;

void LogSessionEnd(const core::Session& session, const SessionLogFacts& facts) {
  using core::EndReason;
  switch (session.end_reason()) {
    case EndReason::kQuit:
      if (facts.authenticated) {
        core::Log(Severity::kInfo, UpdateLogLine(session.update_summary()));
      }
      return;
    case EndReason::kNoAuthAttempt:
      core::Log(Severity::kInfo, "Didn't attempt authentication");
      return;
    case EndReason::kAuthFailed:
      return;  // logged when the verdict was made
    case EndReason::kPrematureDisconnect:
      core::Log(Severity::kInfo, "Premature disconnect");
      return;
    case EndReason::kTimeout:
      // popa3d logs a timeout in AUTHORIZATION as no attempt at all
      // (reference §5.4); core/ doesn't know which state timed out.
      core::Log(Severity::kInfo, facts.authenticated || facts.auth_attempted
                                     ? "Connection timed out"
                                     : "Didn't attempt authentication");
      return;
    case EndReason::kStale:
      core::Log(Severity::kInfo, "Another MUA active, giving up");
      return;
    case EndReason::kServerFailure:
      if (facts.auth_failure_logged) return;
      core::Logf(Severity::kCrit, "Server failure accessing %s",
                 facts.mail_path);
      return;
    case EndReason::kUpdateFailed:
      core::Logf(Severity::kCrit, "Failed to update %s", facts.mail_path);
      return;
    case EndReason::kTooManyBadCommands:
      core::Log(Severity::kInfo, "Too many bad commands");
      return;
    case EndReason::kInputOverflow:
      core::Log(Severity::kInfo, "Too much pipelined input");
      return;
    case EndReason::kNone:
      break;
  }
  // The session didn't end by itself: the write side broke.
  if (facts.peer_gone) {
    core::Log(Severity::kInfo, facts.authenticated
                                   ? "Premature disconnect"
                                   : "Didn't attempt authentication");
  }
}

void LogAuthDenied(absl::string_view user, bool known_user) {
  core::Logf(Severity::kNotice, "Authentication failed for %s",
             known_user ? user : absl::string_view("UNKNOWN USER"));
}

core::AuthVerdict AcceptOpenedMaildrop(
    absl::string_view path,
    absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> opened,
    std::unique_ptr<mailbox::Maildrop>* maildrop) {
  if (!opened.ok()) {
    // popa3d's exact line (log filters match it), then why, separately.
    core::Logf(Severity::kNotice, "Failed or refused to load %s", path);
    core::Logf(Severity::kInfo, "Why %s was refused: %s", path,
               opened.status().message());
    return absl::IsUnavailable(opened.status()) ? core::AuthVerdict::kInUse
                                                : core::AuthVerdict::kLoadFailed;
  }
  uint64_t bytes = 0;
  const size_t count = (*opened)->message_count();
  for (size_t i = 0; i < count; ++i) bytes += (*opened)->message_size(i);
  core::Log(Severity::kInfo, LoadedLogLine(count, bytes));
  *maildrop = std::move(*opened);
  return core::AuthVerdict::kOk;
}

}  // namespace popgate::net
