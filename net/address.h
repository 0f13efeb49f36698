// Socket address helpers: parse --listen values, format peers for logs, and
// derive the flood-table key. Pure functions over sockaddr; no I/O.
#ifndef POPGATE_NET_ADDRESS_H_
#define POPGATE_NET_ADDRESS_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "limits/flood_table.h"

namespace popgate::net {

// A socket address of either family, copyable.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  sockaddr* mutable_get() { return reinterpret_cast<sockaddr*>(&storage); }
};

// A numeric IPv4 or IPv6 host ("0.0.0.0", "::1", no brackets, no DNS: the
// config parser already checked the syntax) plus a port, as a sockaddr.
// InvalidArgument if `host` is neither.
absl::StatusOr<SocketAddress> MakeSocketAddress(absl::string_view host,
                                                uint16_t port);

// "127.0.0.1" / "2001:db8::1"; a v4-mapped IPv6 peer is shown as IPv4, as
// popa3d's logs (and fail2ban filters) expect dotted quads.
std::string FormatHost(const SocketAddress& address);
// "127.0.0.1:110" / "[::1]:110".
std::string FormatHostPort(const SocketAddress& address);
uint16_t Port(const SocketAddress& address);

// The source key of a peer (v4-mapped -> IPv4), not yet aggregated: the
// limits tables apply --source_prefix_v4/v6. Unknown families (AF_UNIX in
// tests) share one all-zero key.
limits::SourceKey SourceKeyOf(const SocketAddress& address);

}  // namespace popgate::net

#endif  // POPGATE_NET_ADDRESS_H_
