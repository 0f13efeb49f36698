#include "mailbox/wire_stream.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/status/status.h"
#include "mailbox/sigbus_guard.h"

namespace popgate::mailbox {
namespace {

constexpr absl::string_view kCrLf = "\r\n";
constexpr absl::string_view kDot = ".";

// Whether the '\n' at `nl` ends a run of wire-clean CR LF lines: it is a
// bare LF, or the next line starts with '.' and needs its dot doubled.
bool IsRunBreak(const char* data, const char* nl, const char* end) {
  return nl == data || nl[-1] != '\r' || (nl + 1 < end && nl[1] == '.');
}

// The first '\n' in [p, limit) that IsRunBreak(), or `limit`. Reads
// [max(p - 1, data), min(limit + 1, end)). CR LF mail is a run of short
// lines: one memchr per line cost a quarter of a Maildir download's CPU,
// so the common case checks 16 octets per step instead. Trivial locals
// only (runs under the SIGBUS guard).
const char* FindRunBreak(const char* data, const char* p, const char* limit,
                         const char* end) {
#if defined(__SSE2__)
  if (p == data && p < limit) {
    if (*p == '\n') return p;
    ++p;
  }
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i dot = _mm_set1_epi8('.');
  // Loads p[-1..14], p[0..15] and p[1..16]: all inside [data, end).
  while (limit - p >= 16 && end - p >= 17) {
    const __m128i here =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i before =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p - 1));
    const __m128i after =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
    const __m128i breaks = _mm_and_si128(
        _mm_cmpeq_epi8(here, lf),
        _mm_or_si128(_mm_xor_si128(_mm_cmpeq_epi8(before, cr),
                                   _mm_set1_epi8(-1)),
                     _mm_cmpeq_epi8(after, dot)));
    const int mask = _mm_movemask_epi8(breaks);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < limit) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', limit - p));
    if (nl == nullptr) return limit;
    if (IsRunBreak(data, nl, end)) return nl;
    p = nl + 1;
  }
  return limit;
}

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
    // LF, a line starting with '.', the budget or the end. At least one
    // octet of progress even with no budget left.
    const size_t room = filled_ >= budget ? 1 : budget - filled_;
    const char* limit =
        static_cast<size_t>(end_ - pos_) < room ? end_ : pos_ + room;
    const char* nl = FindRunBreak(data_, pos_, limit, end_);
    const char* q = limit;
    if (nl != limit) {
      if (nl > data_ && nl[-1] == '\r') {
        q = nl + 1;  // the next line starts with '.'
      } else {
        // Bare LF: the line goes out without it, then CR LF.
        if (nl > pos_) {
          segs_[nsegs_++] = absl::string_view(pos_, nl - pos_);
          filled_ += static_cast<size_t>(nl - pos_);
        }
        segs_[nsegs_++] = kCrLf;
        filled_ += 2;
        pos_ = nl + 1;
        q = pos_;
      }
    }
    if (q > pos_) {
      segs_[nsegs_++] = absl::string_view(pos_, q - pos_);
      filled_ += static_cast<size_t>(q - pos_);
      pos_ = q;
    }
  }
}

void EncodingStream::Encode(char* dest, size_t capacity, size_t* written) {
  const char* p = pos_;
  size_t w = *written;
  // Two octets of room always make progress: a stuffed dot is followed by
  // at least its own octet, so the dot is never emitted twice.
  while (p < end_ && capacity - w >= 2) {
    if ((p == data_ || p[-1] == '\n') && *p == '.') dest[w++] = '.';
#if defined(__SSE2__)
    // Copy 16 octets at a time while looking for the line's LF: mail lines
    // are ~76 octets, where a memchr and a memcpy call per line cost more
    // than the octets. Octets stored past the LF are garbage that the next
    // store overwrites; `w` only counts what is encoded.
    bool line_done = false;
    const __m128i lf = _mm_set1_epi8('\n');
    while (end_ - p >= 16 && capacity - w >= 16) {
      const __m128i block =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dest + w), block);
      const int mask = _mm_movemask_epi8(_mm_cmpeq_epi8(block, lf));
      if (mask == 0) {
        p += 16;
        w += 16;
        continue;
      }
      const int k = __builtin_ctz(static_cast<unsigned>(mask));
      p += k;
      w += static_cast<size_t>(k);
      const bool crlf = p > data_ && p[-1] == '\r';
      if (capacity - w < (crlf ? 1u : 2u)) break;  // the LF waits
      if (!crlf) dest[w++] = '\r';
      dest[w++] = '\n';
      ++p;
      line_done = true;
      break;
    }
    // Otherwise the line's rest, or the room, is shorter than a block (or
    // its LF waits for room): the loop below finishes it. It must run even
    // with one octet of room: after a stuffed dot, that is its progress.
    if (line_done) continue;
