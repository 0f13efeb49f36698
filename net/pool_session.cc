#include "net/pool_session.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>

namespace popgate::net {
namespace {

// Gather() rounds in a row that yield no octet (checkpoints resolving,
// Resume() producing nothing yet) before we call it a bug and close, so a
// confused queue can never make the loop spin (as session_process.cc).
constexpr int kMaxEmptyRounds = 1024;

}  // namespace

FlushResult FlushOutput(PoolSession& s, WriteScratch& scratch, bool* wrote) {
  core::OutputQueue& out = s.session.output();
  int empty_rounds = 0;
  while (!out.empty()) {
    scratch.views.clear();
    scratch.extents.clear();
    // An error: a checkpoint or stream failed (stale mailbox during RETR);
    // the session recorded why, and the queue is cleared. Close at once.
    if (!GatherSessionOutput(s.session, kPoolWriteWindowBytes, &scratch.views,
                             &scratch.extents)
             .ok()) {
      return FlushResult::kClose;
    }
    if (scratch.views.empty()) {
      s.session.Resume();
      if (++empty_rounds > kMaxEmptyRounds) return FlushResult::kClose;
      continue;
    }
    empty_rounds = 0;
    // sendmsg rather than writev for MSG_NOSIGNAL: a vanished client is
    // EPIPE, not a signal.
    const GatheredSender::Result result =
        scratch.sender.Send(s.fd.get(), scratch.views, scratch.extents);
    const size_t sent = result.sent;
    const bool blocked =
        result.stop == GatheredSender::Result::Stop::kBlocked;
    const bool failed = result.stop == GatheredSender::Result::Stop::kFailed;
    if (result.stop == GatheredSender::Result::Stop::kFileShrunk) {
      return FlushResult::kClose;  // the client never gets the final dot
    }
    if (sent > 0) {
      *wrote = true;
      out.Consume(sent);
      s.session.Resume();  // driver contract: after every Consume()
    }
    if (failed) {
      s.peer_gone = true;
      return FlushResult::kClose;
    }
    if (blocked) return FlushResult::kBlocked;
  }
  return FlushResult::kDone;
}

ReadResult ReadInput(PoolSession& s, char* buffer, size_t size) {
  const ssize_t n = ::recv(s.fd.get(), buffer, size, MSG_DONTWAIT);
  if (n > 0) {
    // Untrusted: from the socket.
    s.session.Receive(absl::string_view(buffer, static_cast<size_t>(n)));
    // The buffer is shared by every session and may hold a PASS line.
    ::explicit_bzero(buffer, static_cast<size_t>(n));
    return ReadResult::kData;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return ReadResult::kAgain;
  }
  // EOF, reset or another error: the peer is gone for reading. Commands it
  // pipelined before the half-close are still answered (driver contract).
  s.session.ReceiveEof();
  return ReadResult::kEof;
}

}  // namespace popgate::net
