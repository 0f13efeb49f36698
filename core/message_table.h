// The TRANSACTION-state view of a maildrop: wire numbering (msn, 1-based)
// to index (0-based), deletion marks and the running STAT totals.
//
// Deletion marks live only here until QUIT hands DeletedIndices() to
// Maildrop::Commit(); nothing touches storage before that (RFC 1939 §6).
// Memory: one bit per message; sizes are asked of the maildrop, not copied.
//
// Threading: owned by one Session.
#ifndef POPGATE_CORE_MESSAGE_TABLE_H_
#define POPGATE_CORE_MESSAGE_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "mailbox/maildrop.h"

namespace popgate::core {

class MessageTable {
 public:
  // `maildrop` must outlive the table.
  explicit MessageTable(const mailbox::Maildrop& maildrop);

  size_t count() const { return deleted_.size(); }
  // The index of message `msn` if it exists and is not marked deleted.
  std::optional<size_t> Lookup(int msn) const;
  bool deleted(size_t index) const { return deleted_[index]; }

  // REQUIRES: index < count(), not deleted.
  void Delete(size_t index);
  // RSET: unmark everything.
  void Reset();

  // Totals over messages not marked deleted (STAT, "left" in the log line).
  size_t live_count() const { return count() - deleted_count_; }
  uint64_t live_bytes() const { return total_bytes_ - deleted_bytes_; }
  size_t deleted_count() const { return deleted_count_; }
  uint64_t deleted_bytes() const { return deleted_bytes_; }
  // Sorted, unique: what Maildrop::Commit() expects.
  std::vector<size_t> DeletedIndices() const;

 private:
  const mailbox::Maildrop& maildrop_;
  std::vector<bool> deleted_;
  uint64_t total_bytes_ = 0;
  size_t deleted_count_ = 0;
  uint64_t deleted_bytes_ = 0;
};

}  // namespace popgate::core

#endif  // POPGATE_CORE_MESSAGE_TABLE_H_
