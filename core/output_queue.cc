#include "core/output_queue.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <utility>

#include "mailbox/sigbus_guard.h"

namespace popgate::core {
namespace {

// A pull whose segments average fewer octets than this is copied into one
// owned segment (see OutputQueue::Segment). LF mail averages ~40 (a line,
// then CR LF); CR LF runs and wire-clean mail are far above it and stay
// views into the mapping.
constexpr size_t kCoalesceAverageBytes = 512;

// What one PullCopied() encodes at most: big enough that a window is a
// handful of iovecs, small enough that a short message does not allocate
// a whole window.
constexpr size_t kCopyChunkBytes = 64 * 1024;

// Copies `pieces` back to back into `dst`. They may point into a mailbox
// mapping that a foreign truncate shrinks at any moment (fcntl locks are
// advisory), so the copy runs under the SIGBUS guard: a fault returns false
// instead of killing the process. The queue does not know the mapping's
// range, so the guard covers every address, but only this memcpy loop.
bool CopyPieces(const std::vector<absl::string_view>& pieces, char* dst) {
  return mailbox::RunWithSigbusGuard(
      nullptr, std::numeric_limits<size_t>::max(), [&pieces, dst] {
        char* p = dst;
        for (absl::string_view piece : pieces) {
          std::memcpy(p, piece.data(), piece.size());
          p += piece.size();
        }
      });
}

}  // namespace

OutputQueue::OutputQueue(size_t stream_window)
    : stream_window_(std::max<size_t>(stream_window, 1)) {}

OutputQueue::~OutputQueue() = default;

void OutputQueue::Append(absl::string_view bytes) {
  if (bytes.empty()) return;
  buffered_bytes_ += bytes.size();
  // Coalesce pipelined replies into one string (fewer iovecs), but never
  // grow a string a Gather() exposed: the send may still be in flight.
  if (!items_.empty() && items_.back().kind == Item::Kind::kBytes &&
      !items_.back().exposed) {
    items_.back().data.append(bytes.data(), bytes.size());
    return;
  }
  Item& item = items_.emplace_back();
  item.kind = Item::Kind::kBytes;
  item.data.assign(bytes.data(), bytes.size());
}

void OutputQueue::AppendStream(std::unique_ptr<mailbox::WireStream> stream) {
  Item& item = items_.emplace_back();
  item.kind = Item::Kind::kStream;
  item.stream = std::move(stream);
  ++special_items_;
}

void OutputQueue::AppendCheckpoint(Checkpoint checkpoint) {
  Item& item = items_.emplace_back();
  item.kind = Item::Kind::kCheckpoint;
  item.checkpoint = std::move(checkpoint);
  ++special_items_;
}

void OutputQueue::Clear() {
  // Segments point into their stream: drop them with it.
  items_.clear();
  buffered_bytes_ = 0;
  special_items_ = 0;
}

void OutputQueue::PopFront() {
  Item& front = items_.front();
  if (front.kind == Item::Kind::kBytes) {
    buffered_bytes_ -= front.data.size() - front.offset;
  } else {
    --special_items_;
  }
  items_.pop_front();
}

absl::Status OutputQueue::Gather(size_t max_bytes,
                                 std::vector<absl::string_view>* out,
                                 std::vector<FileExtent>* extents) {
  const size_t out_size_at_entry = out->size();
  const size_t extents_size_at_entry =
      extents != nullptr ? extents->size() : 0;
  auto emit = [out, extents](absl::string_view view, FileExtent file) {
    out->push_back(view);
    if (extents != nullptr) extents->push_back(file);
  };
  auto unwind = [&] {
    out->resize(out_size_at_entry);
    if (extents != nullptr) extents->resize(extents_size_at_entry);
  };
  size_t budget = max_bytes;
  size_t i = 0;
  while (i < items_.size() && budget > 0) {
    Item& item = items_[i];
    switch (item.kind) {
      case Item::Kind::kBytes: {
        absl::string_view pending(item.data);
        pending.remove_prefix(item.offset);
        const size_t take = std::min(pending.size(), budget);
        emit(pending.substr(0, take), FileExtent());
        item.exposed = true;
        budget -= take;
        if (take < pending.size()) return absl::OkStatus();
        ++i;
        break;
      }
      case Item::Kind::kStream: {
        if (!item.stream_error.ok() && item.segments.empty()) {
          // Everything produced before the failure has been consumed.
          absl::Status error = item.stream_error;
          unwind();
          Clear();
          return error;
        }
        // Segments pulled by an earlier Gather() and not yet consumed.
        for (const Segment& pending : item.segments) {
          absl::string_view segment = pending.view;
          const size_t take = std::min(segment.size(), budget);
          emit(segment.substr(0, take), pending.file);
          budget -= take;
          if (budget == 0) return absl::OkStatus();
        }
        while (!item.stream_done && budget > 0) {
          const size_t before = item.segments.size();
          const size_t want = std::min(budget, stream_window_);
          absl::StatusOr<size_t> pulled =
              want >= mailbox::WireStream::kMinCopyCapacity &&
                      item.stream->PrefersCopy()
                  ? PullCopied(item, want)
                  : PullViews(item, want);
          if (!pulled.ok()) {
            if (out->size() == out_size_at_entry) {
              Clear();
              return pulled.status();
            }
            // Send what came before; fail on the next Gather().
            item.stream_error = pulled.status();
            item.stream_done = true;
            return absl::OkStatus();
          }
          for (size_t k = before; k < item.segments.size() && budget > 0;
               ++k) {
            const absl::string_view segment = item.segments[k].view;
            const size_t take = std::min(segment.size(), budget);
            emit(segment.substr(0, take), item.segments[k].file);
            budget -= take;
          }
          // A stream that made no progress gets another chance on the next
          // Gather() instead of spinning here.
          if (*pulled == 0) break;
        }
        if (!item.stream_done || !item.stream_error.ok()) {
          return absl::OkStatus();
        }
        if (item.segments.empty() && i == 0) {
          PopFront();  // a finished stream with nothing left to send
          continue;
        }
        ++i;
        break;
      }
      case Item::Kind::kCheckpoint: {
        // Everything before it must have reached the kernel first.
        if (i != 0) return absl::OkStatus();
        Checkpoint checkpoint = std::move(item.checkpoint);
        PopFront();
        absl::Status status = checkpoint();
        if (!status.ok()) {
          unwind();
          Clear();
          return status;
        }
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> OutputQueue::PullViews(Item& item, size_t want) {
  scratch_.clear();
  absl::StatusOr<bool> more = item.stream->Next(want, &scratch_);
  if (!more.ok()) return more.status();
  item.stream_done = !*more;
  size_t pulled = 0;
  size_t count = 0;
  for (absl::string_view segment : scratch_) {
    pulled += segment.size();
    count += segment.empty() ? 0 : 1;
  }
  if (count > 1 && pulled < kCoalesceAverageBytes * count) {
    Segment& segment = item.segments.emplace_back();
    // Allocated before the copy: nothing allocates while mapped bytes are
    // read (see RunWithSigbusGuard).
    segment.storage.reset(new char[pulled]);
    if (!CopyPieces(scratch_, segment.storage.get())) {
      item.segments.pop_back();
      return absl::AbortedError("mailbox truncated while sending a message");
    }
    segment.view = absl::string_view(segment.storage.get(), pulled);
    return pulled;
  }
  const mailbox::WireStream::FileBacking backing =
      item.stream->file_backing();
  for (absl::string_view segment : scratch_) {
    if (segment.empty()) continue;
    Segment& added = item.segments.emplace_back();
    added.view = segment;
    // Static literals (CR LF, a stuffed dot) lie outside the mapping.
    // Compared as integers: the pointers may belong to unrelated objects.
    const auto at = reinterpret_cast<uintptr_t>(segment.data());
    const auto base = reinterpret_cast<uintptr_t>(backing.base);
    if (backing.fd >= 0 && at >= base && segment.size() <= backing.size &&
        at - base <= backing.size - segment.size()) {
      added.file.fd = backing.fd;
      added.file.offset = at - base;
    }
  }
  return pulled;
}

absl::StatusOr<size_t> OutputQueue::PullCopied(Item& item, size_t want) {
  const size_t capacity = std::min(want, kCopyChunkBytes);
  Segment& segment = item.segments.emplace_back();
  segment.storage.reset(new char[capacity]);
  size_t written = 0;
  absl::StatusOr<bool> more =
      item.stream->NextInto(segment.storage.get(), capacity, &written);
  if (!more.ok() || written == 0) item.segments.pop_back();
  if (!more.ok()) return more.status();
  item.stream_done = !*more;
  if (written > 0) {
    segment.view = absl::string_view(segment.storage.get(), written);
  }
  return written;
}

void OutputQueue::Consume(size_t bytes) {
  while (bytes > 0 && !items_.empty()) {
    Item& front = items_.front();
    if (front.kind == Item::Kind::kBytes) {
      const size_t pending = front.data.size() - front.offset;
      if (bytes >= pending) {
        bytes -= pending;
        PopFront();
      } else {
        front.offset += bytes;
        buffered_bytes_ -= bytes;
        bytes = 0;
      }
    } else if (front.kind == Item::Kind::kStream) {
      while (bytes > 0 && !front.segments.empty()) {
        Segment& segment = front.segments.front();
        if (bytes >= segment.view.size()) {
          bytes -= segment.view.size();
          front.segments.pop_front();
        } else {
          segment.view.remove_prefix(bytes);
          segment.file.offset += bytes;
          bytes = 0;
        }
      }
      if (front.segments.empty() && front.stream_done &&
          front.stream_error.ok()) {
        PopFront();
      } else if (bytes > 0) {
        break;  // REQUIRES violated: more than Gather() returned.
      }
    } else {
      break;  // A checkpoint: Gather() never returns octets past one.
    }
  }
  assert(bytes == 0 && "Consume() past what Gather() returned");
  // Finished streams at the front hold nothing more to send.
  while (!items_.empty() && items_.front().kind == Item::Kind::kStream &&
         items_.front().stream_done && items_.front().segments.empty() &&
         items_.front().stream_error.ok()) {
    PopFront();
  }
}

}  // namespace popgate::core
