// popgate: a POP3 server, drop-in for `popa3d` (inetd mode) and `popa3d -D`.
//
// Startup order, and why:
//  1. flags -> Config; bad config: message on stderr, exit 1 (before any
//     side effect, so a typo never half-starts a daemon).
//  2. -V: print the version, exit 0.
//  3. umask 077, SIGPIPE ignored; --mode=pool raises RLIMIT_NOFILE; log
//     sink; password backend (and the pool account); as root in fork mode,
//     the pre-auth jail (<state_dir>/empty) is checked once.
//  4. inetd mode: one session on fds 0/1, then exit.
//  5. -D: bind every listener and report "listening on ADDR:PORT" on stderr
//     (port 0 shows the kernel's choice; tests parse this line), check that
//     io_uring works, then detach (unless --foreground) so errors up to here
//     still reach the operator's terminal and exit status. Then the master
//     loop (accept_loop.h) runs until SIGTERM; in pool mode it first forks
//     the auth process and the workers (pool_supervisor.h), after the
//     detach so they belong to the daemon's session.
#include <liburing.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/logging.h"
#include "net/accept_loop.h"
#include "net/address.h"
#include "net/auth_process.h"
#include "net/daemon.h"
#include "net/listener.h"
#include "net/pool_supervisor.h"
#include "net/pool_worker.h"
#include "net/privileges.h"
#include "net/session_process.h"
#include "net/state_migration.h"
#include "net/wiring.h"

