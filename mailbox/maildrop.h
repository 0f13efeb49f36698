// The storage seam between the POP3 state machine (core/) and a mailbox format.
//
// core/ sees a maildrop only through this interface; the concrete mbox and
// Maildir types are built in net/'s wiring file. An implementation may make
// syscalls (fstat, fcntl, pwrite); the interface itself has none, so core/
// stays pure and tests use tests/fakes/fake_maildrop.h.
//
// Threading: one session owns a maildrop; no method is called concurrently.
// Numbering: `index` is 0-based everywhere here; core/ maps wire `msn` to it.
#ifndef POPGATE_MAILBOX_MAILDROP_H_
#define POPGATE_MAILBOX_MAILDROP_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace popgate::mailbox {

// A lazily produced sequence of wire octets for one RETR or TOP reply body:
// the message with LF -> CR LF, dot-stuffing and a final CR LF if the stored
// message lacks one. It does NOT include the terminating ".\r\n": the caller
// sends that only after Maildrop::CheckUnchanged() succeeds once the body is
// out, so a client never takes a truncated message for a complete one.
//
// Segments point into the mailbox mapping or into static storage; they stay
// valid until the stream is destroyed (which must precede the maildrop's
// destruction). Producing segments lazily bounds memory by the caller's
// output window, not by message size.
class WireStream {
 public:
  virtual ~WireStream() = default;

  // Appends views of the next wire octets, at most about `max_bytes` of them
  // (a segment may overshoot by one line ending), to `out`.
  // Returns true while more octets remain after this call, false when the
  // body is complete. Aborted if the mailbox changed under us (the session
  // must end without the final dot).
  virtual absl::StatusOr<bool> Next(size_t max_bytes,
                                    std::vector<absl::string_view>* out) = 0;

  // Smallest `capacity` NextInto() accepts: room for a CR LF.
  static constexpr size_t kMinCopyCapacity = 2;

  // True when the octets from here on would come out of Next() as many
  // short segments (an LF-stored message gives two per line), which a
  // sender copies into one buffer anyway: NextInto() then encodes straight
  // into that buffer, one pass instead of segments plus a copy.
  virtual bool PrefersCopy() { return false; }

  // Views into [base, base + size) are also the octets of file `fd` at
  // offset (view - base): a sender may hand them to the kernel straight
  // from the page cache (sendfile) instead of copying them from the
  // mapping. fd < 0: no such file. Valid for the stream's life. Only for
  // files nobody rewrites in place (Maildir messages): the kernel reads
  // sendfile's pages again when it transmits them, after CheckUnchanged().
  struct FileBacking {
    int fd = -1;
    const char* base = nullptr;
    size_t size = 0;
  };
  virtual FileBacking file_backing() const { return FileBacking(); }

  // Writes the next wire octets into dest[0, capacity) and sets *written
  // (at least 1 while octets remain); returns as Next() does. Only called
  // after PrefersCopy() said true. REQUIRES: capacity >= kMinCopyCapacity.
  virtual absl::StatusOr<bool> NextInto(char* dest, size_t capacity,
                                        size_t* written) {
    *written = 0;
    return absl::UnimplementedError("NextInto without PrefersCopy");
  }
};

class Maildrop {
 public:
  virtual ~Maildrop() = default;

  // Messages visible to this session: fixed at open, never renumbered.
  virtual size_t message_count() const = 0;

  // LIST/STAT size in octets: what RETR sends before dot-stuffing and the
  // terminating ".\r\n" (popa3d-compatible for LF mail with a final newline).
  virtual uint64_t message_size(size_t index) const = 0;

  // The UIDL token (popa3d: 16 lowercase hex digits; Maildir: the base name).
  virtual absl::string_view uidl(size_t index) const = 0;

  // RETR (`top_lines` empty) or TOP n l (`top_lines` = l).
  // REQUIRES: index < message_count().
  // Errors: Aborted if someone else rewrote our part of the mailbox (end the
  // session silently, "Another MUA active, giving up"); Internal or DataLoss
  // on I/O failure ("Server failure accessing ...").
  virtual absl::StatusOr<std::unique_ptr<WireStream>> Retrieve(
      size_t index, std::optional<uint64_t> top_lines) = 0;

  // Checked after a RETR/TOP body has been handed to the kernel and before
  // its terminating dot. OK, Aborted or Internal as for Retrieve().
  virtual absl::Status CheckUnchanged() = 0;

  // UPDATE state: deletes `indices` (sorted, unique, each < message_count())
  // and keeps every other message plus all mail delivered since the open.
  // Must be crash-safe: a kill at any instant loses no kept or new message.
  // An empty span touches nothing on disk. Errors: Aborted (someone else
  // rewrote it: nothing applied), Unavailable (lock), Internal/DataLoss.
  virtual absl::Status Commit(absl::Span<const size_t> indices) = 0;

  // A human-readable location for log lines ("/var/mail/alice").
  virtual absl::string_view display_name() const = 0;
};

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDROP_H_
