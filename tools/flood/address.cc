#include "tools/flood/address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace popgate::flood {
namespace {

// 128-bit big-endian address arithmetic for ranges; IPv4 uses the last 4.
using Bytes16 = std::array<uint8_t, 16>;

Bytes16 AddressBytes(const SockAddr& a) {
  Bytes16 b{};
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
    std::memcpy(&b[12], &in->sin_addr, 4);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    std::memcpy(b.data(), &in6->sin6_addr, 16);
  }
  return b;
}

SockAddr FromBytes(int family, const Bytes16& b) {
  SockAddr a;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, &b[12], 4);
    a.len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, b.data(), 16);
    a.len = sizeof(sockaddr_in6);
  }
  return a;
}

void Increment(Bytes16& b) {
  for (int i = 15; i >= 0; --i) {
    if (++b[i] != 0) return;
  }
}

}  // namespace

std::string SockAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    port = ntohs(in->sin_port);
    return port == 0 ? std::string(buf) : absl::StrCat(buf, ":", port);
  }
  if (family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    port = ntohs(in6->sin6_port);
    return port == 0 ? std::string(buf) : absl::StrCat("[", buf, "]:", port);
  }
  return "?";
}

absl::StatusOr<SockAddr> ParseIp(absl::string_view text, uint16_t port) {
  const std::string s(text);
  SockAddr a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
  if (inet_pton(AF_INET, s.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET6, s.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a numeric IPv4/IPv6 address: '", text, "'"));
}

absl::StatusOr<std::vector<SockAddr>> ParseSourceList(absl::string_view text) {
  std::vector<SockAddr> out;
  int family = AF_UNSPEC;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--source: empty entry in '", text, "'"));
    }
    std::pair<absl::string_view, absl::string_view> ends =
        absl::StrSplit(item, absl::MaxSplits('-', 1));
    absl::StatusOr<SockAddr> first = ParseIp(ends.first, 0);
    if (!first.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--source: ", first.status().message()));
    }
    SockAddr last = *first;
    const bool is_range = item.find('-') != absl::string_view::npos;
    if (is_range) {
      absl::StatusOr<SockAddr> l = ParseIp(ends.second, 0);
      if (!l.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--source: ", l.status().message()));
      }
      last = *l;
      if (last.family() != first->family()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--source: range '", item, "' mixes families"));
      }
    }
    if (family != AF_UNSPEC && family != first->family()) {
      return absl::InvalidArgumentError(
          "--source: all addresses must be IPv4 or all IPv6");
    }
    family = first->family();
    Bytes16 cur = AddressBytes(*first);
    const Bytes16 end = AddressBytes(last);
    if (cur > end) {
      return absl::InvalidArgumentError(
          absl::StrCat("--source: range '", item, "' is reversed"));
    }
    // Bounded by kMaxSourceAddresses iterations.
    while (true) {
      if (out.size() >= kMaxSourceAddresses) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--source: more than ", kMaxSourceAddresses, " addresses"));
      }
      out.push_back(FromBytes(family, cur));
      if (cur == end) break;
      Increment(cur);
    }
  }
  return out;
}

bool IsLoopback(const SockAddr& addr) {
  const Bytes16 b = AddressBytes(addr);
  if (addr.family() == AF_INET) return b[12] == 127;
  if (addr.family() != AF_INET6) return false;
  static constexpr Bytes16 kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 1};
  if (b == kV6Loopback) return true;
  // IPv4-mapped ::ffff:127.x.y.z
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff && b[12] == 127;
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text,
                                       uint16_t default_port) {
  HostPort hp;
  hp.port = default_port;
  absl::string_view port_text;
  if (absl::ConsumePrefix(&text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("--target: missing ']'");
    }
    hp.host = std::string(text.substr(0, close));
    absl::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) {
        return absl::InvalidArgumentError("--target: junk after ']'");
      }
      port_text = rest;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const size_t colon = text.find(':');
    hp.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  } else {
    hp.host = std::string(text);  // Name, IPv4, or bare IPv6 without port.
  }
  if (hp.host.empty()) return absl::InvalidArgumentError("--target: no host");
  if (!port_text.empty()) {
    uint32_t port;
    if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--target: bad port '", port_text, "'"));
    }
    hp.port = static_cast<uint16_t>(port);
  }
  return hp;
}

absl::StatusOr<SockAddr> ResolveTarget(
    const HostPort& target, const std::vector<std::string>& allowed) {
  absl::StatusOr<SockAddr> addr = ParseIp(target.host, target.port);
  if (!addr.ok()) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(target.host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "--target: cannot resolve '", target.host, "': ", gai_strerror(rc)));
    }
    SockAddr a;
    std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
    a.len = res->ai_addrlen;
    freeaddrinfo(res);
    if (a.family() == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(target.port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port =
          htons(target.port);
    }
    addr = a;
  }
  if (IsLoopback(*addr)) return addr;
  SockAddr no_port = *addr;
  if (no_port.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&no_port.storage)->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(&no_port.storage)->sin6_port = 0;
  }
  const std::string numeric = no_port.ToString();
  for (const std::string& host : allowed) {
    if (host == target.host || host == numeric) return addr;
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "refusing target ", target.host, " (", numeric,
      "): popgate-flood only floods loopback (127.0.0.0/8, ::1) by default, "
      "because flooding a host you do not own is an attack. If you own it, "
      "pass --allow-target=",
      target.host));
}

}  // namespace popgate::flood
