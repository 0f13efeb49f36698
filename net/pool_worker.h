// A --mode=pool worker: one io_uring event loop multiplexing many POP3
// sessions (core::Session each), as one unprivileged account.
//
// The master forks it, drops it to the pool account (--pool_user /
// --pool_group) and calls RunPoolWorker. The worker:
//  - receives accepted sockets with a Handoff on `master_channel`
//    (SCM_RIGHTS), sends the greeting and runs the session;
//  - reads with readiness (IORING_OP_POLL_ADD) into one worker-wide buffer,
//    so an idle connection costs its Session and bookkeeping (about 1.4 KB
//    of heap, measured by pool_worker_test), not a read buffer; writes with
//    sendmsg straight from the OutputQueue views (mailbox mappings),
//    TCP_NODELAY set;
//  - sends each PASS to the auth process on `auth_channel` and resolves the
//    session when the reply arrives (the loop never blocks on auth); no
//    reply within auth_timeout, or a full channel, gives [SYS/TEMP];
//  - on kOk opens the maildrop for the authenticated account, checking the
//    mailbox belongs to that account's uid (open_maildrop's owner check),
//    on a thread of its own (MaildropOpener): a lock wait or a big first
//    index holds up that login, not the worker's other sessions;
//  - enforces deadlines: pre-auth total time, idle time, write progress;
//  - reports every session end (and auth outcomes) to the master;
//  - EOF on `master_channel` (shutdown or SIGHUP replacement): stops taking
//    sessions, finishes the running ones within drain_timeout, then exits.
//    SIGTERM (or SIGINT) ends every session at once; exit status 0.
#ifndef POPGATE_NET_POOL_WORKER_H_
#define POPGATE_NET_POOL_WORKER_H_

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/auth/authenticator.h"
#include "core/session.h"
#include "mailbox/maildrop.h"
#include "net/maildrop_opener.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct PoolWorkerEnvironment {
  core::SessionOptions session_options;
  absl::Duration idle_timeout = absl::Seconds(600);
  absl::Duration write_timeout = absl::Seconds(120);
  bool sendfile = true;  // --sendfile
  // From connect to successful PASS (slowloris bound). Default 60 s.
  absl::Duration preauth_timeout = absl::Seconds(60);
  absl::Duration auth_timeout = absl::Seconds(30);
  absl::Duration drain_timeout = absl::Seconds(600);
  // Sessions this worker holds at most; beyond, a handed-off socket gets
  // "-ERR [SYS/TEMP] ..." and is closed.
  size_t max_sessions = 20000;
  // The pool account's state folder (redo records, index caches); one
  // sub-folder per mailbox uid is made inside it.
  std::string state_dir;
  // The maildrop path for an authenticated account (ExpandMailPath).
  std::function<absl::StatusOr<std::string>(
      const core::auth::AuthenticatedUser& user)>
      mail_path;
  // Opens the maildrop at `path`; refuses (FailedPrecondition) a mailbox
  // not owned by `owner`. Unavailable = locked by another session. Runs on
  // the worker's MaildropOpener thread.
  MaildropOpener::OpenFn open_maildrop;
};

// Serves until drained (see above); returns the process exit status.
int RunPoolWorker(const PoolWorkerEnvironment& env, UniqueFd master_channel,
                  UniqueFd auth_channel);

}  // namespace popgate::net

#endif  // POPGATE_NET_POOL_WORKER_H_
