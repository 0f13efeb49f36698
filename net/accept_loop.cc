#include "net/accept_loop.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "net/daemon.h"
#include "net/inherited_fds.h"
#include "net/listener.h"
#include "net/ring.h"
#include "net/sd_notify.h"

namespace popgate::net {
namespace {

using core::Severity;

// Ring size: one multishot accept per listener, one signalfd read, one pause
// timer per listener and a few cancels. 256 leaves room for many listeners.
constexpr unsigned kRingEntries = 256;

sigset_t MasterSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  return set;
}

__kernel_timespec KernelTimespec(absl::Duration d) {
  __kernel_timespec ts{};
  ts.tv_sec = absl::ToInt64Seconds(d);
  ts.tv_nsec = absl::ToInt64Nanoseconds(d - absl::Seconds(ts.tv_sec));
  return ts;
}

// A client that closed before we got to it (a connect-and-close flood, a
// port scan) has nothing to serve. Peeking costs one syscall; serving it
// would cost a fork (fork mode) or a hand-off, a greeting, a read and a
// report (pool mode). Bytes waiting, or none yet, mean a live client: a
// pipelining client that already half-closed still has its commands queued
// ahead of the EOF.
bool PeerAlreadyClosed(int fd) {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// Best effort: the service manager is optional, and a failure to tell it
// something must not stop the daemon.
void Notify(absl::string_view state) {
  NotifyServiceManager(state).IgnoreError();
}

}  // namespace

std::string AdmissionRefusalLogLine(limits::AdmissionRefusal cause,
                                    absl::string_view host) {
  switch (cause) {
    case limits::AdmissionRefusal::kSourceSessions:
      return limits::RefusalMessage(limits::RefusalCause::kPerSource, host);
    case limits::AdmissionRefusal::kGlobalSessions:
      return limits::RefusalMessage(limits::RefusalCause::kGlobal, host);
    case limits::AdmissionRefusal::kSourceRate:
      return absl::StrCat(host, ": connection rate limit reached");
    case limits::AdmissionRefusal::kTableFull:
      return absl::StrCat(host, ": source table full");
    case limits::AdmissionRefusal::kNone:
    case limits::AdmissionRefusal::kCount:
      break;
  }
  return absl::StrCat(host, ": refused");
}

Master::Master(std::vector<UniqueFd> listeners, const MasterOptions& options,
               SessionFn session_fn, HangupFn hangup_fn)
    : listeners_(std::move(listeners)),
      options_(options),
      admission_(options.admission),
      session_fn_(std::move(session_fn)),
      hangup_fn_(std::move(hangup_fn)) {
  pause_ts_ = KernelTimespec(kAcceptPause);
  tick_ts_ = KernelTimespec(absl::Seconds(1));
}

absl::StatusOr<std::unique_ptr<Master>> Master::Create(
    std::vector<UniqueFd> listeners, const MasterOptions& options,
    SessionFn session_fn, HangupFn hangup_fn) {
  std::unique_ptr<Master> master(new Master(std::move(listeners), options,
                                            std::move(session_fn),
                                            std::move(hangup_fn)));
  master->children_.reserve(options.admission.flood.max_sessions);
  absl::Status st = master->Init();
  if (!st.ok()) return st;
  return master;
}

absl::StatusOr<std::unique_ptr<Master>> Master::CreatePool(
    std::vector<UniqueFd> listeners, const MasterOptions& options,
    PoolOptions pool) {
  std::unique_ptr<Master> master(
      new Master(std::move(listeners), options, nullptr, nullptr));
  Master* self = master.get();
  // The Master is heap-allocated and outlives the supervisor it owns, so
  // both callbacks may keep `self`.
  master->supervisor_ = std::make_unique<PoolSupervisor>(
      std::move(pool),
      [self](bool auth_process) { self->BecomeChild(auth_process); },
      [self](limits::SlotId slot) {
        self->admission_.Release(slot, MonotonicNow());
      });
  absl::Status st = master->Init();
  if (!st.ok()) return st;
  return master;
}

absl::Status Master::Init() {
  // Block the signals first, then open the signalfd: a signal that arrives
  // in between stays pending and is read from the fd, never lost.
  const sigset_t set = MasterSignals();
  if (::sigprocmask(SIG_BLOCK, &set, &old_mask_) != 0) {
    return absl::ErrnoToStatus(errno, "sigprocmask");
  }
  mask_set_ = true;
  signal_fd_.Reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) return absl::ErrnoToStatus(errno, "signalfd");
  const int ret = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (ret < 0) return absl::ErrnoToStatus(-ret, "io_uring_queue_init");
  ring_ready_ = true;
  // The master is one process among hundreds of sessions hashing passwords;
  // at the default weight the scheduler runs it so rarely under load that
  // accepts wait and exited sessions stay unreaped (holding their slots) for
  // seconds. It does O(1) work per event, so a higher weight costs the
  // sessions little. Best effort: needs CAP_SYS_NICE (root has it).
  // Not in pool mode: there the master is one of N + 2 processes, and a
  // master that outweighs the workers ~9:1 accepts a connect flood faster
  // than they can serve the sessions already running.
  base_nice_ = ::getpriority(PRIO_PROCESS, 0);
  if (!supervisor_ &&
      ::setpriority(PRIO_PROCESS, 0, kMasterNice) == 0) {
    nice_raised_ = true;
  }
  return absl::OkStatus();
}

