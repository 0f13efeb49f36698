// Listening sockets for -D. Called once at startup, as root, before
// daemonizing, so bind errors reach the operator's terminal and exit code.
#ifndef POPGATE_NET_LISTENER_H_
#define POPGATE_NET_LISTENER_H_

#include "absl/status/statusor.h"
#include "net/address.h"
#include "net/unique_fd.h"

namespace popgate::net {

// popa3d listens with a backlog of 5, so a burst of connects overflows the
// queue and clients see SYN retries (1 s, 3 s...) before the table even
// looks at them. 1024 lets bursts queue; the kernel caps it at somaxconn.
inline constexpr int kListenBacklog = 1024;

// socket + SO_REUSEADDR + (IPv6: IPV6_V6ONLY, so "::" and "0.0.0.0" can
// both be listed) + bind + listen, non-blocking and close-on-exec (the
// io_uring accept never blocks, and no child inherits the listener across
// exec). Errors: the errno as a Status naming the call and the address.
absl::StatusOr<UniqueFd> OpenListener(const SocketAddress& address);

// getsockname(): the address actually bound (the kernel's port for port 0).
absl::StatusOr<SocketAddress> LocalAddress(int fd);
// getpeername(): the connected peer.
absl::StatusOr<SocketAddress> PeerAddress(int fd);

}  // namespace popgate::net

#endif  // POPGATE_NET_LISTENER_H_
