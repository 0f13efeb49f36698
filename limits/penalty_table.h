// Auth-failure penalties per source prefix: each failed PASS makes the next
// verdict for that source wait longer (growing delay), and past a threshold
// the source is locked out for a while (its PASS is refused without
// spending a hash). A success clears the source. Memory is bounded:
// `max_sources` entries, the least recently failed evicted first.
//
// Time is injected; a `now` earlier than one already seen is clamped.
// Callers: net/'s auth process (one thread). Not thread-safe. Leaf.
#ifndef POPGATE_LIMITS_PENALTY_TABLE_H_
#define POPGATE_LIMITS_PENALTY_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "limits/flood_table.h"
#include "limits/source_prefix.h"

namespace popgate::limits {

struct PenaltyOptions {
  // Failures that cost nothing (typos): the first `free_failures` get no
  // delay.
  int free_failures = 2;
  // Delay after the first penalised failure, doubled per further failure,
  // capped at max_delay.
  absl::Duration base_delay = absl::Milliseconds(500);
  absl::Duration max_delay = absl::Seconds(8);
  // Failures (within forget_after of each other) that lock the source out.
  // 0 = never lock out.
  int lockout_failures = 30;
  absl::Duration lockout = absl::Minutes(5);
  // A source with no failure for this long starts from zero again.
  absl::Duration forget_after = absl::Minutes(15);
  size_t max_sources = 65536;
  SourcePrefix prefix;
};

class PenaltyTable {
 public:
  explicit PenaltyTable(const PenaltyOptions& options);
  ~PenaltyTable();
  PenaltyTable(const PenaltyTable&) = delete;
  PenaltyTable& operator=(const PenaltyTable&) = delete;

  // Before verifying a password from `source` (raw key; aggregated here):
  // true while the source is locked out (refuse without hashing).
  bool LockedOut(const SourceKey& source, absl::Time now);
  // A verification from `source` failed: returns how long to hold the
  // refusal before answering (zero for the free failures).
  absl::Duration RecordFailure(const SourceKey& source, absl::Time now);
  // A verification succeeded: forget the source's failures.
  void RecordSuccess(const SourceKey& source, absl::Time now);

  size_t size() const;
  uint64_t lockouts() const { return lockouts_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t lockouts_ = 0;
};

}  // namespace popgate::limits

#endif  // POPGATE_LIMITS_PENALTY_TABLE_H_
