// Prefix aggregation for the per-source tables (source_prefix.h).
#include "limits/source_prefix.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace popgate::limits {
namespace {

// SourceKey::FromIpv4 stores IPv4 as ::ffff:a.b.c.d (RFC 4291 2.5.5.2): ten
// zero bytes, then 0xffff, then the address.
bool IsV4Mapped(const SourceKey& key) {
  for (size_t i = 0; i < 10; ++i) {
    if (key.bytes[i] != 0) return false;
  }
  return key.bytes[10] == 0xff && key.bytes[11] == 0xff;
}

}  // namespace

SourceKey Aggregate(const SourceKey& key, const SourcePrefix& prefix) {
  // Out-of-range prefixes are clamped rather than rejected: config
  // validation owns the error message, and a clamp can't widen a budget
  // beyond one address.
  const bool mapped = IsV4Mapped(key);
  // For a mapped key the first 96 bits are the fixed ::ffff: prefix and
  // must survive, or every IPv4 source would collide with IPv6 ones.
  const int keep = mapped ? 96 + std::clamp(prefix.ipv4_bits, 0, 32)
                          : std::clamp(prefix.ipv6_bits, 0, 128);
  SourceKey out = key;
  for (int i = 0; i < 16; ++i) {
    const int byte_start = i * 8;
    if (keep >= byte_start + 8) continue;
    if (keep <= byte_start) {
      out.bytes[i] = 0;
    } else {
      const int kept_bits = keep - byte_start;  // 1..7
      out.bytes[i] &= static_cast<uint8_t>(0xff << (8 - kept_bits));
    }
  }
  return out;
}

}  // namespace popgate::limits
