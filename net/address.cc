#include "net/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace popgate::net {
namespace {

const uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool IsV4Mapped(const sockaddr_in6& sin6) {
  return std::memcmp(&sin6.sin6_addr, kV4MappedPrefix, 12) == 0;
}

}  // namespace

absl::StatusOr<SocketAddress> MakeSocketAddress(absl::string_view host,
                                                uint16_t port) {
  // inet_pton stops at a NUL, so "1.2.3.4\0junk" would pass unnoticed.
  if (host.size() >= INET6_ADDRSTRLEN ||
      host.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad host \"", host, "\""));
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = '\0';

  SocketAddress out;
  sockaddr_in sin{};
  sockaddr_in6 sin6{};
  if (inet_pton(AF_INET, buf, &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&out.storage, &sin, sizeof(sin));
    out.length = sizeof(sin);
    return out;
  }
  if (inet_pton(AF_INET6, buf, &sin6.sin6_addr) == 1) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&out.storage, &sin6, sizeof(sin6));
    out.length = sizeof(sin6);
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a numeric IPv4 or IPv6 address: \"", host, "\""));
}

std::string FormatHost(const SocketAddress& address) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (address.family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&address.storage);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    return buf;
  }
  if (address.family() == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    if (IsV4Mapped(*sin6)) {
      inet_ntop(AF_INET,
                reinterpret_cast<const uint8_t*>(&sin6->sin6_addr) + 12, buf,
                sizeof(buf));
    } else {
      inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    }
    return buf;
  }
  if (address.family() == AF_UNIX) return "local";
  return "unknown";
}

uint16_t Port(const SocketAddress& address) {
  if (address.family() == AF_INET) {
    return ntohs(
        reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_port);
  }
  if (address.family() == AF_INET6) {
    return ntohs(
        reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_port);
  }
  return 0;
}

std::string FormatHostPort(const SocketAddress& address) {
  if (address.family() == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    if (!IsV4Mapped(*sin6)) {
      return absl::StrCat("[", FormatHost(address), "]:", Port(address));
    }
  }
  return absl::StrCat(FormatHost(address), ":", Port(address));
}

limits::SourceKey SourceKeyOf(const SocketAddress& address) {
  if (address.family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&address.storage);
    return limits::SourceKey::FromIpv4(
        reinterpret_cast<const uint8_t*>(&sin->sin_addr));
  }
  if (address.family() == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    return limits::SourceKey::FromIpv6(
        reinterpret_cast<const uint8_t*>(&sin6->sin6_addr));
  }
  return limits::SourceKey{};
}

}  // namespace popgate::net
