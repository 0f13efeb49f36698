// Hands what OutputQueue::Gather() returned to the kernel: runs of views in
// memory with one writev/sendmsg each, and views that also lie in a file
// (a wire-clean run of a mapped Maildir message) with sendfile(2),
// straight from the page cache. Both drivers (session_process.cc,
// pool_session.cc) use it.
//
// Why sendfile: a write copies the octets from the mapping into socket
// buffers; sendfile hands the kernel references to the page-cache pages
// instead, so the sender touches the octets only where the encoder scanned
// them. On loopback the reader's copy dominates and the two measure alike
// (bench/RESULTS.md); a NIC sends the pages without any copy.
//
// Threading: one sender per connection; not shared.
#ifndef POPGATE_NET_SEND_GATHERED_H_
#define POPGATE_NET_SEND_GATHERED_H_

#include <sys/uio.h>

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/output_queue.h"
#include "core/session.h"

namespace popgate::net {

// session.output().Gather(max_bytes, views, extents), plus one step: when
// everything gathered is plain reply bytes (a RETR's final "." that its
// checkpoint just released), the session first answers the commands
// pipelined behind it (Resume), so "." and the next reply and body leave
// in one send instead of two. Errors as Gather's.
absl::Status GatherSessionOutput(
    core::Session& session, size_t max_bytes,
    std::vector<absl::string_view>* views,
    std::vector<core::OutputQueue::FileExtent>* extents);

class GatheredSender {
 public:
  // kSendmsg: sendmsg with MSG_DONTWAIT | MSG_NOSIGNAL, and MSG_MORE
  // before a sendfile; an fd that is not a socket (ENOTSOCK) gets writev
  // from then on. kWritev: writev (any fd; SIGPIPE must be ignored).
  enum class Syscall { kWritev, kSendmsg };

  // `use_sendfile` false: every view goes out with writev/sendmsg.
  GatheredSender(Syscall syscall, bool use_sendfile)
      : syscall_(syscall), use_sendfile_(use_sendfile) {}

  struct Result {
    size_t sent = 0;  // octets the kernel took, from the front
    enum class Stop {
      kAll,        // everything went out
      kBlocked,    // the send buffer is full: wait for POLLOUT
      kFailed,     // the connection broke (EPIPE, ECONNRESET, ...)
      kFileShrunk  // sendfile met the file's end: the mailbox shrank
    } stop = Stop::kAll;
  };

  // Sends views[i] in order; extents[i] (or none, if `extents` is empty)
  // says where views[i] also lies in a file. The fd must be non-blocking.
  Result Send(int fd, absl::Span<const absl::string_view> views,
              absl::Span<const core::OutputQueue::FileExtent> extents);

  // Views below this go out from memory: a syscall and page references
  // cost more than copying a few KiB.
  static constexpr size_t kMinSendfileBytes = 16 * 1024;

 private:
  Syscall syscall_;    // kSendmsg falls back to kWritev on ENOTSOCK
  bool use_sendfile_;  // cleared when the fd refuses sendfile (EINVAL)
  std::vector<iovec> iov_;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_SEND_GATHERED_H_
