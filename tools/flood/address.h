// Addresses for popgate-flood: the target, the loopback-only safety check,
// and the list of local source addresses to bind before connect.
//
// No I/O except getaddrinfo() in ResolveTarget. Threading: pure functions.
#ifndef POPGATE_TOOLS_FLOOD_ADDRESS_H_
#define POPGATE_TOOLS_FLOOD_ADDRESS_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::flood {

// An IPv4 or IPv6 socket address, copyable, with its length.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  // "127.0.0.1:110", "[::1]:110"; port omitted when 0.
  std::string ToString() const;
};

// Parses a numeric IPv4 or IPv6 address (no brackets, no port) with `port`.
// InvalidArgument if it is not one.
absl::StatusOr<SockAddr> ParseIp(absl::string_view text, uint16_t port);

// Largest source list we expand: a whole /16 of loopback sources, far more
// than any per-source table test needs, and it keeps a typo from allocating
// gigabytes.
inline constexpr size_t kMaxSourceAddresses = 65536;

// Parses --source: a comma list of addresses and inclusive ranges "A-B"
// ("127.0.0.2-127.0.0.51", "::1", "fd00::1-fd00::20"). All entries must share
// one family. InvalidArgument on syntax errors, a reversed range, mixed
// families, or more than kMaxSourceAddresses addresses.
absl::StatusOr<std::vector<SockAddr>> ParseSourceList(absl::string_view text);

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool IsLoopback(const SockAddr& addr);

// A host and port from --target: "HOST", "HOST:PORT", "[V6]:PORT" or a bare
// IPv6 address. InvalidArgument on a bad port or empty host.
struct HostPort {
  std::string host;
  uint16_t port = 110;
};
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text,
                                       uint16_t default_port);

// Resolves `target` (numeric or by name, first address wins) and enforces the
// safety rule: a non-loopback address is refused unless its host string or
// its numeric address appears in `allowed`. PermissionDenied with a message
// that names --allow-target; NotFound if the name does not resolve.
absl::StatusOr<SockAddr> ResolveTarget(const HostPort& target,
                                       const std::vector<std::string>& allowed);

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_ADDRESS_H_
