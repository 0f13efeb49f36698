#include "core/message_table.h"

#include <cassert>

namespace popgate::core {

MessageTable::MessageTable(const mailbox::Maildrop& maildrop)
    : maildrop_(maildrop), deleted_(maildrop.message_count(), false) {
  for (size_t i = 0; i < deleted_.size(); ++i) {
    total_bytes_ += maildrop_.message_size(i);
  }
}

std::optional<size_t> MessageTable::Lookup(int msn) const {
  if (msn < 1 || static_cast<size_t>(msn) > count()) return std::nullopt;
  const size_t index = static_cast<size_t>(msn) - 1;
  if (deleted_[index]) return std::nullopt;
  return index;
}

void MessageTable::Delete(size_t index) {
  assert(index < count() && !deleted_[index]);
  deleted_[index] = true;
  ++deleted_count_;
  deleted_bytes_ += maildrop_.message_size(index);
}

void MessageTable::Reset() {
  if (deleted_count_ == 0) return;
  deleted_.assign(deleted_.size(), false);
  deleted_count_ = 0;
  deleted_bytes_ = 0;
}

std::vector<size_t> MessageTable::DeletedIndices() const {
  std::vector<size_t> indices;
  indices.reserve(deleted_count_);
  for (size_t i = 0; i < deleted_.size(); ++i) {
    if (deleted_[i]) indices.push_back(i);
  }
  return indices;
}

}  // namespace popgate::core
