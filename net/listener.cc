#include "net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"

namespace popgate::net {
namespace {

absl::Status Errno(int err, absl::string_view call, const SocketAddress& a) {
  return absl::ErrnoToStatus(err, absl::StrCat(call, " ", FormatHostPort(a)));
}

}  // namespace

absl::StatusOr<UniqueFd> OpenListener(const SocketAddress& address) {
  UniqueFd fd(::socket(address.family(),
                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Errno(errno, "socket", address);
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) !=
      0) {
    return Errno(errno, "setsockopt(SO_REUSEADDR)", address);
  }
  if (address.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) !=
          0) {
    return Errno(errno, "setsockopt(IPV6_V6ONLY)", address);
  }
  if (::bind(fd.get(), address.get(), address.length) != 0) {
    return Errno(errno, "bind", address);
  }
  if (::listen(fd.get(), kListenBacklog) != 0) {
    return Errno(errno, "listen", address);
  }
  return fd;
}

absl::StatusOr<SocketAddress> LocalAddress(int fd) {
  SocketAddress out;
  out.length = sizeof(out.storage);
  if (::getsockname(fd, out.mutable_get(), &out.length) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  return out;
}

absl::StatusOr<SocketAddress> PeerAddress(int fd) {
  SocketAddress out;
  out.length = sizeof(out.storage);
  if (::getpeername(fd, out.mutable_get(), &out.length) != 0) {
    return absl::ErrnoToStatus(errno, "getpeername");
  }
  return out;
}

}  // namespace popgate::net
