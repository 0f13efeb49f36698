// Admission (admission.h): token bucket per aggregated source in front of
// popa3d's slot table.
//
// The bucket is kept in GCRA form (ATM Forum TM 4.0, "virtual scheduling"):
// instead of a token count and a refill time, one timestamp `tat`, the time
// at which the bucket will be full again. With emission interval T = 1/rate
// and tolerance tau = burst * T, the bucket holds (tau - max(0, tat - now))/T
// tokens, so
//   take a token:  tat = max(tat, now) + T, allowed iff tat - now <= tau;
//   idle (full):   tat <= now.
// That is exact integer arithmetic on nanoseconds (no drift from repeated
// fractional refills, fractional rates for free) and 8 bytes of state.
//
// Bucket table: a fixed vector of `max_tracked_sources` entries, a hash map
// key -> entry index reserved for that many keys, and a binary min-heap of
// entry indices ordered by `tat`. The heap's top is the bucket that became
// (or will become) full first, so "is there an idle bucket to evict, and
// which is the oldest" is one comparison. A bucket's tat only ever grows,
// so every update is a sift-down (or an append while the table fills).
//
// Cost per Admit():
//   refused by rate, by table full, or by FloodTable: one hash lookup and a
//   comparison; the bucket is only looked at, never updated (a refused
//   connection takes no token), so O(1) with no allocation;
//   admitted: O(log max_tracked_sources) heap work (17 levels at 65536),
//   next to a fork or a worker hand-off that costs far more.
// No allocation after construction: the vector and the heap are sized up
// front and the map is reserved so that erase+insert churn rehashes in place
// (see kMapReserve below) instead of growing.
//
// Memory per tracked source (x86-64): Entry 32 bytes + heap index 4 bytes +
// hash map slot 20 bytes and 1 control byte at between 1.4x and 2.9x slack
// (power-of-two capacity), so about 70-100 bytes; 65536 sources ~ 5-6 MiB,
// all allocated at construction, and only when rate_per_second > 0.
#include "limits/admission.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace popgate::limits {
namespace {

// Upper bound for T and tau, so `now + tau` can't overflow int64 ns for any
// realistic clock (unix time is ~1.8e18 ns in 2026; 9.2e18 is the limit).
// 1e18 ns is ~31 years: a rate slower than one per 31 years is "never".
constexpr double kMaxIntervalNs = 1e18;

size_t Index(AdmissionRefusal cause) { return static_cast<size_t>(cause); }

}  // namespace

absl::string_view AdmissionRefusalName(AdmissionRefusal cause) {
  switch (cause) {
    case AdmissionRefusal::kNone:
      return "none";
    case AdmissionRefusal::kSourceRate:
      return "source rate";
    case AdmissionRefusal::kSourceSessions:
      return "per source limit";
    case AdmissionRefusal::kGlobalSessions:
      return "sessions limit";
    case AdmissionRefusal::kTableFull:
      return "source table full";
    case AdmissionRefusal::kCount:
      break;
  }
  return "unknown";
}

class Admission::Buckets {
 public:
  // What a new connection from a source would get; `entry` is the bucket
  // to update on admission, or -1 for a source without one (a full bucket).
  enum class Verdict { kAllowed, kEmpty, kTableFull };
  struct Probe {
    Verdict verdict;
    int64_t entry;
  };

  Buckets(double rate_per_second, double burst, size_t capacity)
      : entries_(capacity) {
    const double interval =
        std::clamp(std::round(1e9 / rate_per_second), 1.0, kMaxIntervalNs);
    interval_ns_ = static_cast<int64_t>(interval);
    // burst >= 1 (normalised by Admission), so tau >= T: a source without
    // a bucket always has a token.
    tolerance_ns_ = static_cast<int64_t>(
        std::clamp(std::round(burst * interval), interval, kMaxIntervalNs));
    heap_.reserve(capacity);
    // abseil (20220623 raw_hash_set::rehash_and_grow_if_necessary) squashes
    // tombstones in place only when size <= 25/32 of capacity and capacity
    // > 16; otherwise it doubles. Reserving 5/4 of what we hold (at least
    // 32) keeps us at <= 0.7 of capacity, so eviction churn never allocates.
    index_.reserve(std::max<size_t>(capacity + capacity / 4, 32));
  }

  size_t size() const { return heap_.size(); }

  // Looks only; Take() commits. Nothing may change the table in between.
  Probe Check(const SourceKey& key, int64_t now) const {
    auto it = index_.find(key);
    if (it != index_.end()) {
      const Entry& e = entries_[it->second];
      const int64_t tat = std::max(e.tat, now) + interval_ns_;
      return Probe{
          tat - now <= tolerance_ns_ ? Verdict::kAllowed : Verdict::kEmpty,
          static_cast<int64_t>(it->second)};
    }
    if (heap_.size() < entries_.size() || entries_[heap_[0]].tat <= now) {
      return Probe{Verdict::kAllowed, -1};
    }
    // Even the bucket that fills first is still refilling: every tracked
    // source has used its budget recently, and forgetting any of them would
    // hand it a fresh burst.
    return Probe{Verdict::kTableFull, -1};
  }

