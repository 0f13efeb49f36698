// Bytes a session owes its client, in order: reply lines it owns, message
// bodies pulled lazily from a mailbox::WireStream, and checkpoints that must
// pass before the rest is sent (the final "." of a RETR is released only once
// the body has been written and the maildrop is still unchanged).
//
// The driver loop is: Gather() views, write them (writev/sendmsg, possibly
// partially), Consume() what the kernel took, repeat until empty().
// Memory is bounded by the window passed to Gather(), not by message size.
//
// View lifetime: views from Gather() stay valid until the next Consume() or
// Clear(), even if the producer appends meanwhile (Append never grows a
// string that a Gather() has exposed), so an io_uring send may be in flight
// while the session keeps handling input. Gather() twice without Consume()
// returns the same octets first (plus possibly more).
//
// Threading: owned by one Session; single-threaded.
#ifndef POPGATE_CORE_OUTPUT_QUEUE_H_
#define POPGATE_CORE_OUTPUT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "mailbox/maildrop.h"

namespace popgate::core {

class OutputQueue {
 public:
  // Returns OK to release what follows, or an error to end the session
  // (the error has already been recorded by whoever queued the checkpoint).
  using Checkpoint = std::function<absl::Status()>;

  // Default cap on how much one Gather() pulls from a stream.
  static constexpr size_t kDefaultStreamWindow = 256 * 1024;

  // `stream_window`: a stream is asked for at most this many octets per
  // Gather(), whatever the driver's `max_bytes`.
  explicit OutputQueue(size_t stream_window = kDefaultStreamWindow);
  ~OutputQueue();
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;

  // Producer side (core/).
  void Append(absl::string_view bytes);
  void AppendStream(std::unique_ptr<mailbox::WireStream> stream);
  void AppendCheckpoint(Checkpoint checkpoint);
  // Drops everything queued (streams are destroyed; pending checkpoints are
  // not run). Outstanding views become invalid.
  void Clear();

  // Where a gathered view's octets also lie in a file (a stream's
  // WireStream::FileBacking): the driver may send them from there with
  // sendfile. fd < 0: the octets are only in memory.
  struct FileExtent {
    int fd = -1;
    uint64_t offset = 0;
  };

  // Driver side (net/). Appends views of up to about `max_bytes` pending
  // octets to `out` (views stay valid until the next Consume()) and, if
  // `extents` is given, one FileExtent per view to it. Stops at a
  // checkpoint until everything before it has been consumed, then runs it.
  // An error means: stop writing and close the connection. The error comes
  // from a failed checkpoint or stream (octets gathered before a stream
  // failure are still returned, with OK, and the error comes on the next
  // call); the queue is then cleared (empty()).
  absl::Status Gather(size_t max_bytes, std::vector<absl::string_view>* out,
                      std::vector<FileExtent>* extents = nullptr);
  // The kernel took `bytes` octets from the front of the last Gather().
  // REQUIRES: `bytes` <= the octets that Gather() returned.
  void Consume(size_t bytes);

  bool empty() const { return items_.empty(); }
  // Octets buffered in owned strings (for memory accounting).
  size_t buffered_bytes() const { return buffered_bytes_; }
  // True while a stream or checkpoint is queued (the session stops reading
  // commands meanwhile, so pipelined RETRs never queue several bodies).
  bool has_stream_or_checkpoint() const { return special_items_ > 0; }

 private:
  // A pulled stream segment. `storage` is null when `view` points into the
  // stream's storage (the mapping); otherwise `view` points into it: octets
  // that would come as many short segments (an LF-stored message gives two
  // per line) are encoded (WireStream::NextInto) or copied into one owned
  // buffer, so the driver hands the kernel a few big iovecs instead of
  // thousands of tiny ones. Deque elements never move, so
  // `view` stays valid until the segment is popped. Owned octets are bounded
  // by what Gather() may leave pending plus one pull (the window), not by
  // message size.
  struct Segment {
    absl::string_view view;
    std::unique_ptr<char[]> storage;  // not zero-filled: it is written over
    FileExtent file;                  // where `view` lies in the stream's file
  };

  struct Item {
    enum class Kind { kBytes, kStream, kCheckpoint };
    Kind kind = Kind::kBytes;
    // kBytes: data[offset..] is pending. `exposed` once a Gather() handed
    // out a view into `data`: it must not grow (reallocate) after that.
    std::string data;
    size_t offset = 0;
    bool exposed = false;
    // kStream: segments pulled but not yet consumed (front may be partly
    // consumed: `offset` octets of segments.front() already went out).
    std::unique_ptr<mailbox::WireStream> stream;
    std::deque<Segment> segments;
    bool stream_done = false;
    // Set when Next() failed: the segments pulled before still go out, then
    // Gather() reports this error.
    absl::Status stream_error;
    // kCheckpoint
    Checkpoint checkpoint;
  };

  void PopFront();
  // Pull up to `want` octets from item.stream into new item.segments, as
  // views (Next) or encoded into an owned buffer (NextInto); return how
  // many octets were pulled and set item.stream_done.
  absl::StatusOr<size_t> PullViews(Item& item, size_t want);
  absl::StatusOr<size_t> PullCopied(Item& item, size_t want);

  const size_t stream_window_;
  std::deque<Item> items_;
  size_t buffered_bytes_ = 0;
  size_t special_items_ = 0;
  std::vector<absl::string_view> scratch_;  // PullViews' segments, reused
};

}  // namespace popgate::core

#endif  // POPGATE_CORE_OUTPUT_QUEUE_H_
