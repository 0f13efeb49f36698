// Source aggregation: which prefix of a client address the per-source
// tables count. An attacker with a /64 of IPv6 (every customer gets one) or
// a /24 of IPv4 must not get one budget per address.
#ifndef POPGATE_LIMITS_SOURCE_PREFIX_H_
#define POPGATE_LIMITS_SOURCE_PREFIX_H_

#include "limits/flood_table.h"

namespace popgate::limits {

struct SourcePrefix {
  int ipv4_bits = 32;  // 32 (popa3d) or 24; 0..32
  int ipv6_bits = 64;  // 0..128
};

// `key` as SourceKey::FromIpv4/FromIpv6 build it (IPv4 v4-mapped), with the
// host bits beyond the family's prefix cleared.
SourceKey Aggregate(const SourceKey& key, const SourcePrefix& prefix);

}  // namespace popgate::limits

#endif  // POPGATE_LIMITS_SOURCE_PREFIX_H_
