// Wire encoding of stored message bytes for RETR/TOP bodies (reference §4.4
// with the product's deliberate fixes).
//
// RETR: every LF not preceded by CR becomes CR LF (a CR LF line is sent as
// is, where popa3d would send CR CR LF); a '.' at a line start is doubled;
// CR LF is appended when the data does not end with LF. No terminating dot
// (see maildrop.h). TOP n l: the prefix TopLength() selects, encoded alike.
//
// Next(): segments point into the caller's bytes (the mailbox mapping) or
// into static literals; nothing is copied, nothing is allocated per line.
// NextInto(): the same octets encoded into the caller's buffer, for LF
// lines, where two segments per line would cost more than the copy.
// Threading: a stream is used by one thread at a time.
#ifndef POPGATE_MAILBOX_WIRE_STREAM_H_
#define POPGATE_MAILBOX_WIRE_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mailbox/maildrop.h"

namespace popgate::mailbox {

// Length of the prefix of message `data` that TOP sends for `lines` body
// lines: all lines up to the first empty line ("\n" or, unlike popa3d,
// "\r\n"), that line, and `lines` more. No empty line: all of `data`.
// Reads every byte it scans: call under RunWithSigbusGuard for mapped data.
uint64_t TopLength(absl::string_view data, uint64_t lines);

// Exact encoded size of `data` before dot-stuffing (the LIST size rule).
uint64_t WireSize(absl::string_view data);

// Encodes `data` lazily. If `guard` is non-empty, every read of `data` runs
// under RunWithSigbusGuard(guard) and a fault yields Aborted.
// `wire_clean` (MboxMessage::kWireClean) skips the line scan: the data is
// handed out as is, in max_bytes slices. Only pass true for bytes that
// cannot change while streaming (nothing verifies them).
// `backing`: the file `data` is mapped from (see WireStream::FileBacking).
// REQUIRES: `data` (and `guard`, and backing.fd) outlive the stream.
class EncodingStream : public WireStream {
 public:
  EncodingStream(absl::string_view data, bool wire_clean,
                 absl::string_view guard, FileBacking backing = FileBacking())
      : data_(data.data()),
        end_(data.data() + data.size()),
        pos_(data.data()),
        wire_clean_(wire_clean),
        guard_(guard),
        backing_(backing) {}

  absl::StatusOr<bool> Next(size_t max_bytes,
                            std::vector<absl::string_view>* out) override;

  // True when the next line ends in a bare LF (looked for in the next
  // kPeekBytes): CR LF lines come out of Next() as long runs, views of the
  // data, and are best left there.
  bool PrefersCopy() override;
  absl::StatusOr<bool> NextInto(char* dest, size_t capacity,
                                size_t* written) override;
  FileBacking file_backing() const override { return backing_; }

 private:
  static constexpr size_t kPeekBytes = 1024;

  static constexpr int kBatch = 64;

  // Emits up to kBatch segments / `budget` octets into segs_. Trivial
  // locals only: may be cut short by siglongjmp.
  void Fill(size_t budget);
  // Encodes into dest[*written, capacity) from pos_. Trivial locals only,
  // as Fill().
  void Encode(char* dest, size_t capacity, size_t* written);
  // After the last data byte: whether the CR LF for an unterminated last
  // line is owed (read under the guard). Aborted on a fault.
  absl::StatusOr<bool> OwesFinalCrLf() const;
  // Runs `fn` under the SIGBUS guard if there is one; false on a fault.
  template <typename Fn>
  bool Guarded(Fn fn) const;

  const char* const data_;
  const char* const end_;
  const char* pos_;         // Next unsent data byte.
  bool tail_sent_ = false;  // The CR LF for an unterminated last line.
  const bool wire_clean_;
  const absl::string_view guard_;
  const FileBacking backing_;

  absl::string_view segs_[kBatch];
  int nsegs_ = 0;
  size_t filled_ = 0;  // Octets in segs_.
};

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_WIRE_STREAM_H_