#endif
    const size_t room = capacity - w;
    // Never look further than the room: a long line must not be rescanned
    // from its start on every call.
    const size_t scan = std::min(static_cast<size_t>(end_ - p), room + 1);
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', scan));
    if (nl == nullptr) {
      const size_t n = std::min(static_cast<size_t>(end_ - p), room);
      std::memcpy(dest + w, p, n);
      w += n;
      p += n;
      continue;
    }
    const size_t len = static_cast<size_t>(nl - p);  // <= room
    std::memcpy(dest + w, p, len);
    w += len;
    p = nl;
    const bool crlf = nl > data_ && nl[-1] == '\r';
    if (capacity - w < (crlf ? 1u : 2u)) break;  // the LF waits for next call
    if (!crlf) dest[w++] = '\r';
    dest[w++] = '\n';
    p = nl + 1;
  }
  pos_ = p;
  *written = w;
}

template <typename Fn>
bool EncodingStream::Guarded(Fn fn) const {
  if (guard_.empty()) {
    fn();
    return true;
  }
  return RunWithSigbusGuard(guard_.data(), guard_.size(), fn);
}

absl::StatusOr<bool> EncodingStream::OwesFinalCrLf() const {
  // The last data byte was read (and checked) by the encoder already, but
  // read it again only under the same guard.
  bool unterminated = false;
  if (end_ > data_ &&
      !Guarded([this, &unterminated] { unterminated = end_[-1] != '\n'; })) {
    return absl::AbortedError("mailbox truncated while sending a message");
  }
  return unterminated;
}

absl::StatusOr<bool> EncodingStream::Next(size_t max_bytes,
                                          std::vector<absl::string_view>* out) {
  if (max_bytes == 0) max_bytes = 1;
  size_t total = 0;
  while (pos_ < end_ && total < max_bytes) {
    const size_t budget = max_bytes - total;
    if (!Guarded([this, budget] { Fill(budget); })) {
      return absl::AbortedError("mailbox truncated while sending a message");
    }
    out->insert(out->end(), segs_, segs_ + nsegs_);
    total += filled_;
  }
  if (pos_ == end_ && !tail_sent_) {
    if (total >= max_bytes) return true;
    tail_sent_ = true;
    absl::StatusOr<bool> owed = OwesFinalCrLf();
    if (!owed.ok()) return owed.status();
    if (*owed) out->push_back(kCrLf);
  }
  return !(pos_ == end_ && tail_sent_);
}

bool EncodingStream::PrefersCopy() {
  if (wire_clean_ || pos_ == end_) return false;
  bool bare_lf = false;
  // A fault here is reported by the next read of the same bytes.
  Guarded([this, &bare_lf] {
    const size_t n = std::min(static_cast<size_t>(end_ - pos_), kPeekBytes);
    const char* nl = static_cast<const char*>(std::memchr(pos_, '\n', n));
    bare_lf = nl != nullptr && (nl == data_ || nl[-1] != '\r');
  });
  return bare_lf;
}

absl::StatusOr<bool> EncodingStream::NextInto(char* dest, size_t capacity,
                                              size_t* written) {
  *written = 0;
  if (capacity < kMinCopyCapacity) {
    return absl::InvalidArgumentError("NextInto: capacity below minimum");
  }
  if (pos_ < end_ && !Guarded([this, dest, capacity, written] {
        Encode(dest, capacity, written);
      })) {
    return absl::AbortedError("mailbox truncated while sending a message");
  }
  if (pos_ == end_ && !tail_sent_ && capacity - *written >= 2) {
    tail_sent_ = true;
    absl::StatusOr<bool> owed = OwesFinalCrLf();
    if (!owed.ok()) return owed.status();
    if (*owed) {
      dest[(*written)++] = '\r';
      dest[(*written)++] = '\n';
    }
  }
  return !(pos_ == end_ && tail_sent_);
}

}  // namespace popgate::mailbox
