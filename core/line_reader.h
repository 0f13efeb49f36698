// Splits untrusted client bytes into POP3 command lines, popa3d-style
// (popa3d-behaviour.md §3.1):
//  - a line ends at LF; exactly one CR right before the LF is stripped, so
//    bare LF is accepted and "x\r\r\n" yields "x\r";
//  - a line longer than the cap (CR LF excluded) yields ONE kTooLong event and
//    the rest of it, up to and including its LF, is discarded: it is never
//    split into several commands;
//  - after Finish() (EOF) a final unterminated line is still returned.
//
// Memory: the buffer holds what was appended and not yet taken. While the
// caller keeps calling Next(), an overlong line is dropped as soon as it is
// known to be overlong (cap + 2 bytes without LF), so the reader never holds
// more than the cap plus the last Append(). Lines the caller does not take yet
// (pipelining while blocked) stay buffered; bounding that is the caller's job.
//
// Threading: single-threaded, owned by a Session.
#ifndef POPGATE_CORE_LINE_READER_H_
#define POPGATE_CORE_LINE_READER_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace popgate::core {

class LineReader {
 public:
  struct Line {
    // True for a line over the cap; `text` is then empty.
    bool too_long = false;
    // The line without its CR LF / LF. Valid until the next Append(),
    // Next() or Finish().
    absl::string_view text;
  };

  // `max_line_bytes`: longest accepted line, CR LF excluded.
  explicit LineReader(size_t max_line_bytes);

  // Untrusted: bytes from the socket, any split.
  void Append(absl::string_view bytes);
  // No more bytes will come: Next() returns a final unterminated line too.
  void Finish();

  // The next complete line (or kTooLong event), or nullopt when more bytes
  // are needed (or, after Finish(), when nothing is left).
  std::optional<Line> Next();

  // Overwrites the octets of lines already taken (e.g. after a PASS line)
  // so a password does not linger in the buffer. Invalidates views.
  void WipeConsumed();

  // Octets held, including any partial line.
  size_t buffered_bytes() const { return buffer_.size() - start_; }
  bool finished() const { return finished_; }
  // True after Finish() once every line has been taken.
  bool exhausted() const { return finished_ && buffered_bytes() == 0; }

 private:
  void Compact();

  const size_t max_line_bytes_;
  std::string buffer_;
  size_t start_ = 0;         // first unread octet in buffer_
  bool discarding_ = false;  // inside an overlong line, dropping to its LF
  bool finished_ = false;
};

}  // namespace popgate::core

#endif  // POPGATE_CORE_LINE_READER_H_
