// The mbox message index: one pass over the mapped bytes, popa3d-exact
// message boundaries and UIDLs (reference §4.2, §4.5, §4.9).
//
// Callers: MboxMaildrop (at open, at every change re-check) and the fuzzer.
// Threading: pure functions over immutable bytes.
//
// Deliberate differences from popa3d (product requirements), all confined
// to the wire side: `wire_size` is exactly what RETR sends before
// dot-stuffing and the terminating dot, with LF -> CR LF but a CR LF line
// kept as is and CR LF appended after an unterminated last line. Boundaries,
// the UIDL header section (ends at the first "\n"-only line) and the digest
// are popa3d's, so UIDLs never change for existing users.
#ifndef POPGATE_MAILBOX_MBOX_INDEX_H_
#define POPGATE_MAILBOX_MBOX_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mailbox/uidl.h"

namespace popgate::mailbox {

// One message, 64 bytes. Offsets are from the start of the file.
struct MboxMessage {
  // The unit removed on delete: the From_ line through the byte before the
  // next From_ line (or EOF), separating blank line included.
  uint64_t raw_offset;
  uint64_t raw_size;
  // What RETR sends (before encoding): the line after From_ up to, but not
  // including, the separating blank line when the message has a body
  // (popa3d's body-less rule keeps it otherwise).
  uint64_t data_offset;
  uint64_t data_size;
  // LIST/STAT size: exact encoded octets before dot-stuffing.
  uint64_t wire_size;
  uint32_t flags;
  char uidl[kUidlLength];

  // Every line ends CR LF, none starts with '.', the data ends with CR LF:
  // the stored bytes are already the wire form (zero-copy candidates).
  static constexpr uint32_t kWireClean = 1;

  bool wire_clean() const { return (flags & kWireClean) != 0; }
  absl::string_view uidl_view() const {
    return absl::string_view(uidl, kUidlLength);
  }
  friend bool operator==(const MboxMessage& a, const MboxMessage& b) {
    return a.raw_offset == b.raw_offset && a.raw_size == b.raw_size &&
           a.data_offset == b.data_offset && a.data_size == b.data_size &&
           a.wire_size == b.wire_size && a.flags == b.flags &&
           std::memcmp(a.uidl, b.uidl, kUidlLength) == 0;
  }
};
static_assert(sizeof(MboxMessage) == 64, "keep the index compact");

// Indexes `data` (a whole mbox; empty data is an empty mailbox). Errors:
// DataLoss for popa3d's refusals (data before the first From_ line, a From_
// line directly followed by a boundary From_ line, the file ending right
// after a From_ line); ResourceExhausted beyond `max_messages`.
// Does NOT guard against SIGBUS: use IndexMappedMbox for mapped bytes.
absl::StatusOr<std::vector<MboxMessage>> IndexMbox(absl::string_view data,
                                                   size_t max_messages);

// As IndexMbox, but `data` lies in a file mapping that may be truncated
// under us: a SIGBUS becomes Aborted.
absl::StatusOr<std::vector<MboxMessage>> IndexMappedMbox(absl::string_view data,
                                                         size_t max_messages);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MBOX_INDEX_H_