  // REQUIRES: `probe` came from Check(key, now) with kAllowed and nothing
  // changed the table since.
  void Take(const SourceKey& key, const Probe& probe, int64_t now) {
    assert(probe.verdict == Verdict::kAllowed);
    if (probe.entry >= 0) {
      Entry& e = entries_[static_cast<size_t>(probe.entry)];
      e.tat = std::max(e.tat, now) + interval_ns_;
      SiftDown(e.heap_pos);
      return;
    }
    if (heap_.size() < entries_.size()) {
      const uint32_t index = static_cast<uint32_t>(heap_.size());
      entries_[index] = Entry{key, now + interval_ns_, index};
      heap_.push_back(index);
      index_.emplace(key, index);
      // The newest tat can be smaller than older ones (they may have taken
      // several tokens), so it has to rise to its place.
      SiftUp(index);
      return;
    }
    // Evict the oldest idle bucket (Check saw heap top tat <= now). Its
    // replacement's tat, now + T, is larger, so it sinks.
    const uint32_t index = heap_[0];
    Entry& e = entries_[index];
    assert(e.tat <= now);
    index_.erase(e.key);
    e.key = key;
    e.tat = now + interval_ns_;
    index_.emplace(key, index);
    SiftDown(0);
  }

 private:
  struct Entry {
    SourceKey key;    // 16 bytes
    int64_t tat = 0;  // ns, same epoch as ToUnixNanos(now)
    uint32_t heap_pos = 0;
  };

  bool Less(uint32_t a, uint32_t b) const {
    return entries_[heap_[a]].tat < entries_[heap_[b]].tat;
  }
  void Swap(uint32_t a, uint32_t b) {
    std::swap(heap_[a], heap_[b]);
    entries_[heap_[a]].heap_pos = a;
    entries_[heap_[b]].heap_pos = b;
  }
  void SiftUp(uint32_t pos) {
    while (pos > 0) {
      const uint32_t parent = (pos - 1) / 2;
      if (!Less(pos, parent)) break;
      Swap(pos, parent);
      pos = parent;
    }
  }
  void SiftDown(uint32_t pos) {
    const uint32_t n = static_cast<uint32_t>(heap_.size());
    for (;;) {
      const uint32_t left = 2 * pos + 1;
      if (left >= n) break;
      uint32_t child = left;
      if (left + 1 < n && Less(left + 1, left)) child = left + 1;
      if (!Less(child, pos)) break;
      Swap(pos, child);
      pos = child;
    }
  }

  int64_t interval_ns_;         // T = 1 / rate
  int64_t tolerance_ns_;        // tau = burst * T
  std::vector<Entry> entries_;  // fixed size: max_tracked_sources
  std::vector<uint32_t> heap_;  // entry indices, min-heap by tat
  absl::flat_hash_map<SourceKey, uint32_t> index_;
};

void Admission::BucketsDeleter::operator()(Buckets* b) const { delete b; }

namespace {

AdmissionOptions Normalize(AdmissionOptions options) {
  // NaN and negative rates mean "off", like 0; a bucket smaller than one
  // token would refuse everyone.
  if (!(options.rate_per_second > 0)) options.rate_per_second = 0;
  if (!(options.burst >= 1)) options.burst = 1;
  options.max_tracked_sources =
      std::max<size_t>(options.max_tracked_sources, 1);
  return options;
}

}  // namespace

Admission::Admission(const AdmissionOptions& options)
    : options_(Normalize(options)), flood_(options.flood) {
  last_log_.fill(absl::InfinitePast());
  // rate 0 is popa3d exactly: no bucket table, no memory for it.
  if (options_.rate_per_second > 0) {
    buckets_.reset(new Buckets(options_.rate_per_second, options_.burst,
                               options_.max_tracked_sources));
  }
}

uint64_t Admission::refusals(AdmissionRefusal cause) const {
  const size_t i = Index(cause);
  return i < refusals_.size() ? refusals_[i] : 0;
}

size_t Admission::tracked_sources() const {
  return buckets_ ? buckets_->size() : 0;
}

AdmissionResult Admission::Refuse(AdmissionRefusal cause, absl::Time now) {
  ++refusals_[Index(cause)];
  AdmissionResult result;
  result.cause = cause;
  absl::Time& last = last_log_[Index(cause)];
  if (now - last >= kMinRefusalLogInterval) {
    last = now;
    result.should_log = true;
  }
  return result;
}

AdmissionResult Admission::Admit(const SourceKey& source, absl::Time now) {
  // Clamped here as well as in FloodTable: the bucket arithmetic and the
  // log pacing must not see time run backwards either.
  if (now > latest_) latest_ = now;
  now = latest_;
  const SourceKey key = Aggregate(source, options_.prefix);

  Buckets::Probe probe{Buckets::Verdict::kAllowed, -1};
  const int64_t now_ns = absl::ToUnixNanos(now);
  if (buckets_) {
    probe = buckets_->Check(key, now_ns);
    if (probe.verdict == Buckets::Verdict::kEmpty) {
      return Refuse(AdmissionRefusal::kSourceRate, now);
    }
    if (probe.verdict == Buckets::Verdict::kTableFull) {
      return Refuse(AdmissionRefusal::kTableFull, now);
    }
  }

  const AdmitResult flood = flood_.Admit(key, now);
  AdmissionResult result;
  if (!flood.admitted) {
    result.cause = flood.cause == RefusalCause::kPerSource
                       ? AdmissionRefusal::kSourceSessions
                       : AdmissionRefusal::kGlobalSessions;
    ++refusals_[Index(result.cause)];
    // FloodTable paces these itself (popa3d: per source, per
    // min_session_slot); a second pacing layer would change its policy.
    result.should_log = flood.should_log;
    return result;
  }
  // Only an admitted connection takes a token: refusals stay O(1) and
  // write nothing, and a source at its slot cap isn't also rate-limited
  // for knocking.
  if (buckets_) buckets_->Take(key, probe, now_ns);
  ++admitted_;
  result.admitted = true;
  result.slot = flood.slot;
  return result;
}

bool Admission::Release(SlotId slot, absl::Time now) {
  if (now > latest_) latest_ = now;
  return flood_.Release(slot, latest_);
}

}  // namespace popgate::limits
