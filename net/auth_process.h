// The auth process of --mode=pool: the only place passwords are verified.
//
// The master forks it once at startup (and again if it dies), before any
// worker. It keeps the privileges the backend needs (root for PAM/shadow;
// it never touches mail), reads AuthWireRequests from every worker channel
// and answers AuthWireReplies. Verification (crypt, PAM) runs on a bounded
// thread pool (core/auth/auth_service.h), never on the loop that reads the
// channels; a full queue is answered kTempFailure at once. In front of the
// pool: the auth cache (core/auth/auth_cache.h) and the per-source penalty
// table (limits/penalty_table.h: growing delay, then lockout without a
// hash). Replies for failures are held for the penalty delay on a timer,
// never by sleeping a thread.
//
// Channels: `control` (from the master) carries new worker channel ends as
// SCM_RIGHTS with payload kAuthChannelTag; a worker channel that reaches EOF
// (worker gone) is dropped with its pending replies. EOF on `control`
// (master gone, or shutdown) ends the process once in-flight work is done.
#ifndef POPGATE_NET_AUTH_PROCESS_H_
#define POPGATE_NET_AUTH_PROCESS_H_

#include <cstddef>
#include <functional>

#include "absl/time/time.h"
#include "core/auth/authenticator.h"
#include "limits/penalty_table.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct AuthProcessOptions {
  // Verification threads (default: number of CPUs) and queued requests
  // beyond them; a request past the queue gets kTempFailure.
  int threads = 2;
  size_t max_queue = 256;
  // Auth cache: 0 entries or a zero TTL turns it off.
  size_t cache_entries = 65536;
  absl::Duration cache_ttl = absl::Minutes(5);
  limits::PenaltyOptions penalty;
};

// Runs the auth process loop until `control` reaches EOF; returns the exit
// status. `authenticator` must be safe for concurrent calls (passwd-file and
// crypt are; PAM handles are per call). `source_changed`, if set, is asked
// at most once a second whether the account source changed (a passwd-file's
// inode/size/mtime); `reload` (if set) runs then and on SIGHUP, and the
// cache is flushed either way, so a changed password never logs in from the
// cache.
int RunAuthProcess(const AuthProcessOptions& options,
                   core::auth::Authenticator& authenticator,
                   std::function<bool()> source_changed,
                   std::function<void()> reload, UniqueFd control);

}  // namespace popgate::net

#endif  // POPGATE_NET_AUTH_PROCESS_H_
