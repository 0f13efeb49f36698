// The wiring file: the one place that turns a core::Config into concrete
// objects (log sink, password backend, mailbox openers, session, admission,
// auth-process and pool-worker options, the pool account). It is also the
// only net/ file that includes concrete mailbox types (STYLE.md §1: tests
// don't share it).
#ifndef POPGATE_NET_WIRING_H_
#define POPGATE_NET_WIRING_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/auth/authenticator.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/session.h"
#include "limits/admission.h"
#include "limits/flood_table.h"
#include "net/auth_process.h"
#include "net/pool_worker.h"
#include "net/session_process.h"

namespace popgate::net {

// The account --mode=pool workers run as (--pool_user / --pool_group).
struct PoolAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  // false when not started as root (developer runs): workers keep our ids.
  bool drop = false;
};

// Everything main() needs, owned in one place for the process lifetime.
struct Wiring {
  std::unique_ptr<core::LogSink> log_sink;  // installed; outlives all logging
  std::unique_ptr<core::auth::Authenticator> authenticator;
  SessionEnvironment session_env;  // points at `authenticator`
  limits::AdmissionOptions admission;
  // For the master's SIGHUP (fork mode) and the auth process (pool mode):
  // re-reads a passwd-file (logging the outcome); empty for backends with
  // nothing to reload (PAM, shadow read per call).
  std::function<void()> reload;
  // --mode=pool only (left default otherwise).
  AuthProcessOptions auth_process;
  PoolWorkerEnvironment pool_env;
  PoolAccount pool_account;
  int workers = 1;  // --workers resolved (0 = CPUs)
  // For the auth process: whether the passwd-file changed (device, inode,
  // size or mtime differ from the last look); empty for other backends.
  std::function<bool()> source_changed;
};

// syslog (ident, LOG_PID, LOG_DAEMON) or stderr (--log=stderr), installed
// with core::SetLogSink. Construct once per process.
std::unique_ptr<core::LogSink> MakeLogSink(const core::Config& config);

core::SessionOptions SessionOptionsFromConfig(const core::Config& config);
limits::FloodOptions FloodOptionsFromConfig(const core::Config& config);
// popa3d's slots plus the rate and prefix flags. With the defaults (rate 0,
// /32 and /64) it admits exactly what FloodOptionsFromConfig's table does.
limits::AdmissionOptions AdmissionOptionsFromConfig(const core::Config& config);
// --auth_threads (0 = CPUs), --auth_queue, the cache and penalty flags.
AuthProcessOptions AuthProcessOptionsFromConfig(const core::Config& config);
// --max_sessions_per_worker, or when 0: two descriptors per session (the
// socket and the mailbox) within RLIMIT_NOFILE's soft limit, less a margin
// for the worker's own files, and never above --max_sessions.
size_t MaxSessionsPerWorker(const core::Config& config);
// "" = "popgate" if it exists, else "nobody"; the group "" = the user's
// primary group. NotFound for an unknown account or group;
// FailedPrecondition for root (uid 0) or group root (gid 0): workers parse
// client bytes and must never hold root's ids. Not root: our own ids.
absl::StatusOr<PoolAccount> ResolvePoolAccount(const core::Config& config);

// Installs the log sink and builds the backend and the session environment
// (and, with --mode=pool, the auth-process and worker options and the pool
// account). Errors: the backend factory's (Unavailable: passwd file
// unreadable; InvalidArgument), or ResolvePoolAccount's.
absl::StatusOr<std::unique_ptr<Wiring>> BuildWiring(const core::Config& config);

}  // namespace popgate::net

#endif  // POPGATE_NET_WIRING_H_
