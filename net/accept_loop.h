// The -D master: accepts on every listener with io_uring multishot accept,
// admits or refuses each connection through limits::Admission (popa3d's
// slots plus an optional per-source rate), and then either forks one
// session process per connection (--mode=fork) or hands the socket to a
// pool worker (--mode=pool, pool_supervisor.h). It reaps children and
// releases their slots, and handles SIGTERM/SIGINT/SIGHUP/SIGUSR1 through a
// signalfd read on the same ring.
//
// Threading: single-threaded; Run() owns the process's signal mask (it
// blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGUSR1 so they arrive on the
// signalfd only). Must not be used with other threads alive (signalfd
// semantics, fork).
//
// Privileges: runs as whoever started the daemon (root in production). It
// never parses client bytes: it only reads the peer address the kernel
// reports (and, in pool mode, workers' fixed-size reports, decoded
// strictly). A refused connection costs one getpeername, O(1) table work
// and one close: no fork, no allocation; silent as popa3d unless
// refuse_with_error sends one best-effort "-ERR [SYS/TEMP]" line.
//
// Shutdown: the first SIGTERM/SIGINT closes the listeners and waits for the
// running sessions (fork) or draining workers and then the auth process
// (pool); Run() returns once every child is reaped (no orphans), or once
// drain_timeout has passed and the stragglers got SIGKILL. A second one
// sends SIGTERM to every child: fork mode returns at once, pool mode waits
// (at most PoolSupervisor::kKillGrace, then SIGKILL) for the workers.
// SIGUSR1 logs the admission counters; so does shutdown.
#ifndef POPGATE_NET_ACCEPT_LOOP_H_
#define POPGATE_NET_ACCEPT_LOOP_H_

#include <liburing.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "limits/admission.h"
#include "limits/flood_table.h"
#include "net/address.h"
#include "net/pool_supervisor.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct MasterOptions {
  limits::AdmissionOptions admission;
  // Send "-ERR [SYS/TEMP] Too many connections, try again later" (one
  // non-blocking send) before closing a refused connection.
  bool refuse_with_error = false;
  // After the first SIGTERM, children still running this long get SIGKILL.
  absl::Duration drain_timeout = absl::Seconds(600);
};

// The line refuse_with_error sends.
inline constexpr char kRefusalReply[] =
    "-ERR [SYS/TEMP] Too many connections, try again later\r\n";

// The log line for a refusal: popa3d's texts for its causes
// ("<ip>: per source limit reached", "<ip>: sessions limit reached"), ours
// for the new ones ("<ip>: connection rate limit reached", "<ip>: source
// table full").
std::string AdmissionRefusalLogLine(limits::AdmissionRefusal cause,
                                    absl::string_view host);

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

  // --mode=fork. Takes ownership of `listeners` (non-blocking, listening).
  // Sets up the ring and the signalfd. Errors: the io_uring or signalfd
  // setup errno (e.g. io_uring disabled by sysctl: Unavailable or
  // PermissionDenied).
  static absl::StatusOr<std::unique_ptr<Master>> Create(
      std::vector<UniqueFd> listeners, const MasterOptions& options,
      SessionFn session_fn, HangupFn hangup_fn = nullptr);
  // --mode=pool: as Create, but Run() first starts the auth process and the
  // workers (pool_supervisor.h) and hands connections to them. SIGHUP is
  // forwarded to the auth process and replaces the workers.
  static absl::StatusOr<std::unique_ptr<Master>> CreatePool(
      std::vector<UniqueFd> listeners, const MasterOptions& options,
      PoolOptions pool);
  ~Master();
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Serves until shutdown (see the file comment). With $NOTIFY_SOCKET set
  // (systemd Type=notify) it reports READY=1 once accepting, RELOADING=1 and
  // READY=1 around SIGHUP, and STOPPING=1 at shutdown. OK after a clean
  // shutdown; an error for an unexpected ring failure, or (pool mode) when
  // the auth process or every worker failed to start (Unavailable).
  absl::Status Run();

  size_t children() const { return children_.size(); }
  // Connections refused because no worker took them (pool mode).
  uint64_t refused_no_worker() const { return refused_no_worker_; }
  // Admitted connections the client had already closed when accepted: no
  // session was started for them.
  uint64_t closed_before_start() const { return closed_before_start_; }

 private:
  // user_data layout (64 bits): bits 56..63 the operation kind, bits 0..31
  // the listener index (accept and pause timer) or the worker id (kWorker
  // polls); others unused. Stale CQEs can't be confused: listeners and
  // worker ids are never reused, and cancels are tagged.
  enum class Op : uint8_t {
    kAccept = 1,
    kSignal,
    kPause,
    kCancel,
    kTick,      // pool mode: PoolSupervisor::Tick, once a second
    kDeadline,  // shutdown: drain_timeout (or kill grace) elapsed
    kWorker,    // a worker's channel is readable
  };
  static uint64_t Encode(Op op, uint32_t index) {
    return (static_cast<uint64_t>(op) << 56) | index;
  }
  static Op DecodeOp(uint64_t data) { return static_cast<Op>(data >> 56); }
  static uint32_t DecodeIndex(uint64_t data) {
    return static_cast<uint32_t>(data);
  }

  Master(std::vector<UniqueFd> listeners, const MasterOptions& options,
         SessionFn session_fn, HangupFn hangup_fn);
  absl::Status Init();
  void ArmTick();
  void ArmDeadline(absl::Duration after);
  void ArmWorkerPoll(uint32_t id, int fd);
  void ArmNewWorkerChannels();
  void Refuse(int fd, const SocketAddress& peer, limits::AdmissionRefusal cause,
              bool should_log);
  void LogCounters(absl::string_view when);
  void KillAll(int signal);
  bool AllChildrenGone() const;
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
  // `keep_sighup_blocked`: the auth process takes SIGHUP from a signalfd.
  // `keep_fd`: the child's own connection (fork mode), kept open; every
  // other inherited TCP socket is closed (inherited_fds.h).
  void BecomeChild(bool keep_sighup_blocked = false, int keep_fd = -1);

  std::vector<UniqueFd> listeners_;
  MasterOptions options_;
  limits::Admission admission_;
  // Pool mode only (null in fork mode).
  std::unique_ptr<PoolSupervisor> supervisor_;
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
  __kernel_timespec tick_ts_{};
  __kernel_timespec deadline_ts_{};
  absl::flat_hash_map<pid_t, limits::SlotId> children_;
  absl::Time last_accept_log_ = absl::InfinitePast();
  absl::Time last_no_worker_log_ = absl::InfinitePast();
  uint64_t refused_no_worker_ = 0;
  uint64_t closed_before_start_ = 0;
  int term_signals_ = 0;
  bool stopping_ = false;
  bool done_ = false;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_ACCEPT_LOOP_H_
