#include "core/line_reader.h"

#include <algorithm>
#include <cstring>

namespace popgate::core {

LineReader::LineReader(size_t max_line_bytes)
    : max_line_bytes_(max_line_bytes) {}

void LineReader::Compact() {
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > 0 && start_ >= buffer_.size() / 2) {
    // Moving the tail costs at most what was consumed since the last move,
    // so compaction is amortised O(1) per byte.
    buffer_.erase(0, start_);
    start_ = 0;
  }
}

void LineReader::Append(absl::string_view bytes) {
  if (finished_ || bytes.empty()) return;
  Compact();
  if (discarding_ && buffered_bytes() == 0) {
    // Untrusted: the tail of an overlong line. Drop it here instead of
    // buffering it, so a client streaming junk without LF costs no memory.
    const void* lf = std::memchr(bytes.data(), '\n', bytes.size());
    if (lf == nullptr) return;
    discarding_ = false;
    bytes.remove_prefix(static_cast<const char*>(lf) - bytes.data() + 1);
  }
  buffer_.append(bytes.data(), bytes.size());
}

void LineReader::Finish() { finished_ = true; }

void LineReader::WipeConsumed() {
  std::fill(buffer_.begin(), buffer_.begin() + start_, '\0');
}

std::optional<LineReader::Line> LineReader::Next() {
  Compact();
  while (true) {
    absl::string_view pending(buffer_.data() + start_, buffered_bytes());
    const size_t lf = pending.find('\n');
    if (discarding_) {
      if (lf == absl::string_view::npos) {
        buffer_.clear();
        start_ = 0;
        return std::nullopt;
      }
      discarding_ = false;
      start_ += lf + 1;
      continue;
    }
    if (lf == absl::string_view::npos) {
      // Cap + 1 octets could still be cap octets plus the CR of a CR LF;
      // cap + 2 without LF is overlong whatever follows.
      if (pending.size() > max_line_bytes_ + 1) {
        discarding_ = true;
        buffer_.clear();
        start_ = 0;
        return Line{.too_long = true, .text = {}};
      }
      if (finished_ && !pending.empty()) {
        // popa3d processes a final unterminated line as a command. No CR is
        // stripped: there is no LF it could belong to.
        start_ += pending.size();
        if (pending.size() > max_line_bytes_) {
          return Line{.too_long = true, .text = {}};
        }
        return Line{.too_long = false, .text = pending};
      }
      return std::nullopt;
    }
    absl::string_view line = pending.substr(0, lf);
    start_ += lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line_bytes_)
      return Line{.too_long = true, .text = {}};
    return Line{.too_long = false, .text = line};
  }
}

}  // namespace popgate::core
