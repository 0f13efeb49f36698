// The -D master: accepts on every listener with io_uring multishot accept,
// admits or refuses each connection through limits::FloodTable, forks one
// session process per admitted connection, reaps children and releases
// their slots, and handles SIGTERM/SIGINT/SIGHUP through a signalfd read on
// the same ring.
//
// Threading: single-threaded; Run() owns the process's signal mask (it
// blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP so they arrive on the signalfd
// only). Must not be used with other threads alive (signalfd semantics,
// fork).
//
// Privileges: runs as whoever started the daemon (root in production). It
// never parses client bytes: it only reads the peer address the kernel
// reports. A refused connection costs one getpeername, one hash lookup and
// one close: no fork, no allocation, no bytes sent (popa3d is silent too).
//
// Shutdown: the first SIGTERM/SIGINT closes the listeners and waits for the
// running sessions to finish; Run() returns once every child is reaped (no
// orphans). A second one sends SIGTERM to every session and returns at once.
#ifndef POPGATE_NET_ACCEPT_LOOP_H_
#define POPGATE_NET_ACCEPT_LOOP_H_

#include <liburing.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "limits/flood_table.h"
#include "net/address.h"
#include "net/unique_fd.h"

namespace popgate::net {

class Master {
 public:
  // Runs in the forked child with the accepted socket (blocking mode) and
  // the peer; the return value is the child's exit status. The child has
  // already closed the ring, the signalfd and the listeners, restored the
  // signal mask, and logged "Session from <ip>".
  using SessionFn = std::function<int(int fd, const SocketAddress& peer)>;
  // Runs in the master on SIGHUP (e.g. re-read a passwd-file, so sessions
  // forked afterwards see the new accounts). May be empty.
  using HangupFn = std::function<void()>;

  // How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM before the
  // accept is re-armed: long enough not to spin on a full fd table, short
  // enough that clients barely notice (they wait in the backlog).
  static constexpr absl::Duration kAcceptPause = absl::Milliseconds(100);
  // At most one accept-error log line per this interval.
  static constexpr absl::Duration kAcceptLogInterval = absl::Seconds(10);

  // Takes ownership of `listeners` (non-blocking, listening). Sets up the
  // ring and the signalfd. Errors: the io_uring or signalfd setup errno
  // (e.g. io_uring disabled by sysctl: Unavailable/PermissionDenied).
  static absl::StatusOr<std::unique_ptr<Master>> Create(
      std::vector<UniqueFd> listeners, const limits::FloodOptions& flood,
      SessionFn session_fn, HangupFn hangup_fn = nullptr);
  ~Master();
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Serves until shutdown (see the file comment). OK after a clean
  // shutdown; an error only for an unexpected ring failure.
  absl::Status Run();

  size_t children() const { return children_.size(); }

 private:
  // user_data layout (64 bits): bits 56..63 the operation kind, bits 0..31
  // the listener index (accept and pause timer); others unused. Stale CQEs
  // can't be confused: listeners are never reused, and cancels are tagged.
  enum class Op : uint8_t { kAccept = 1, kSignal, kPause, kCancel };
  static uint64_t Encode(Op op, uint32_t index) {
    return (static_cast<uint64_t>(op) << 56) | index;
  }
  static Op DecodeOp(uint64_t data) { return static_cast<Op>(data >> 56); }
  static uint32_t DecodeIndex(uint64_t data) {
    return static_cast<uint32_t>(data);
  }

  Master(std::vector<UniqueFd> listeners, const limits::FloodOptions& flood,
         SessionFn session_fn, HangupFn hangup_fn);
  absl::Status Init();
  io_uring_sqe* GetSqe();
  void ArmAccept(uint32_t index);
  void ArmPause(uint32_t index);
  void ArmSignalRead();
  void HandleAccept(uint32_t index, const io_uring_cqe& cqe);
  void HandleConnection(int fd);
  void HandleSignals(int res);
  void Reap();
  void BeginShutdown();
  void KillChildren();
  // In the forked child: drop every master resource without touching the
  // parent's shared state (no io_uring calls beyond unmapping our copy).
  void BecomeChild();

  std::vector<UniqueFd> listeners_;
  limits::FloodTable table_;
  SessionFn session_fn_;
  HangupFn hangup_fn_;
  io_uring ring_{};
  bool ring_ready_ = false;
  UniqueFd signal_fd_;
  sigset_t old_mask_{};
  bool mask_set_ = false;
  // The master's scheduling weight while it runs (nice -10), and the one
  // sessions return to after fork.
  static constexpr int kMasterNice = -10;
  int base_nice_ = 0;
  bool nice_raised_ = false;
  // The signalfd read target; the kernel writes here until the CQE, so it
  // lives in the (heap-allocated, never moved) Master.
  signalfd_siginfo siginfo_[8]{};
  __kernel_timespec pause_ts_{};
  absl::flat_hash_map<pid_t, limits::SlotId> children_;
  absl::Time last_accept_log_ = absl::InfinitePast();
  int term_signals_ = 0;
  bool stopping_ = false;
  bool done_ = false;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_ACCEPT_LOOP_H_
