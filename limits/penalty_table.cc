// PenaltyTable (penalty_table.h): per-prefix auth-failure counts with a
// growing delay and a lockout, after Dovecot's anvil penalty table
// (src/anvil/penalty.c), bounded and O(1) per call.
//
// Layout: a fixed vector of `max_sources` entries, a hash map key -> entry
// index reserved up front, and an intrusive doubly linked list through the
// entries ordered by last failure (head = most recent). Time is clamped to
// be monotone, so the list is sorted by last_failure and its tail is both
// the least recently failed (evicted when full) and the first to be
// forgotten (checked a couple of entries per call, so idle entries drain
// without a timer). Entries that are forgotten elsewhere in the list are
// dropped lazily when their source is next looked up.
//
// Lockout arithmetic: failures keep counting while they are within
// forget_after of each other, so once a source has been locked out, its
// next failure after the lockout ends (if within forget_after of the last)
// locks it out again at once. With the defaults (lockout 5 min, forget 15
// min) a guesser gets lockout_failures tries, then one per lockout.
//
// Memory per source (x86-64): Entry 64 bytes + hash map slot 20 bytes and a
// control byte at 1.4x-2.9x slack, about 95-125 bytes; 65536 sources ~
// 7 MiB, allocated at construction. No allocation afterwards (see the
// reserve in the constructor).
#include "limits/penalty_table.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace popgate::limits {
namespace {

constexpr uint32_t kNil = std::numeric_limits<uint32_t>::max();

PenaltyOptions Normalize(PenaltyOptions o) {
  const absl::Duration zero = absl::ZeroDuration();
  o.free_failures = std::max(o.free_failures, 0);
  o.lockout_failures = std::max(o.lockout_failures, 0);
  o.base_delay = std::max(o.base_delay, zero);
  o.max_delay = std::max(o.max_delay, zero);
  o.lockout = std::max(o.lockout, zero);
  o.forget_after = std::max(o.forget_after, zero);
  o.max_sources = std::clamp<size_t>(o.max_sources, 1, kNil - 1);
  return o;
}

}  // namespace

class PenaltyTable::Impl {
 public:
  struct FailureOutcome {
    absl::Duration delay;
    bool lockout_started;
  };

  explicit Impl(const PenaltyOptions& options)
      : options_(Normalize(options)), entries_(options_.max_sources) {
    // Free list through `next`, low indices first.
    for (uint32_t i = 0; i < entries_.size(); ++i) {
      entries_[i].next = i + 1 < entries_.size() ? i + 1 : kNil;
    }
    free_ = 0;
    // abseil 20220623 squashes erase tombstones in place only while size <=
    // 25/32 of capacity and capacity > 16, else it doubles; 5/4 headroom
    // (at least 32) keeps us under that, so churn never allocates.
    index_.reserve(std::max<size_t>(entries_.size() + entries_.size() / 4, 32));
  }

  size_t size() const { return index_.size(); }

  bool LockedOut(const SourceKey& source, absl::Time now) {
    now = Clamp(now);
    DrainTail(now);
    const uint32_t i = Find(Aggregate(source, options_.prefix), now);
    return i != kNil && entries_[i].locked_until > now;
  }

  FailureOutcome RecordFailure(const SourceKey& source, absl::Time now) {
    now = Clamp(now);
    DrainTail(now);
    const SourceKey key = Aggregate(source, options_.prefix);
    uint32_t i = Find(key, now);
    if (i == kNil) {
      i = Allocate(key);
    } else {
      Unlink(i);
    }
    PushFront(i);
    Entry& e = entries_[i];
    if (e.failures < std::numeric_limits<uint32_t>::max()) ++e.failures;
    e.last_failure = now;

    FailureOutcome out{Delay(e.failures), false};
    if (options_.lockout_failures > 0 &&
        e.failures >= static_cast<uint32_t>(options_.lockout_failures)) {
      // A failure while already locked (the caller verified anyway)
      // extends the lockout but doesn't count as a new one.
      out.lockout_started = e.locked_until <= now;
      e.locked_until = now + options_.lockout;
    }
    return out;
  }

  void RecordSuccess(const SourceKey& source, absl::Time now) {
    now = Clamp(now);
    DrainTail(now);
    const uint32_t i = Find(Aggregate(source, options_.prefix), now);
    if (i != kNil) Remove(i);
  }

