#include "net/send_gathered.h"

#include <errno.h>
#include <limits.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

namespace popgate::net {

absl::Status GatherSessionOutput(
    core::Session& session, size_t max_bytes,
    std::vector<absl::string_view>* views,
    std::vector<core::OutputQueue::FileExtent>* extents) {
  core::OutputQueue& out = session.output();
  absl::Status status = out.Gather(max_bytes, views, extents);
  if (!status.ok() || views->empty() || out.has_stream_or_checkpoint()) {
    return status;
  }
  const size_t before = out.buffered_bytes();
  session.Resume();
  if (out.buffered_bytes() == before && !out.has_stream_or_checkpoint()) {
    return status;  // nothing was waiting
  }
  // Gather again: the same octets first, then what Resume() queued.
  views->clear();
  extents->clear();
  return out.Gather(max_bytes, views, extents);
}

GatheredSender::Result GatheredSender::Send(
    int fd, absl::Span<const absl::string_view> views,
    absl::Span<const core::OutputQueue::FileExtent> extents) {
  Result result;
  auto from_file = [&](size_t i) {
    return use_sendfile_ && i < extents.size() && extents[i].fd >= 0 &&
           views[i].size() >= kMinSendfileBytes;
  };
  size_t i = 0;
  while (i < views.size()) {
    if (from_file(i)) {
      off_t offset = static_cast<off_t>(extents[i].offset);
      const size_t want = views[i].size();
      const ssize_t n = ::sendfile(fd, extents[i].fd, &offset, want);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          result.stop = Result::Stop::kBlocked;
        } else if (errno == EINVAL || errno == ENOSYS ||
                   errno == EOPNOTSUPP) {
          use_sendfile_ = false;  // this fd cannot: write from memory
          continue;
        } else {
          result.stop = Result::Stop::kFailed;
        }
        return result;
      }
      if (n == 0) {
        // The file ends before the octets we mapped: truncated under us.
        result.stop = Result::Stop::kFileShrunk;
        return result;
      }
      result.sent += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < want) {
        result.stop = Result::Stop::kBlocked;
        return result;
      }
      ++i;
      continue;
    }
    // A run of views from memory, up to the next file one, IOV_MAX at most.
    iov_.clear();
    size_t batch_bytes = 0;
    size_t next = i;
    while (next < views.size() && iov_.size() < IOV_MAX && !from_file(next)) {
      iov_.push_back(
          iovec{const_cast<char*>(views[next].data()), views[next].size()});
      batch_bytes += views[next].size();
      ++next;
    }
    ssize_t n;
    if (syscall_ == Syscall::kSendmsg) {
      msghdr msg{};
      msg.msg_iov = iov_.data();
      msg.msg_iovlen = iov_.size();
      // More follows at once (a body from the file, or the next IOV_MAX
      // views): let TCP put these octets (the final dot, the next "+OK")
      // into the body's first segment rather than a segment of their own.
      // The send right after pushes both.
      const int more = next < views.size() ? MSG_MORE : 0;
      n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL | more);
      if (n < 0 && errno == ENOTSOCK) {
        syscall_ = Syscall::kWritev;  // a pipe (inetd): writev from now on
        continue;
      }
    } else {
      n = ::writev(fd, iov_.data(), static_cast<int>(iov_.size()));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      result.stop = errno == EAGAIN || errno == EWOULDBLOCK
                        ? Result::Stop::kBlocked
                        : Result::Stop::kFailed;  // EPIPE, ECONNRESET, ...
      return result;
    }
    result.sent += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < batch_bytes) {
      result.stop = Result::Stop::kBlocked;  // partial: the buffer is full
      return result;
    }
    i = next;
  }
  return result;
}

}  // namespace popgate::net
