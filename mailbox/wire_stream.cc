#include "mailbox/wire_stream.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "mailbox/sigbus_guard.h"

namespace popgate::mailbox {
namespace {

constexpr absl::string_view kCrLf = "\r\n";
constexpr absl::string_view kDot = ".";

}  // namespace

uint64_t TopLength(absl::string_view data, uint64_t lines) {
  const char* p = data.data();
  const char* const end = p + data.size();
  bool armed = false;
  // lines + 1 credits; the empty line spends the first. Counting spent
  // credits instead avoids overflow for lines == UINT64_MAX.
  uint64_t spent = 0;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* line_end = nl != nullptr ? nl + 1 : end;
    if (!armed) {
      const size_t len = static_cast<size_t>(line_end - p);
      armed = (len == 1 && p[0] == '\n') ||
              (len == 2 && p[0] == '\r' && p[1] == '\n');
    }
    if (armed) {
      if (spent == lines) return static_cast<uint64_t>(line_end - data.data());
      ++spent;
    }
    p = line_end;
  }
  return data.size();
}

uint64_t WireSize(absl::string_view data) {
  const char* p = data.data();
  const char* const end = p + data.size();
  uint64_t size = data.size();
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (nl == nullptr) return size + 2;  // CR LF appended.
    if (nl == data.data() || nl[-1] != '\r') ++size;
    p = nl + 1;
  }
  return size;
}

void EncodingStream::Fill(size_t budget) {
  nsegs_ = 0;
  filled_ = 0;
  if (wire_clean_) {
    while (pos_ < end_ && nsegs_ < kBatch && filled_ < budget) {
      const size_t n =
          std::min(static_cast<size_t>(end_ - pos_), budget - filled_);
      segs_[nsegs_++] = absl::string_view(pos_, n);
      filled_ += n;
      pos_ += n;
    }
    return;
  }
  // Each iteration emits at most 3 segments (dot, run, CR LF).
  while (pos_ < end_ && nsegs_ <= kBatch - 3 && filled_ < budget) {
    if ((pos_ == data_ || pos_[-1] == '\n') && *pos_ == '.') {
      segs_[nsegs_++] = kDot;
      ++filled_;
    }
    // A run: consecutive CR LF lines go out as one segment, up to a bare
    // LF, a line starting with '.', the budget or the end.
    const char* q = pos_;
    for (;;) {
      const size_t used = filled_ + static_cast<size_t>(q - pos_);
      if (used >= budget && q > pos_) break;
      // At least one byte of progress even with no budget left.
      const size_t room = used >= budget ? 1 : budget - used;
      const char* limit =
          static_cast<size_t>(end_ - q) < room ? end_ : q + room;
      const char* nl =
          static_cast<const char*>(std::memchr(q, '\n', limit - q));
      if (nl == nullptr) {
        q = limit;
        break;
      }
      if (nl > data_ && nl[-1] == '\r') {
        q = nl + 1;
        if (q == end_ || *q == '.') break;
        continue;
      }
      // Bare LF: the line goes out without it, then CR LF.
      if (nl > pos_) {
        segs_[nsegs_++] = absl::string_view(pos_, nl - pos_);
        filled_ += static_cast<size_t>(nl - pos_);
      }
      segs_[nsegs_++] = kCrLf;
      filled_ += 2;
      pos_ = nl + 1;
      q = pos_;
      break;
    }
    if (q > pos_) {
      segs_[nsegs_++] = absl::string_view(pos_, q - pos_);
      filled_ += static_cast<size_t>(q - pos_);
      pos_ = q;
    }
  }
}

absl::StatusOr<bool> EncodingStream::Next(size_t max_bytes,
                                          std::vector<absl::string_view>* out) {
  if (max_bytes == 0) max_bytes = 1;
  size_t total = 0;
  while (pos_ < end_ && total < max_bytes) {
    const size_t budget = max_bytes - total;
    if (guard_.empty()) {
      Fill(budget);
    } else if (!RunWithSigbusGuard(guard_.data(), guard_.size(),
                                   [this, budget] { Fill(budget); })) {
      return absl::AbortedError("mailbox truncated while sending a message");
    }
    out->insert(out->end(), segs_, segs_ + nsegs_);
    total += filled_;
  }
  if (pos_ == end_ && !tail_sent_) {
    if (total >= max_bytes) return true;
    tail_sent_ = true;
    // The last data byte was read (and checked) by Fill already, but read
    // it again only under the same guard.
    bool unterminated = false;
    if (end_ > data_) {
      auto check = [this, &unterminated] { unterminated = end_[-1] != '\n'; };
      if (guard_.empty()) {
        check();
      } else if (!RunWithSigbusGuard(guard_.data(), guard_.size(), check)) {
        return absl::AbortedError("mailbox truncated while sending a message");
      }
    }
    if (unterminated) out->push_back(kCrLf);
  }
  return !(pos_ == end_ && tail_sent_);
}

}  // namespace popgate::mailbox