namespace popgate::net {
namespace {

int Fail(absl::string_view message) {
  fprintf(stderr, "popgate: %.*s\n", static_cast<int>(message.size()),
          message.data());
  return 1;
}

// A throwaway ring: io_uring can be compiled out or disabled by sysctl
// (kernel.io_uring_disabled); find out while we can still tell the operator.
absl::Status ProbeIoUring() {
  io_uring ring;
  const int ret = io_uring_queue_init(2, &ring, 0);
  if (ret < 0) return absl::ErrnoToStatus(-ret, "io_uring_queue_init");
  io_uring_queue_exit(&ring);
  return absl::OkStatus();
}

// A pool worker holds thousands of sockets; the usual soft limit (1024) would
// cap it long before memory does. The hard limit is the administrator's
// ceiling; 2^20 bounds what MaxSessionsPerWorker derives from it.
void RaiseFdLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t want = std::min<rlim_t>(limit.rlim_max, rlim_t{1} << 20);
  if (limit.rlim_cur >= want) return;
  limit.rlim_cur = want;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

// What each pool child runs, built from the wiring. Runs in the forked
// child (see pool_supervisor.h); `wiring` outlives the master.
PoolOptions MakePoolOptions(const core::Config& config, Wiring& wiring) {
  PoolOptions pool;
  pool.workers = wiring.workers;
  pool.max_sessions_per_worker = wiring.pool_env.max_sessions;
  pool.drain_timeout = config.drain_timeout;
  Wiring* w = &wiring;
  pool.run_auth = [w](UniqueFd control) {
    // Keeps the master's privileges: PAM and shadow need root.
    return RunAuthProcess(w->auth_process, *w->authenticator, w->source_changed,
                          w->reload, std::move(control));
  };
  const std::string state_dir = config.state_dir;
  pool.run_worker = [w, state_dir](UniqueFd master_channel,
                                   UniqueFd auth_channel) {
    const PoolAccount& account = w->pool_account;
    // As root, before the drop: the pool account's state folder must exist
    // and be its own (PrepareStateDir refuses a planted one).
    absl::StatusOr<std::string> state =
        PrepareStateDir(state_dir, account.uid, account.gid);
    if (!state.ok()) {
      core::Logf(core::Severity::kCrit, "worker: state dir: %s",
                 state.status().ToString());
      return 1;
    }
    // Workers parse client bytes; passwords are checked in the auth
    // process, so the hashes inherited from the master go before the drop.
    w->authenticator->WipeSecrets();
    if (absl::Status st = DropPrivileges(account.uid, account.gid); !st.ok()) {
      core::Logf(core::Severity::kCrit, "worker: dropping to %s: %s",
                 account.name, st.ToString());
      return 1;
    }
    PoolWorkerEnvironment env = w->pool_env;
    env.state_dir = *state;
    return RunPoolWorker(env, std::move(master_channel),
                         std::move(auth_channel));
  };
  return pool;
}

int RunDaemon(const core::Config& config, Wiring& wiring) {
  std::vector<UniqueFd> listeners;
  for (const core::ListenAddress& listen : config.listen) {
    absl::StatusOr<SocketAddress> address =
        MakeSocketAddress(listen.host, listen.port);
    if (!address.ok()) return Fail(address.status().message());
    absl::StatusOr<UniqueFd> fd = OpenListener(*address);
    if (!fd.ok()) return Fail(fd.status().ToString());
    absl::StatusOr<SocketAddress> bound = LocalAddress(fd->get());
    if (!bound.ok()) return Fail(bound.status().ToString());
    fprintf(stderr, "listening on %s\n", FormatHostPort(*bound).c_str());
    listeners.push_back(std::move(*fd));
  }
  fflush(stderr);
  if (absl::Status st = ProbeIoUring(); !st.ok()) return Fail(st.ToString());
  if (!config.foreground) {
    if (absl::Status st = Daemonize(); !st.ok()) return Fail(st.ToString());
  }
  // Before any child exists: a crash in the other mode must not leave a
  // redo record where this mode never looks.
  std::optional<PoolAccountIds> pool_ids;
  if (config.mode == core::DaemonMode::kPool) {
    pool_ids = PoolAccountIds{wiring.pool_account.uid, wiring.pool_account.gid};
  }
  AdoptRedoRecords(config.state_dir, pool_ids);
  MasterOptions options;
  options.admission = wiring.admission;
  options.refuse_with_error = config.refuse_with_error;
  options.drain_timeout = config.drain_timeout;
  absl::StatusOr<std::unique_ptr<Master>> master;
  if (config.mode == core::DaemonMode::kPool) {
    master = Master::CreatePool(std::move(listeners), options,
                                MakePoolOptions(config, wiring));
  } else {
    const SessionEnvironment* env = &wiring.session_env;
    master = Master::Create(
        std::move(listeners), options,
        [env](int fd, const SocketAddress&) {
          return RunSession(fd, fd, *env);
        },
        wiring.reload);
  }
  if (!master.ok()) {
    core::Logf(core::Severity::kCrit, "%s", master.status().ToString());
    return Fail(master.status().ToString());
  }
  if (absl::Status st = (*master)->Run(); !st.ok()) {
    core::Logf(core::Severity::kCrit, "%s", st.ToString());
    return 1;
  }
  return 0;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "POP3 server. Default: one session on stdin/stdout (inetd mode); "
      "-D: standalone daemon.");
  // --version as -V; abseil's default would describe abseil's own build.
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return core::VersionString() + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    return Fail(absl::StrCat("unexpected argument \"", positional[1],
                             "\" (see --help)"));
  }
  absl::StatusOr<core::Config> config = core::ConfigFromFlags();
  if (!config.ok()) return Fail(config.status().message());
  if (config->print_version) {
    printf("%s\n", core::VersionString().c_str());
    return 0;
  }
  ProcessStartup();
  const bool pool = config->daemon && config->mode == core::DaemonMode::kPool;
  if (pool) RaiseFdLimit();
  absl::StatusOr<std::unique_ptr<Wiring>> wiring = BuildWiring(*config);
  if (!wiring.ok()) return Fail(wiring.status().ToString());
  // Pool workers never run the jailed pre-auth child: they are unprivileged
  // already.
  if (::geteuid() == 0 && !pool) {
    // Sessions parse AUTHORIZATION in a jail under --state_dir: check it
    // now rather than fail every session later.
    if (absl::Status st = CheckPreauthJail(config->state_dir,
                                           config->preauth_user); !st.ok()) {
      return Fail(absl::StrCat("pre-auth jail: ", st.ToString()));
    }
  }
  if (!config->daemon) {
    // inetd mode: inetd hands us the connection as fds 0 and 1.
    return RunSession(0, 1, (*wiring)->session_env);
  }
  return RunDaemon(*config, **wiring);
}

}  // namespace
}  // namespace popgate::net

int main(int argc, char** argv) { return popgate::net::Main(argc, argv); }
