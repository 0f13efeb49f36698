// Incremental parser for POP3 server replies (RFC 1939 §3), as a strict
// client: it checks what a lenient client would silently accept.
//
// One reply at a time: Start() says whether a multi-line body follows a +OK
// (RETR, LIST, UIDL, TOP, CAPA) or not; Feed() takes bytes as they arrive,
// split anywhere, and stops at the end of the reply so pipelined replies
// behind it stay with the caller. The body is dot-unstuffed and its size
// counted (CR LF included, stuffing dots and the final ".\r\n" excluded),
// which is what LIST sizes promise; it is kept only when asked (listings),
// never for RETR payloads.
//
// Untrusted: every byte comes from the server under test. Memory is bounded
// by the status-line cap and the capture cap.
#ifndef POPGATE_TOOLS_FLOOD_REPLY_PARSER_H_
#define POPGATE_TOOLS_FLOOD_REPLY_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace popgate::flood {

// Well-formedness defects. A reply with any of these is a protocol error for
// the session; they are also counted one by one.
enum ReplyDefect : uint32_t {
  kDefectNone = 0,
  // First line neither "+OK" nor "-ERR" (followed by SP or CR LF).
  kDefectBadStatus = 1u << 0,
  // Status line longer than kMaxStatusLine (RFC 2449: 512 octets with CRLF).
  kDefectOverlongStatus = 1u << 1,
  // A line ended in LF without CR.
  kDefectBareLf = 1u << 2,
  // A body line started with "." but was not stuffed ("..") and was not the
  // terminator: the server forgot to dot-stuff (RFC 1939 §3).
  kDefectUnstuffedDot = 1u << 3,
  // A captured body exceeded the capture cap (listing of a huge mailbox).
  kDefectCaptureOverflow = 1u << 4,
};

class ReplyParser {
 public:
  // RFC 2449 §4: a response line is at most 512 octets including CR LF.
  static constexpr size_t kMaxStatusLine = 512;
  // LIST/UIDL of 200,000 messages fits; beyond, stop capturing.
  static constexpr size_t kDefaultCaptureCap = 16 << 20;

  enum class State { kNeedMore, kDone, kError };

  // `multi_line`: a +OK is followed by a body ending in ".\r\n"; a -ERR never
  // is. `capture_body`: keep the unstuffed body for body().
  void Start(bool multi_line, bool capture_body,
             size_t capture_cap = kDefaultCaptureCap);

  // Consumes a prefix of `data` up to the end of the current reply and
  // returns how many bytes it took. After it returns, state() is kDone (the
  // rest of `data` belongs to the next reply), kError (an unrecoverable
  // defect: bad or overlong status line), or kNeedMore (all of `data` taken).
  // REQUIRES: Start() was called and state() is kNeedMore.
  size_t Feed(absl::string_view data);

  State state() const { return state_; }
  // Valid once the status line is complete.
  bool ok() const { return ok_; }
  // Status line text after "+OK " / "-ERR ", without CR LF (capped).
  const std::string& status_text() const { return status_text_; }
  // Dot-unstuffed body octets (CR LF counted as 2), excluding the terminator.
  uint64_t body_octets() const { return body_octets_; }
  uint64_t body_lines() const { return body_lines_; }
  // The unstuffed body, if capturing, with CR LF line ends.
  const std::string& body() const { return body_; }
  // ReplyDefect bits seen so far in this reply.
  uint32_t defects() const { return defects_; }
  // Raw octets taken for this reply (for byte accounting).
  uint64_t wire_octets() const { return wire_octets_; }

 private:
  enum class Phase {
    kStatus,     // accumulating the status line
    kLineStart,  // at the start of a body line
    kDot,        // body line began with '.'
    kDotCr,      // saw ".\r" at line start
    kInLine,     // inside a body line
    kCr,         // saw '\r' inside a body line
  };

  bool FinishStatusLine();
  void Emit(absl::string_view bytes);
  void EmitChar(char c) { Emit(absl::string_view(&c, 1)); }
  void EndLine();

  State state_ = State::kDone;
  Phase phase_ = Phase::kStatus;
  bool multi_line_ = false;
  bool capture_ = false;
  size_t capture_cap_ = 0;
  bool ok_ = false;
  std::string status_line_;
  std::string status_text_;
  std::string body_;
  uint64_t body_octets_ = 0;
  uint64_t body_lines_ = 0;
  uint64_t wire_octets_ = 0;
  uint32_t defects_ = 0;
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_REPLY_PARSER_H_
