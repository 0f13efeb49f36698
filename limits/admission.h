// The master's admission decision for one new connection: popa3d's slot
// policy (flood_table.h) plus a per-source connect-rate token bucket, source
// aggregation by prefix, bounded memory and refusal counters by cause.
//
// Policy, in the order checked (the first that refuses names the cause):
//   1. per-source token bucket (rate_per_second, burst); off when rate is 0;
//      a source without a bucket while the table is full of busy ones is
//      refused as kTableFull;
//   2. popa3d's slots: per-source cap, then global cap (FloodTable's order).
// A refused connection costs O(1) and no allocation once the tables are
// warm: the bucket table is a fixed-capacity hash of `max_tracked_sources`
// entries; when it is full the oldest idle bucket (one that is full again,
// i.e. carries no information) is evicted, never a source with a live
// session (those are FloodTable's, bounded by max_sessions).
//
// Time is injected; a `now` earlier than one already seen is clamped.
// Callers: net/ master (one thread). Not thread-safe. Leaf: std + abseil.
#ifndef POPGATE_LIMITS_ADMISSION_H_
#define POPGATE_LIMITS_ADMISSION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "limits/flood_table.h"
#include "limits/source_prefix.h"

namespace popgate::limits {

struct AdmissionOptions {
  // popa3d's slot policy (50 per source, 500 global, 10 s minimum hold).
  FloodOptions flood;
  // Admitted connections per second per source prefix, refilled
  // continuously; 0 = no rate limit (popa3d). `burst` is the bucket size
  // (values below 1 act as 1). Only an admitted connection takes a token,
  // so a refusal writes nothing and a source hammering at its slot cap is
  // refused for that cause, not for rate.
  double rate_per_second = 0;
  double burst = 20;
  // Bound on the bucket table; a source beyond it when every entry is busy
  // (no idle one to evict) is refused with kTableFull.
  size_t max_tracked_sources = 65536;
  // How addresses are aggregated before any table sees them.
  SourcePrefix prefix;
};

enum class AdmissionRefusal : uint8_t {
  kNone = 0,
  kSourceRate,      // token bucket empty
  kSourceSessions,  // per-source slot cap (popa3d "per source limit")
  kGlobalSessions,  // global slot cap (popa3d "sessions limit")
  kTableFull,       // bucket table full of busy sources
  kCount,
};

// "source rate", "per source limit", ...: for logs and counters.
absl::string_view AdmissionRefusalName(AdmissionRefusal cause);

struct AdmissionResult {
  bool admitted = false;
  SlotId slot;  // valid iff admitted
  AdmissionRefusal cause = AdmissionRefusal::kNone;
  // Log this refusal now? At most one line per cause per log_interval
  // (FloodTable's popa3d pacing for its causes), so floods can't fill syslog.
  bool should_log = false;
};

class Admission {
 public:
  explicit Admission(const AdmissionOptions& options);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // `source` is the raw key (net/address.h SourceKeyOf: /128 or /32); it is
  // aggregated with options.prefix here.
  AdmissionResult Admit(const SourceKey& source, absl::Time now);
  // The session holding `slot` ended (FloodTable::Release semantics).
  bool Release(SlotId slot, absl::Time now);

  // Refusals since construction, by cause.
  uint64_t refusals(AdmissionRefusal cause) const;
  uint64_t admitted() const { return admitted_; }
  size_t held() const { return flood_.held(); }
  size_t tracked_sources() const;
  const AdmissionOptions& options() const { return options_; }

 private:
  // Counts `cause` and decides whether to log it (one line per cause per
  // kMinRefusalLogInterval).
  AdmissionResult Refuse(AdmissionRefusal cause, absl::Time now);

  AdmissionOptions options_;
  FloodTable flood_;
  uint64_t admitted_ = 0;
  absl::Time latest_ = absl::InfinitePast();  // clamp for `now`
  std::array<uint64_t, static_cast<size_t>(AdmissionRefusal::kCount)>
      refusals_{};
  // Last logged refusal per cause (only kSourceRate and kTableFull use it;
  // FloodTable paces its own causes).
  std::array<absl::Time, static_cast<size_t>(AdmissionRefusal::kCount)>
      last_log_;
  // Implementation detail of the helper that builds it (bucket table, LRU).
  class Buckets;
  struct BucketsDeleter {
    void operator()(Buckets* b) const;
  };
  std::unique_ptr<Buckets, BucketsDeleter> buckets_;
};

}  // namespace popgate::limits

#endif  // POPGATE_LIMITS_ADMISSION_H_