Master::~Master() {
  // Channels first: workers see EOF and drain rather than outlive us with
  // a master channel no one reads.
  supervisor_.reset();
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (mask_set_) ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
}

io_uring_sqe* Master::GetSqe() {
  // With a few requests in flight per listener and worker, a full SQ
  // happens only with hundreds of listeners.
  return GetSqeFlushingIfFull(&ring_);
}

void Master::ArmAccept(uint32_t index) {
  if (stopping_ || !listeners_[index]) return;
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) {
    ArmPause(index);
    return;
  }
  // No sockaddr: a multishot accept has one address buffer for all its
  // completions, so the master asks getpeername() per connection instead.
  io_uring_prep_multishot_accept(sqe, listeners_[index].get(), nullptr, nullptr,
                                 SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Encode(Op::kAccept, index));
}

void Master::ArmPause(uint32_t index) {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;  // unreachable in practice; see GetSqe()
  io_uring_prep_timeout(sqe, &pause_ts_, 0, 0);
  io_uring_sqe_set_data64(sqe, Encode(Op::kPause, index));
}

void Master::ArmSignalRead() {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;
  io_uring_prep_read(sqe, signal_fd_.get(), siginfo_, sizeof(siginfo_), 0);
  io_uring_sqe_set_data64(sqe, Encode(Op::kSignal, 0));
}

void Master::ArmTick() {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;
  io_uring_prep_timeout(sqe, &tick_ts_, 0, 0);
  io_uring_sqe_set_data64(sqe, Encode(Op::kTick, 0));
}

void Master::ArmDeadline(absl::Duration after) {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;
  // One deadline timespec: a later ArmDeadline replaces the value, and the
  // earlier timer (already armed with its copy) still fires harmlessly.
  deadline_ts_ = KernelTimespec(after);
  io_uring_prep_timeout(sqe, &deadline_ts_, 0, 0);
  io_uring_sqe_set_data64(sqe, Encode(Op::kDeadline, 0));
  // The kernel copies the timespec at submission; submit now so the next
  // ArmDeadline can't overwrite it first.
  io_uring_submit(&ring_);
}

void Master::ArmWorkerPoll(uint32_t id, int fd) {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;  // unreachable in practice; see GetSqe()
  // One-shot readiness, re-armed after each drain: a worker gets at most
  // one poll in flight, and a dead one completes at once with POLLHUP.
  io_uring_prep_poll_add(sqe, fd, POLLIN);
  io_uring_sqe_set_data64(sqe, Encode(Op::kWorker, id));
}

void Master::ArmNewWorkerChannels() {
  for (const auto& [id, fd] : supervisor_->TakeNewChannels()) {
    ArmWorkerPoll(id, fd);
  }
}

