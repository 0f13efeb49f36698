// popa3d's flood table (standalone.c + params.h), in O(1) per connection.
//
// Policy (popa3d): a session holds a slot from its start until it has ended
// AND at least `min_session_slot` has passed since it started. A source may
// hold at most `max_per_source` slots, everyone together `max_sessions`.
// With popa3d's numbers (50, 500, 10 s) that bounds both concurrency and the
// session-start rate (500 starts per 10 s), and refusals are silent.
//
// popa3d scans all 500 entries per accept(); here a hash map keyed by source
// counts held slots, a free list hands out slot ids, and a FIFO of start
// deadlines (start + min_session_slot, monotone in admission order because
// time is) lets Admit() retire expired held-after-exit slots in amortised
// O(1). Memory is bounded by max_sessions: map entries exist only for sources
// that hold a slot, and the FIFO has at most one entry per slot.
//
// Time is injected (absl::Time from a monotonic clock in production, fake in
// tests). A `now` earlier than one already seen is treated as that earlier
// maximum, so a clock step back never frees slots early or corrupts order.
//
// Callers: net/ master (one thread). Not thread-safe.
// Leaf module: std and abseil only.
#ifndef POPGATE_LIMITS_FLOOD_TABLE_H_
#define POPGATE_LIMITS_FLOOD_TABLE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace popgate::limits {

// A source address: IPv4 as a v4-mapped IPv6 address, IPv6 in full. Tables
// count aggregated keys (source_prefix.h Aggregate: IPv4 /32 or /24, IPv6
// /64 by default, one customer's prefix: an attacker owns the whole /64, so
// counting /128s would give them 2^64 budgets). Admission and PenaltyTable
// aggregate; a FloodTable used on its own counts what it is given.
struct SourceKey {
  std::array<uint8_t, 16> bytes{};

  // `addr` in network byte order (4 bytes).
  static SourceKey FromIpv4(const uint8_t addr[4]);
  // `addr` in network byte order (16 bytes), kept whole. A v4-mapped address
  // (::ffff:a.b.c.d, e.g. from a dual-stack listener) is keyed like the
  // IPv4 address, so it can't dodge the /32 limit by changing family.
  static SourceKey FromIpv6(const uint8_t addr[16]);

  friend bool operator==(const SourceKey& a, const SourceKey& b) {
    return a.bytes == b.bytes;
  }
  template <typename H>
  friend H AbslHashValue(H h, const SourceKey& k) {
    return H::combine_contiguous(std::move(h), k.bytes.data(), k.bytes.size());
  }
};

struct FloodOptions {
  // Global cap on held slots. popa3d: 500. Raising it raises the fork rate
  // and memory an attacker can make us spend; each slot costs ~64 bytes here.
  size_t max_sessions = 500;
  // Held slots per source. popa3d: 50. 0 = no per-source cap.
  size_t max_per_source = 50;
  // A slot stays held at least this long after its session started, even if
  // the session already ended. popa3d: 10 s. Zero = release at session end.
  absl::Duration min_session_slot = absl::Seconds(10);
};

// Refusal log lines are rate-limited per min_session_slot (popa3d), but
// never more often than this, so --min_session_slot=0 can't turn a flood
// into a syslog flood.
inline constexpr absl::Duration kMinRefusalLogInterval = absl::Seconds(1);

// Identifies a held slot; the generation makes a stale Release() harmless.
struct SlotId {
  uint32_t index = 0;
  uint32_t generation = 0;
};

enum class RefusalCause { kNone, kPerSource, kGlobal };

struct AdmitResult {
  bool admitted = false;
  SlotId slot;  // valid iff admitted
  RefusalCause cause = RefusalCause::kNone;
  // For a refusal: whether the caller should log it now. popa3d logs at most
  // one NOTICE per source per min_session_slot (per-source refusals) and one
  // per min_session_slot overall (global refusals), so a flood can't fill
  // the disk through syslog.
  bool should_log = false;
};

// popa3d's log texts: "<ip>: per source limit reached" / "<ip>: sessions
// limit reached". Empty for kNone.
std::string RefusalMessage(RefusalCause cause, absl::string_view source_text);

class FloodTable {
 public:
  explicit FloodTable(const FloodOptions& options);
  FloodTable(const FloodTable&) = delete;
  FloodTable& operator=(const FloodTable&) = delete;

  // Retires expired held-after-exit slots, then admits or refuses a new
  // session from `source`. O(1) amortised.
  AdmitResult Admit(const SourceKey& source, absl::Time now);

  // The session in `slot` has ended. The slot stays held until
  // start + min_session_slot. A stale or repeated id is ignored (returns
  // false), so a pid reaped twice can't free someone else's slot.
  bool Release(SlotId slot, absl::Time now);

  // Retires every slot whose session ended and whose minimum hold passed.
  // Admit() calls this; callers may too (e.g. from a timer) to free memory.
  void Expire(absl::Time now);

  // Slots held right now (live or held after exit), overall / per source.
  size_t held() const { return options_.max_sessions - free_.size(); }
  size_t held_by(const SourceKey& source) const;
  // Distinct sources holding a slot (bounded by max_sessions).
  size_t sources() const { return per_source_.size(); }
  const FloodOptions& options() const { return options_; }

 private:
  struct Slot {
    SourceKey source;
    absl::Time start;
    uint32_t generation = 0;
    bool in_use = false;
    bool live = false;         // the session has not ended yet
    bool min_elapsed = false;  // start + min_session_slot has passed
  };
  struct SourceState {
    uint32_t held = 0;
    absl::Time last_log = absl::InfinitePast();
  };
  struct Deadline {
    absl::Time at;
    uint32_t index;
    uint32_t generation;
  };

  absl::Time Clamp(absl::Time now);
  void FreeSlot(uint32_t index);

  FloodOptions options_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;  // stack of free slot indices
  absl::flat_hash_map<SourceKey, SourceState> per_source_;
  // Ring buffer FIFO of start deadlines; capacity max_sessions, because each
  // in-use slot has at most one entry (pushed at admission).
  std::vector<Deadline> fifo_;
  size_t fifo_head_ = 0;
  size_t fifo_size_ = 0;
  absl::Time latest_ = absl::InfinitePast();
  absl::Time global_last_log_ = absl::InfinitePast();
  absl::Duration log_interval_;  // max(min_session_slot, 1 s)
};

}  // namespace popgate::limits

#endif  // POPGATE_LIMITS_FLOOD_TABLE_H_
