#include "net/sd_notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>

#include "net/unique_fd.h"

namespace popgate::net {

absl::Status NotifyServiceManager(absl::string_view state) {
  const char* path = ::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t length = strlen(path);
  // Only absolute paths and abstract names: a relative path would depend on
  // our cwd, which Daemonize() changed to "/".
  if ((path[0] != '/' && path[0] != '@') || length >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("NOTIFY_SOCKET: unusable address");
  }
  memcpy(addr.sun_path, path, length);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const socklen_t addr_length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return absl::ErrnoToStatus(errno, "socket");
  // MSG_DONTWAIT: a stuck service manager must never block the master.
  if (::sendto(fd.get(), state.data(), state.size(),
               MSG_DONTWAIT | MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&addr), addr_length) < 0) {
    return absl::ErrnoToStatus(errno, "sendto NOTIFY_SOCKET");
  }
  return absl::OkStatus();
}

}  // namespace popgate::net
