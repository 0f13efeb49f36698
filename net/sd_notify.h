// systemd's readiness protocol (sd_notify(3)) without libsystemd: one
// datagram to the AF_UNIX socket named by $NOTIFY_SOCKET.
//
// Callers: the -D master ("READY=1" once accepting, "RELOADING=1" /
// "READY=1" around SIGHUP, "STOPPING=1" at shutdown). Best effort: a unit
// without Type=notify has no NOTIFY_SOCKET and every call is a no-op. With
// Type=notify run `-D --foreground`: after a detach the master is no longer
// the unit's main pid, and NotifyAccess=main drops its messages.
#ifndef POPGATE_NET_SD_NOTIFY_H_
#define POPGATE_NET_SD_NOTIFY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace popgate::net {

// Sends `state` ("READY=1") to $NOTIFY_SOCKET: a path, or "@name" for the
// abstract namespace. OK (and nothing sent) without NOTIFY_SOCKET;
// InvalidArgument for an unusable value; the sendto errno otherwise.
absl::Status NotifyServiceManager(absl::string_view state);

}  // namespace popgate::net

#endif  // POPGATE_NET_SD_NOTIFY_H_
