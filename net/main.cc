// popgate: a POP3 server, drop-in for `popa3d` (inetd mode) and `popa3d -D`.
//
// Startup order, and why:
//  1. flags -> Config; bad config: message on stderr, exit 1 (before any
//     side effect, so a typo never half-starts a daemon).
//  2. -V: print the version, exit 0.
//  3. umask 077, SIGPIPE ignored; log sink; password backend; as root, the
//     pre-auth jail (<state_dir>/empty) is checked once.
//  4. inetd mode: one session on fds 0/1, then exit.
//  5. -D: bind every listener and report "listening on ADDR:PORT" on stderr
//     (port 0 shows the kernel's choice; tests parse this line), check that
//     io_uring works, then detach (unless --foreground) so errors up to here
//     still reach the operator's terminal and exit status. Then the master
//     loop (accept_loop.h) runs until SIGTERM.
#include <liburing.h>
#include <stdio.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/logging.h"
#include "net/accept_loop.h"
#include "net/address.h"
#include "net/daemon.h"
#include "net/listener.h"
#include "net/privileges.h"
#include "net/session_process.h"
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
  const SessionEnvironment* env = &wiring.session_env;
  absl::StatusOr<std::unique_ptr<Master>> master = Master::Create(
      std::move(listeners), wiring.flood,
      [env](int fd, const SocketAddress&) { return RunSession(fd, fd, *env); },
      wiring.reload);
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
  absl::StatusOr<std::unique_ptr<Wiring>> wiring = BuildWiring(*config);
  if (!wiring.ok()) return Fail(wiring.status().ToString());
  if (::geteuid() == 0) {
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