absl::Status Master::Run() {
  if (supervisor_) {
    // Listeners are bound (connections wait in the backlog); start the
    // pool before the first accept so none is refused for want of workers.
    if (absl::Status st = supervisor_->Start(MonotonicNow()); !st.ok()) {
      supervisor_->BeginShutdown(MonotonicNow());
      supervisor_->SignalAll(SIGKILL);
      return st;
    }
    ArmNewWorkerChannels();
    ArmTick();
  }
  for (uint32_t i = 0; i < listeners_.size(); ++i) ArmAccept(i);
  ArmSignalRead();
  io_uring_submit(&ring_);
  Notify("READY=1");
  while (!done_) {
    const int ret = io_uring_submit_and_wait(&ring_, 1);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      return absl::ErrnoToStatus(-ret, "io_uring_submit_and_wait");
    }
    // Reap before admitting: under a flood the accept completions queue
    // ahead of the signalfd read, and every exited session not yet reaped
    // holds a table slot (and a zombie). One WNOHANG waitpid per batch.
    // (Pool workers rarely exit; SIGCHLD covers them.)
    if (!children_.empty()) Reap();
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      const io_uring_cqe c = *cqe;  // handlers may submit; copy first
      const uint32_t index = DecodeIndex(c.user_data);
      switch (DecodeOp(c.user_data)) {
        case Op::kAccept:
          HandleAccept(index, c);
          break;
        case Op::kSignal:
          HandleSignals(c.res);
          break;
        case Op::kPause:
          // -ETIME: the pause elapsed. -ECANCELED: shutdown.
          if (c.res == -ETIME) ArmAccept(index);
          break;
        case Op::kCancel:
          break;
        case Op::kTick:
          if (supervisor_ && !done_) {
            supervisor_->Tick(MonotonicNow());
            ArmNewWorkerChannels();
            ArmTick();
          }
          break;
        case Op::kDeadline:
          if (c.res == -ETIME && stopping_ && !AllChildrenGone()) {
            core::Log(Severity::kNotice,
                      "Drain deadline passed: killing the remaining children");
            KillAll(SIGKILL);
          }
          break;
        case Op::kWorker:
          if (supervisor_ && c.res >= 0) {
            const int fd = supervisor_->DrainReports(index, MonotonicNow());
            if (fd >= 0) ArmWorkerPoll(index, fd);
          }
          break;
      }
      if (stopping_ && AllChildrenGone()) done_ = true;
      if (done_) break;
    }
    io_uring_cq_advance(&ring_, seen);
  }
  LogCounters("at exit");
  return absl::OkStatus();
}

bool Master::AllChildrenGone() const {
  return children_.empty() && (!supervisor_ || supervisor_->finished());
}

void Master::LogCounters(absl::string_view when) {
  using limits::AdmissionRefusal;
  std::string line = absl::StrCat("Connections ", when, ": ",
                                  admission_.admitted(), " admitted");
  for (AdmissionRefusal cause :
       {AdmissionRefusal::kSourceRate, AdmissionRefusal::kSourceSessions,
        AdmissionRefusal::kGlobalSessions, AdmissionRefusal::kTableFull}) {
    absl::StrAppend(&line, ", ", admission_.refusals(cause), " refused (",
                    limits::AdmissionRefusalName(cause), ")");
  }
  absl::StrAppend(&line, ", ", closed_before_start_,
                  " closed by the client before a session started");
  if (supervisor_) {
    absl::StrAppend(&line, ", ", refused_no_worker_, " refused (no worker); ",
                    supervisor_->sessions(), " sessions in ",
                    supervisor_->live_workers(), " workers; PASS ",
                    supervisor_->auth_successes(), " ok, ",
                    supervisor_->auth_failures(), " failed");
  } else {
    absl::StrAppend(&line, "; ", children_.size(), " sessions");
  }
  core::Log(Severity::kInfo, line);
}

