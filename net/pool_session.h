// One connection of a --mode=pool worker: its core::Session, its socket and
// the driver's bookkeeping (which polls are armed, which deadlines run),
// plus the two socket operations the worker performs for it: one read into
// the worker-wide buffer, and a non-blocking flush of its output.
//
// Callers: pool_worker.cc only. Threading: the worker's loop thread.
//
// Memory: this is what an idle connection costs (plus the Session's own
// heap: its Impl, line buffer and output queue), so nothing here reserves
// buffers: reads go to the worker's shared buffer, writes gather views of
// the session's output (mailbox mappings) into the worker's scratch
// vectors. Keep new members small; pool_worker_test prints sizeof.
#ifndef POPGATE_NET_POOL_SESSION_H_
#define POPGATE_NET_POOL_SESSION_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/session.h"
#include "net/send_gathered.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct PoolSession {
  PoolSession(const core::SessionOptions& options, UniqueFd socket,
              uint64_t master_session_id, std::string peer_host)
      : fd(std::move(socket)),
        session_id(master_session_id),
        remote_host(std::move(peer_host)),
        session(options) {}

  // Members are destroyed bottom-up: `session` (and with it the maildrop
  // its queued streams map) goes first, the socket last.
  UniqueFd fd;
  uint64_t session_id;      // the master's, echoed in WorkerReports
  std::string remote_host;  // numeric, for logs and PAM_RHOST
  std::string mail_path;    // set at login, for CRIT lines
  core::Session session;

  // Deadlines (monotonic). InfiniteFuture = not running.
  absl::Time preauth_deadline = absl::InfiniteFuture();  // until login
  absl::Time read_deadline = absl::InfiniteFuture();     // while POLLIN armed
  absl::Time write_deadline = absl::InfiniteFuture();    // while POLLOUT armed
  absl::Time auth_deadline = absl::InfiniteFuture();     // while auth in flight
  // The key this session has in the worker's deadline set (the earliest of
  // the above when it was last scheduled); InfiniteFuture = not in the set.
  absl::Time scheduled = absl::InfiniteFuture();

  bool read_armed = false;      // a POLLIN poll is in flight
  bool write_armed = false;     // a POLLOUT poll is in flight (send blocked)
  bool auth_in_flight = false;  // an AuthWireRequest awaits its reply
  bool open_in_flight = false;  // the maildrop opener has our open
  // For the end line (see SessionLogFacts).
  bool authenticated = false;
  bool auth_attempted = false;
  bool auth_failure_logged = false;
  bool peer_gone = false;

  // The earliest running deadline.
  absl::Time NextDeadline() const {
    return std::min(std::min(preauth_deadline, read_deadline),
                    std::min(write_deadline, auth_deadline));
  }
};

// Worker-wide scratch for FlushOutput (reused, so no session owns any).
struct WriteScratch {
  // `sendfile`: --sendfile. Every pool session is a TCP socket, which
  // always takes sendfile, so one sender serves them all.
  explicit WriteScratch(bool sendfile)
      : sender(GatheredSender::Syscall::kSendmsg, sendfile) {}

  std::vector<absl::string_view> views;
  std::vector<core::OutputQueue::FileExtent> extents;
  GatheredSender sender;
};

enum class FlushResult {
  kDone,     // the output is empty
  kBlocked,  // the socket's send buffer is full: wait for POLLOUT
  kClose,    // write error (peer_gone set) or the queue failed: close now
};

// Most octets gathered per flush round: larger than a socket send buffer's
// usual free space, so one sendmsg fills it. The memory is mostly the
// mailbox mapping's (views); OutputQueue bounds its own copies by this.
inline constexpr size_t kPoolWriteWindowBytes = 256 * 1024;

// Sends session output (GatherSessionOutput, then scratch.sender: sendmsg
// with MSG_DONTWAIT | MSG_NOSIGNAL, sendfile for Maildir runs) until the
// queue is empty or the socket is full, calling Consume() and Resume() after
// each send (driver contract). Sets *wrote when any byte left.
FlushResult FlushOutput(PoolSession& s, WriteScratch& scratch, bool* wrote);

enum class ReadResult {
  kData,   // bytes were fed to Receive()
  kEof,    // EOF or a read error: ReceiveEof() was called
  kAgain,  // nothing to read (EAGAIN, EINTR)
};

// One recv(MSG_DONTWAIT) into `buffer` (the worker's), fed to the session,
// then wiped: PASS lines pass through it. REQUIRES: wants_input().
ReadResult ReadInput(PoolSession& s, char* buffer, size_t size);

}  // namespace popgate::net

#endif  // POPGATE_NET_POOL_SESSION_H_
