// Process-level setup shared by both modes: popa3d's startup hygiene, the
// detach for -D, and the monotonic clock the flood table runs on.
#ifndef POPGATE_NET_DAEMON_H_
#define POPGATE_NET_DAEMON_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace popgate::net {

// popa3d's do_pop_startup(): umask(077) (mailbox rewrites and state files
// are private), SIGPIPE ignored (a vanished client is an EPIPE to handle,
// not a death mid-update).
void ProcessStartup();

// popa3d -D without --foreground: chdir("/"), fork (the parent exits 0),
// setsid() in the child so it has no controlling terminal. Like popa3d, fds
// 0/1/2 stay as they are. Must run before any thread or io_uring exists.
absl::Status Daemonize();

// CLOCK_MONOTONIC as an absl::Time (the epoch is meaningless; only
// differences are). Wall-clock steps must not free flood slots early.
absl::Time MonotonicNow();

}  // namespace popgate::net

#endif  // POPGATE_NET_DAEMON_H_