void Master::Refuse(int fd, const SocketAddress& peer,
                    limits::AdmissionRefusal cause, bool should_log) {
  if (options_.refuse_with_error) {
    // One try, never blocking and never raising SIGPIPE: the line fits in
    // any empty socket buffer, and a client that reset already loses
    // nothing.
    (void)!::send(fd, kRefusalReply, sizeof(kRefusalReply) - 1,
                  MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  if (should_log) {
    core::Log(Severity::kNotice,
              AdmissionRefusalLogLine(cause, FormatHost(peer)));
  }
}

void Master::HandleAccept(uint32_t index, const io_uring_cqe& cqe) {
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  if (cqe.res >= 0) {
    HandleConnection(cqe.res);
    if (!more) ArmAccept(index);  // the kernel ended the multishot: re-arm
    return;
  }
  if (more || stopping_) return;  // the multishot is still armed, or closing
  const int err = -cqe.res;
  if (err == ECANCELED) return;
  // ECONNABORTED and friends are one client's problem, but re-arming at
  // once on a persistent error would spin: pause all the same. The log
  // line is rate-limited, or a full fd table would log 10 lines a second.
  const absl::Time now = MonotonicNow();
  if (now - last_accept_log_ >= kAcceptLogInterval) {
    last_accept_log_ = now;
    const bool resources =
        err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    core::Logf(resources ? Severity::kCrit : Severity::kNotice,
               "accept: %s (pausing %s)", strerror(err),
               absl::FormatDuration(kAcceptPause));
  }
  // popa3d `continue`s at once ("prefers eating CPU to dying"); we pause so
  // an fd shortage can't turn into a busy loop.
  ArmPause(index);
}

void Master::HandleConnection(int raw_fd) {
  UniqueFd fd(raw_fd);
  absl::StatusOr<SocketAddress> peer = PeerAddress(fd.get());
  if (!peer.ok()) return;  // reset before we looked: nothing to serve
  const absl::Time now = MonotonicNow();
  const limits::AdmissionResult admit =
      admission_.Admit(SourceKeyOf(*peer), now);
  if (!admit.admitted) {
    // Silent refusal by default, as popa3d: the client sees EOF. The log
    // line is rate-limited by the table (one per cause per interval).
    Refuse(fd.get(), *peer, admit.cause, admit.should_log);
    return;
  }
  if (PeerAlreadyClosed(fd.get())) {
    // As a session that ended at once: the admission policy (a minimum
    // slot hold, the rate bucket) sees exactly what it would have.
    admission_.Release(admit.slot, now);
    ++closed_before_start_;
    return;
  }
  if (supervisor_) {
    // The worker now holds its own copy; ours closes on return.
    if (supervisor_->Dispatch(fd.get(), *peer, admit.slot)) return;
    admission_.Release(admit.slot, now);
    ++refused_no_worker_;
    if (options_.refuse_with_error) {
      (void)!::send(fd.get(), kRefusalReply, sizeof(kRefusalReply) - 1,
                    MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    // While stopping, every worker drains: a connection accepted in the
    // same batch as SIGTERM is expected to land here, not worth a CRIT.
    if (!stopping_ && now - last_no_worker_log_ >= kAcceptLogInterval) {
      last_no_worker_log_ = now;
      core::Logf(Severity::kCrit, "%s: no worker available (%d refused so far)",
                 FormatHost(*peer), refused_no_worker_);
    }
    return;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    core::Logf(Severity::kCrit, "%s: fork: %s", FormatHost(*peer),
               strerror(err));
    admission_.Release(admit.slot, now);
    return;
  }
  if (pid == 0) {
    const int session_fd = fd.Release();
    BecomeChild(/*keep_sighup_blocked=*/false, session_fd);
    core::Logf(Severity::kInfo, "Session from %s", FormatHost(*peer));
    // The accepted socket is blocking; RunSession switches it.
    const int rc = session_fn_(session_fd, *peer);
    // _exit: no destructors of the parent's objects run in the child.
    ::_exit(rc);
  }
  // Also from this side, so the group exists before any kill(-pid) no
  // matter which process runs first (the usual setpgid race).
  ::setpgid(pid, pid);
  children_[pid] = admit.slot;
}

void Master::BecomeChild(bool keep_sighup_blocked, int keep_fd) {
  // The ring's memory is shared with the parent (MAP_SHARED): the child
  // must never submit or reap on it. Unmapping our copy and closing our fd
  // leaves the parent's ring untouched.
  if (ring_ready_) {
    io_uring_queue_exit(&ring_);
    ring_ready_ = false;
  }
  for (UniqueFd& l : listeners_) l.Reset();
  signal_fd_.Reset();
  // Other clients' connections, accepted by the ring but not yet handed on.
  CloseInheritedConnections(keep_fd);
  // Sessions run at the weight the daemon was started with, not ours.
  if (nice_raised_) ::setpriority(PRIO_PROCESS, 0, base_nice_);
  // Each session is its own process group, so the master can end it with
  // everything it forked (the jailed pre-auth child, auth helpers) with one
  // kill(-pid), and a terminal's ^C reaches only the master (which then
  // drains, rather than every session dying at once).
  ::setpgid(0, 0);
  // Sessions get default signal handling back: SIGTERM ends them, and
  // SIGCHLD is theirs to use (auth helpers). SIGPIPE stays ignored.
  ::signal(SIGCHLD, SIG_DFL);
  if (mask_set_) {
    sigset_t mask = old_mask_;
    if (keep_sighup_blocked) sigaddset(&mask, SIGHUP);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
    mask_set_ = false;
  }
}

void Master::HandleSignals(int res) {
  if (res > 0) {
    const size_t n = static_cast<size_t>(res) / sizeof(signalfd_siginfo);
    bool child = false;
    for (size_t i = 0; i < n && !done_; ++i) {
      switch (siginfo_[i].ssi_signo) {
        case SIGCHLD:
          child = true;
          break;
        case SIGTERM:
        case SIGINT:
          if (++term_signals_ == 1) {
            BeginShutdown();
          } else {
            KillChildren();
          }
          break;
        case SIGHUP:
          if (stopping_) break;
          Notify("RELOADING=1");
          if (supervisor_) {
            // The auth process owns the account source: it reloads on its
            // own SIGHUP. Workers are replaced so none keeps old state.
            supervisor_->Reload(MonotonicNow());
            ArmNewWorkerChannels();
          } else if (hangup_fn_) {
            // Flags are read once at start; only what hangup_fn_ covers
            // (the passwd-file) is reloaded.
            hangup_fn_();
          } else {
            core::Log(Severity::kInfo, "SIGHUP: nothing to reload");
          }
          Notify("READY=1");
          break;
        case SIGUSR1:
          LogCounters("so far");
          break;
        default:
          break;
      }
    }
    if (child) Reap();
  }
  if (stopping_ && AllChildrenGone()) done_ = true;
  if (!done_) ArmSignalRead();
}

void Master::Reap() {
  // signalfd coalesces SIGCHLDs, so reap everything that exited. Bounded:
  // each waitpid() returns a distinct child, and there are at most
  // children_.size() of ours (+ slack for strays).
  const size_t bound = children_.size() + 16 +
                       (supervisor_ ? supervisor_->live_workers() * 2 : 0);
  const absl::Time now = MonotonicNow();
  for (size_t i = 0; i < bound; ++i) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;  // 0: none ready; -1/ECHILD: none left
    if (supervisor_ && supervisor_->OnChildExit(pid, status, now)) {
      // A respawned worker needs its channel polled.
      ArmNewWorkerChannels();
      continue;
    }
    auto it = children_.find(pid);
    if (it == children_.end()) continue;
    admission_.Release(it->second, now);
    children_.erase(it);
    if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM &&
        WTERMSIG(status) != SIGKILL) {
      core::Logf(Severity::kCrit, "Session process %d killed by signal %d", pid,
                 WTERMSIG(status));
    }
  }
}

void Master::BeginShutdown() {
  stopping_ = true;
  Notify("STOPPING=1");
  const size_t running =
      supervisor_ ? supervisor_->sessions() : children_.size();
  core::Logf(Severity::kInfo, "Shutting down: %d session%s still running",
             running, running == 1 ? "" : "s");
  // Cancel the multishot accepts and any pause timers, then close the
  // listeners: new connections get RST from the kernel instead of waiting
  // in a backlog no one drains.
  for (uint32_t i = 0; i < listeners_.size(); ++i) {
    for (Op op : {Op::kAccept, Op::kPause}) {
      io_uring_sqe* sqe = GetSqe();
      if (sqe == nullptr) continue;
      io_uring_prep_cancel64(sqe, Encode(op, i), 0);
      io_uring_sqe_set_data64(sqe, Encode(Op::kCancel, i));
    }
  }
  io_uring_submit(&ring_);
  for (UniqueFd& l : listeners_) l.Reset();
  if (supervisor_) supervisor_->BeginShutdown(MonotonicNow());
  ArmDeadline(options_.drain_timeout);
}

void Master::KillAll(int signal) {
  for (const auto& [pid, slot] : children_) {
    // The whole session group: a session blocked on its pre-auth child must
    // not leave that child holding the connection open.
    if (::kill(-pid, signal) != 0) ::kill(pid, signal);
  }
  if (supervisor_) supervisor_->SignalAll(signal);
}

void Master::KillChildren() {
  if (supervisor_) {
    // Workers end their sessions at once on SIGTERM; wait for them (and
    // the auth process after them), but not longer than the grace.
    core::Logf(Severity::kInfo, "Terminating %d session%s",
               supervisor_->sessions(),
               supervisor_->sessions() == 1 ? "" : "s");
    supervisor_->SignalAll(SIGTERM);
    ArmDeadline(PoolSupervisor::kKillGrace);
    return;
  }
  core::Logf(Severity::kInfo, "Terminating %d session%s", children_.size(),
             children_.size() == 1 ? "" : "s");
  KillAll(SIGTERM);
  done_ = true;
}

}  // namespace popgate::net
