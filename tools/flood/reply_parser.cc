#include "tools/flood/reply_parser.h"

#include <cstring>

#include "absl/strings/match.h"

namespace popgate::flood {

void ReplyParser::Start(bool multi_line, bool capture_body,
                        size_t capture_cap) {
  state_ = State::kNeedMore;
  phase_ = Phase::kStatus;
  multi_line_ = multi_line;
  capture_ = capture_body;
  capture_cap_ = capture_cap;
  ok_ = false;
  status_line_.clear();
  status_text_.clear();
  body_.clear();
  body_octets_ = body_lines_ = wire_octets_ = 0;
  defects_ = kDefectNone;
}

void ReplyParser::Emit(absl::string_view bytes) {
  body_octets_ += bytes.size();
  if (!capture_) return;
  if (body_.size() + bytes.size() > capture_cap_) {
    defects_ |= kDefectCaptureOverflow;
    return;
  }
  body_.append(bytes.data(), bytes.size());
}

void ReplyParser::EndLine() {
  // A bare LF is counted as CR LF: the size check should blame one defect
  // (the line end), not report a size mismatch as well.
  Emit("\r\n");
  ++body_lines_;
  phase_ = Phase::kLineStart;
}

// Returns false on a status line we cannot recover from.
bool ReplyParser::FinishStatusLine() {
  absl::string_view line = status_line_;
  if (absl::StartsWith(line, "+OK") && (line.size() == 3 || line[3] == ' ')) {
    ok_ = true;
    line.remove_prefix(line.size() == 3 ? 3 : 4);
  } else if (absl::StartsWith(line, "-ERR") &&
             (line.size() == 4 || line[4] == ' ')) {
    ok_ = false;
    line.remove_prefix(line.size() == 4 ? 4 : 5);
  } else {
    defects_ |= kDefectBadStatus;
    state_ = State::kError;
    return false;
  }
  status_text_.assign(line.data(), line.size());
  if (ok_ && multi_line_) {
    phase_ = Phase::kLineStart;
  } else {
    state_ = State::kDone;
  }
  return true;
}

size_t ReplyParser::Feed(absl::string_view data) {
  size_t i = 0;
  // Untrusted: from the socket. One pass, constant work per byte; the status
  // line is the only thing buffered besides an optional capture.
  while (i < data.size() && state_ == State::kNeedMore) {
    const char c = data[i++];
    switch (phase_) {
      case Phase::kStatus:
        if (c == '\n') {
          if (status_line_.empty() || status_line_.back() != '\r') {
            defects_ |= kDefectBareLf;
          } else {
            status_line_.pop_back();
          }
          FinishStatusLine();
        } else if (status_line_.size() + 2 >= kMaxStatusLine) {
          defects_ |= kDefectOverlongStatus;
          state_ = State::kError;
        } else {
          status_line_.push_back(c);
        }
        break;
      case Phase::kLineStart:
        if (c == '.') {
          phase_ = Phase::kDot;
        } else if (c == '\r') {
          phase_ = Phase::kCr;
        } else if (c == '\n') {
          defects_ |= kDefectBareLf;
          EndLine();
        } else {
          EmitChar(c);
          phase_ = Phase::kInLine;
        }
        break;
      case Phase::kDot:
        if (c == '\r') {
          phase_ = Phase::kDotCr;
        } else if (c == '\n') {
          // ".\n": a lenient client ends the reply here; so do we, noting it.
          defects_ |= kDefectBareLf;
          state_ = State::kDone;
        } else if (c == '.') {
          EmitChar('.');  // ".." -> "."
          phase_ = Phase::kInLine;
        } else {
          // RFC 1939 §3: strip the first octet anyway, but the server should
          // have sent "..".
          defects_ |= kDefectUnstuffedDot;
          EmitChar(c);
          phase_ = Phase::kInLine;
        }
        break;
      case Phase::kDotCr:
        if (c == '\n') {
          state_ = State::kDone;
        } else {
          // ".\r" + more: an unstuffed line that starts with ".\r".
          defects_ |= kDefectUnstuffedDot;
          EmitChar('\r');
          --i;  // Reprocess c inside the line.
          phase_ = Phase::kInLine;
        }
        break;
      case Phase::kInLine: {
        // Fast path: copy the run of ordinary bytes up to the next CR or LF.
        const size_t start = i - 1;
        size_t end = start;
        while (end < data.size() && data[end] != '\r' && data[end] != '\n') {
          ++end;
        }
        if (end > start) {
          Emit(data.substr(start, end - start));
          i = end;
        } else if (c == '\r') {
          phase_ = Phase::kCr;
        } else {  // c == '\n'
          defects_ |= kDefectBareLf;
          EndLine();
        }
        break;
      }
      case Phase::kCr:
        if (c == '\n') {
          EndLine();
        } else {
          // A lone CR inside a line is message data (mailboxes can hold it).
          EmitChar('\r');
          --i;
          phase_ = Phase::kInLine;
        }
        break;
    }
  }
  wire_octets_ += i;
  return i;
}

}  // namespace popgate::flood
