// The wiring file: the one place that turns a core::Config into concrete
// objects (log sink, password backend, mailbox opener, session and flood
// options). It is also the only net/ file that includes concrete mailbox
// types (STYLE.md §1: tests don't share it).
#ifndef POPGATE_NET_WIRING_H_
#define POPGATE_NET_WIRING_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "core/auth/authenticator.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/session.h"
#include "limits/flood_table.h"
#include "net/session_process.h"

namespace popgate::net {

// Everything main() needs, owned in one place for the process lifetime.
struct Wiring {
  std::unique_ptr<core::LogSink> log_sink;  // installed; outlives all logging
  std::unique_ptr<core::auth::Authenticator> authenticator;
  SessionEnvironment session_env;  // points at `authenticator`
  limits::FloodOptions flood;
  // For the master's SIGHUP: re-reads a passwd-file (logging the outcome);
  // empty for backends with nothing to reload (PAM, shadow read per call).
  std::function<void()> reload;
};

// syslog (ident, LOG_PID, LOG_DAEMON) or stderr (--log=stderr), installed
// with core::SetLogSink. Construct once per process.
std::unique_ptr<core::LogSink> MakeLogSink(const core::Config& config);

core::SessionOptions SessionOptionsFromConfig(const core::Config& config);
limits::FloodOptions FloodOptionsFromConfig(const core::Config& config);

// Installs the log sink and builds the backend and the session environment.
// Errors: the backend factory's (Unavailable: passwd file unreadable;
// InvalidArgument), or Unimplemented for a mail format we can't open.
absl::StatusOr<std::unique_ptr<Wiring>> BuildWiring(const core::Config& config);

}  // namespace popgate::net

#endif  // POPGATE_NET_WIRING_H_