 private:
  struct Entry {
    SourceKey key;                                   // 16 bytes
    absl::Time last_failure;                         // 16
    absl::Time locked_until = absl::InfinitePast();  // 16
    uint32_t failures = 0;
    uint32_t prev = kNil;  // towards the head (more recent)
    uint32_t next = kNil;  // towards the tail; free list link when unused
  };

  absl::Time Clamp(absl::Time now) {
    if (now > latest_) latest_ = now;
    return latest_;
  }

  // Nothing left to remember: no lockout running and no failure for
  // forget_after.
  bool Forgotten(const Entry& e, absl::Time now) const {
    return e.locked_until <= now &&
           now - e.last_failure >= options_.forget_after;
  }

  // Two per call: each call adds at most one entry, so the table can't
  // outgrow the drain, and no single call does unbounded work.
  void DrainTail(absl::Time now) {
    for (int n = 0; n < 2 && tail_ != kNil; ++n) {
      if (!Forgotten(entries_[tail_], now)) return;
      Remove(tail_);
    }
  }

  uint32_t Find(const SourceKey& key, absl::Time now) {
    auto it = index_.find(key);
    if (it == index_.end()) return kNil;
    const uint32_t i = it->second;
    if (Forgotten(entries_[i], now)) {
      Remove(i);
      return kNil;
    }
    return i;
  }

  // A fresh, unlinked entry for `key`, evicting the least recently failed
  // source when the table is full.
  uint32_t Allocate(const SourceKey& key) {
    if (free_ == kNil) {
      assert(tail_ != kNil);  // full table: every entry is in the list
      Remove(tail_);
    }
    const uint32_t i = free_;
    free_ = entries_[i].next;
    entries_[i] = Entry{};
    entries_[i].key = key;
    index_.emplace(key, i);
    return i;
  }

  void Remove(uint32_t i) {
    Unlink(i);
    index_.erase(entries_[i].key);
    entries_[i].next = free_;
    free_ = i;
  }

  void Unlink(uint32_t i) {
    Entry& e = entries_[i];
    if (e.prev != kNil) {
      entries_[e.prev].next = e.next;
    } else {
      head_ = e.next;
    }
    if (e.next != kNil) {
      entries_[e.next].prev = e.prev;
    } else {
      tail_ = e.prev;
    }
    e.prev = e.next = kNil;
  }

  void PushFront(uint32_t i) {
    Entry& e = entries_[i];
    e.prev = kNil;
    e.next = head_;
    if (head_ != kNil) entries_[head_].prev = i;
    head_ = i;
    if (tail_ == kNil) tail_ = i;
  }

  // Zero for the first free_failures, then base_delay doubling per failure
  // up to max_delay.
  absl::Duration Delay(uint32_t failures) const {
    const uint32_t free = static_cast<uint32_t>(options_.free_failures);
    if (failures <= free || options_.base_delay == absl::ZeroDuration()) {
      return absl::ZeroDuration();
    }
    absl::Duration d = options_.base_delay;
    // Stops at the cap, so at most ~64 doublings whatever the count.
    for (uint32_t k = failures - free - 1; k > 0 && d < options_.max_delay;
         --k) {
      d *= 2;
    }
    return std::min(d, options_.max_delay);
  }

  PenaltyOptions options_;
  std::vector<Entry> entries_;  // fixed size: max_sources
  absl::flat_hash_map<SourceKey, uint32_t> index_;
  uint32_t head_ = kNil;
  uint32_t tail_ = kNil;
  uint32_t free_ = kNil;
  absl::Time latest_ = absl::InfinitePast();
};

PenaltyTable::PenaltyTable(const PenaltyOptions& options)
    : impl_(std::make_unique<Impl>(options)) {}

PenaltyTable::~PenaltyTable() = default;

bool PenaltyTable::LockedOut(const SourceKey& source, absl::Time now) {
  return impl_->LockedOut(source, now);
}

absl::Duration PenaltyTable::RecordFailure(const SourceKey& source,
                                           absl::Time now) {
  const Impl::FailureOutcome out = impl_->RecordFailure(source, now);
  if (out.lockout_started) ++lockouts_;
  return out.delay;
}

void PenaltyTable::RecordSuccess(const SourceKey& source, absl::Time now) {
  impl_->RecordSuccess(source, now);
}

size_t PenaltyTable::size() const { return impl_->size(); }

}  // namespace popgate::limits
