// One POP3 session in one process (popa3d's model; --mode=fork and inetd).
//
// Callers: main() in inetd mode (fds 0/1), the -D master's forked child (the
// accepted socket). Blocking and simple: poll() on the connection, read into
// a 4 KiB buffer, feed core::Session, write its output with writev.
//
// Trust and privileges (popa3d's pop_root.c model):
//  - As root on a socket, AUTHORIZATION runs in a forked pre-auth child that
//    chroots to an empty <state_dir>/empty and drops to an unprivileged
//    account (privileges.h EnterPreauthJail) before it reads a client byte.
//    It reads one line at a time (MSG_PEEK), so the PASS line is the last
//    byte it takes from the socket; it then sends {user, password} to the
//    root process over a pipe and exits. Anything pipelined behind PASS is
//    still in the socket for the root process.
//  - The root process treats that message as untrusted (bounded, checked),
//    replays USER/PASS into its own Session (discarding the replies the child
//    already sent), authenticates, and on success drops to the user for good
//    before opening the mailbox: the mbox parser never runs as root. On a
//    failure with attempts left, a new jailed child takes the next attempt.
//  - Not root (developers), or not a socket (tests on pipes): one process,
//    no jail; only the authenticated uid equal to ours is ever served.
//  - uid 0 is never served.
#ifndef POPGATE_NET_SESSION_PROCESS_H_
#define POPGATE_NET_SESSION_PROCESS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/auth/authenticator.h"
#include "core/session.h"
#include "mailbox/maildrop.h"

namespace popgate::net {

// Everything a session process needs, built once by wiring.cc. The opener
// seams keep the concrete mailbox types in the wiring file (and let tests
// use fakes).
struct SessionEnvironment {
  core::SessionOptions session_options;
  // Per-read idle deadline (popa3d: 600 s, alarm() around each read()).
  absl::Duration idle_timeout = absl::Seconds(600);
  // Close when output makes no progress this long (popa3d has none).
  absl::Duration write_timeout = absl::Seconds(120);
  bool sendfile = true;  // --sendfile
  // Not owned; must outlive RunSession.
  core::auth::Authenticator* authenticator = nullptr;
  // Root of the per-user state directories (<state_dir>/<uid>).
  std::string state_dir;
  // The pre-auth child's account (--preauth_user; empty = popgate/nobody).
  std::string preauth_user;
  // The maildrop path for an authenticated user (ExpandMailPath).
  // InvalidArgument for an unusable name/home.
  std::function<absl::StatusOr<std::string>(
      const core::auth::AuthenticatedUser& user)>
      mail_path;
  // Opens the maildrop at `path` with `state_dir` (the user's
  // <state_dir>/<uid>) for redo records. Runs after the privilege drop.
  // Unavailable = locked by another session; anything else = refused.
  std::function<absl::StatusOr<std::unique_ptr<mailbox::Maildrop>>(
      const std::string& path, const std::string& state_dir)>
      open_maildrop;
};

// Serves one session: reads from `in_fd`, writes to `out_fd` (the same
// socket, or inetd's 0 and 1). Both are switched to non-blocking mode. Logs
// popa3d's per-session lines (auth, load, summary, end reason). Returns the
// process exit status: 0 after a normal end, 1 after a privilege failure.
int RunSession(int in_fd, int out_fd, const SessionEnvironment& env);

// "<n> message[s] (<b> byte[s]) loaded", singular for exactly 1 (popa3d).
std::string LoadedLogLine(size_t messages, uint64_t bytes);
// "<d> (<db>) deleted, <l> (<lb>) left" (bare numbers, as popa3d).
std::string UpdateLogLine(const core::Session::UpdateSummary& summary);

}  // namespace popgate::net

#endif  // POPGATE_NET_SESSION_PROCESS_H_
