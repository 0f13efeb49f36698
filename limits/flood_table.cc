#include "limits/flood_table.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace popgate::limits {

SourceKey SourceKey::FromIpv4(const uint8_t addr[4]) {
  SourceKey key;
  key.bytes[10] = 0xff;
  key.bytes[11] = 0xff;
  std::memcpy(&key.bytes[12], addr, 4);
  return key;
}

SourceKey SourceKey::FromIpv6(const uint8_t addr[16]) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0,    0,
                                                0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(addr, kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    return FromIpv4(addr + 12);
  }
  SourceKey key;
  std::memcpy(key.bytes.data(), addr, 16);  // aggregated by Aggregate()
  return key;
}

std::string RefusalMessage(RefusalCause cause, absl::string_view source_text) {
  switch (cause) {
    case RefusalCause::kPerSource:
      return absl::StrCat(source_text, ": per source limit reached");
    case RefusalCause::kGlobal:
      return absl::StrCat(source_text, ": sessions limit reached");
    case RefusalCause::kNone:
      break;
  }
  return std::string();
}

FloodTable::FloodTable(const FloodOptions& options)
    : options_(options),
      slots_(std::max<size_t>(options.max_sessions, 1)),
      fifo_(std::max<size_t>(options.max_sessions, 1)) {
  options_.max_sessions = slots_.size();
  if (options_.min_session_slot < absl::ZeroDuration()) {
    options_.min_session_slot = absl::ZeroDuration();
  }
  log_interval_ = std::max(options_.min_session_slot, kMinRefusalLogInterval);
  free_.reserve(slots_.size());
  // Hand out low indices first (pop from the back).
  for (size_t i = slots_.size(); i > 0; --i) {
    free_.push_back(static_cast<uint32_t>(i - 1));
  }
  // Every source with a slot has an entry, so this is the map's maximum
  // size: reserving it now means no rehash (and no allocation) while an
  // attacker fills the table.
  per_source_.reserve(slots_.size());
}

absl::Time FloodTable::Clamp(absl::Time now) {
  if (now > latest_) latest_ = now;
  return latest_;
}

size_t FloodTable::held_by(const SourceKey& source) const {
  auto it = per_source_.find(source);
  return it == per_source_.end() ? 0 : it->second.held;
}

void FloodTable::FreeSlot(uint32_t index) {
  Slot& slot = slots_[index];
  assert(slot.in_use);
  auto it = per_source_.find(slot.source);
  // Invariant: an in-use slot is counted in its source's entry.
  assert(it != per_source_.end() && it->second.held > 0);
  if (it != per_source_.end() && --it->second.held == 0) {
    per_source_.erase(it);
  }
  slot.in_use = false;
  slot.live = false;
  ++slot.generation;
  free_.push_back(index);
}

void FloodTable::Expire(absl::Time now) {
  now = Clamp(now);
  // Invariant: every FIFO entry names an in-use slot of the same generation
  // whose minimum hold has not been marked elapsed, so the FIFO never holds
  // more than max_sessions entries and each pop does real work.
  while (fifo_size_ > 0) {
    const Deadline& d = fifo_[fifo_head_];
    if (d.at > now) break;
    Slot& slot = slots_[d.index];
    assert(slot.in_use && slot.generation == d.generation);
    slot.min_elapsed = true;
    if (!slot.live) FreeSlot(d.index);
    fifo_head_ = (fifo_head_ + 1) % fifo_.size();
    --fifo_size_;
  }
}

AdmitResult FloodTable::Admit(const SourceKey& source, absl::Time now) {
  now = Clamp(now);
  Expire(now);
  AdmitResult result;

  auto it = per_source_.find(source);
  if (options_.max_per_source > 0 && it != per_source_.end() &&
      it->second.held >= options_.max_per_source) {
    result.cause = RefusalCause::kPerSource;
    SourceState& state = it->second;
    if (now - state.last_log >= log_interval_) {
      state.last_log = now;
      result.should_log = true;
    }
    return result;
  }
  if (free_.empty()) {
    result.cause = RefusalCause::kGlobal;
    if (now - global_last_log_ >= log_interval_) {
      global_last_log_ = now;
      result.should_log = true;
    }
    return result;
  }

  const uint32_t index = free_.back();
  free_.pop_back();
  Slot& slot = slots_[index];
  slot.source = source;
  slot.start = now;
  slot.in_use = true;
  slot.live = true;
  slot.min_elapsed = false;
  if (it == per_source_.end()) {
    it = per_source_.emplace(source, SourceState{}).first;
  }
  ++it->second.held;

  // Deadlines are pushed in admission order with a clamped (monotone) clock
  // and a fixed hold, so the FIFO stays sorted: no heap needed.
  assert(fifo_size_ < fifo_.size());
  fifo_[(fifo_head_ + fifo_size_) % fifo_.size()] =
      Deadline{now + options_.min_session_slot, index, slot.generation};
  ++fifo_size_;

  result.admitted = true;
  result.slot = SlotId{index, slot.generation};
  return result;
}

bool FloodTable::Release(SlotId id, absl::Time now) {
  if (id.index >= slots_.size()) return false;
  Slot& slot = slots_[id.index];
  if (!slot.in_use || !slot.live || slot.generation != id.generation) {
    return false;
  }
  slot.live = false;
  if (slot.min_elapsed) {
    FreeSlot(id.index);
    Clamp(now);
    return true;
  }
  // Expire() marks this slot's minimum hold as elapsed if it has, and frees
  // it then (it is no longer live); otherwise the FIFO frees it later.
  Expire(now);
  return true;
}

}  // namespace popgate::limits
