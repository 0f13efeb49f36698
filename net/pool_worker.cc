// The --mode=pool worker loop (contract in pool_worker.h).
//
// Shape (liburing examples/echo-server.c, Redis aeProcessEvents): one ring,
// one-shot IORING_OP_POLL_ADD readiness polls re-armed as needed (POLLIN on
// a session socket while it wants input, POLLOUT while its send buffer is
// full, POLLIN on the master and auth channels and the signalfd, POLLOUT on
// the master channel while reports are queued). The syscalls themselves
// (recv, sendmsg, recvmsg) run on the loop with MSG_DONTWAIT: readiness
// means the kernel holds no buffer of ours, so an idle connection costs no
// read buffer and a closed one needs no wait for in-flight I/O.
//
// Deadlines live in an ordered set keyed by (time, slot); the loop waits for
// completions with io_uring_submit_and_wait_timeout() until the earliest
// one, which does what a single IORING_OP_TIMEOUT would without an SQE or a
// re-arm per change (kernel 5.11+ EXT_ARG; liburing falls back to a timeout
// SQE on older kernels).
//
// Blocking: none on the loop except the mkdir of the state folder after a
// successful auth. open_maildrop() (lock, list, index the mailbox: a lock
// an MDA holds, or a first login on a 1 GB mbox, takes as long as it takes)
// runs on the MaildropOpener's thread; the session waits for its result as
// for an auth reply, the other sessions go on. Mailbox work after the open
// (RETR's checks, the update at QUIT) still runs on the loop.
#include "net/pool_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "net/daemon.h"
#include "net/maildrop_opener.h"
#include "net/pool_protocol.h"
#include "net/pool_session.h"
#include "net/ring.h"
#include "net/session_logging.h"
#include "net/session_process.h"

namespace popgate::net {
namespace {

using core::AuthVerdict;
using core::Severity;

// SQ entries. Each session has at most two polls and two cancels in flight,
// but the SQ only has to hold one loop iteration's submissions: GetSqe()
// submits early when it fills. The CQ (twice this) may overflow under a
// burst; the kernel keeps overflowed CQEs (IORING_FEAT_NODROP).
constexpr unsigned kRingEntries = 1024;
// The one read buffer of the worker. 64 KiB takes a pipelining client's
// whole batch in one recv; it is wiped after each read (PASS lines).
constexpr size_t kReadBufferBytes = 64 * 1024;
// Channel messages handled per readiness event before the poll is re-armed,
// so a busy master can't starve the sessions.
constexpr int kMaxMessagesPerEvent = 64;
// Rounds of Pump() that neither write nor wait before we call it a bug
// (see session_process.cc's kMaxIdleRounds).
constexpr int kMaxIdleRounds = 1024;
// Reports queued while the master's channel is full; past this they are
// dropped (the master then reclaims slots only when the worker exits).
constexpr size_t kMaxQueuedReports = 1 << 16;
// At most one "too many sessions" line per this interval.
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(10);

constexpr char kTooManySessions[] =
    "-ERR [SYS/TEMP] Too many sessions, try again later\r\n";

// Makes <state_dir>/<uid> (0700, ours) and returns it. The worker runs as
// the pool account and owns state_dir, so the sub-folder is ours, not the
// user's; an existing one must be a real directory we own (a planted
// symlink would redirect redo records).
absl::StatusOr<std::string> MakeStateSubdir(const std::string& state_dir,
                                            uid_t uid) {
  std::string path = absl::StrCat(state_dir, "/", uid);
  if (::mkdir(path.c_str(), 0700) == 0) return path;
  if (errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", path));
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", path));
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a directory owned by uid ", ::geteuid()));
  }
  return path;
}

void SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) {
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

class PoolWorker {
 public:
  PoolWorker(const PoolWorkerEnvironment& env, UniqueFd master_channel,
             UniqueFd auth_channel)
      : env_(env),
        master_(std::move(master_channel)),
        auth_(std::move(auth_channel)),
        read_buffer_(new char[kReadBufferBytes]),
        scratch_(env.sendfile) {}
  ~PoolWorker();
  PoolWorker(const PoolWorker&) = delete;
  PoolWorker& operator=(const PoolWorker&) = delete;

  absl::Status Init();
  int Run();

 private:
  // user_data (64 bits): bits 56..63 the Op; for session ops bits 32..55 the
  // slot's generation (low 24 bits) and bits 0..31 the slot index. A slot's
  // generation moves on every close, so a CQE for a closed session (a
  // cancelled poll arriving late) no longer matches and is dropped. The
  // channels and the signalfd use index 0.
  enum class Op : uint8_t {
    kRead = 1,   // POLLIN on a session socket
    kWrite,      // POLLOUT on a session socket
    kMasterIn,   // handoffs
    kMasterOut,  // room for queued reports
    kAuthIn,     // auth replies
    kSignal,     // signalfd
    kCancel,     // completion of a poll remove (ignored)
    kOpened,     // the maildrop opener has results
  };
  static constexpr uint32_t kGenerationMask = (1u << 24) - 1;
  static uint64_t Encode(Op op, uint32_t index, uint32_t generation) {
    return (static_cast<uint64_t>(op) << 56) |
           (static_cast<uint64_t>(generation & kGenerationMask) << 32) | index;
  }
  static Op DecodeOp(uint64_t data) { return static_cast<Op>(data >> 56); }
  static uint32_t DecodeGeneration(uint64_t data) {
    return static_cast<uint32_t>(data >> 32) & kGenerationMask;
  }
  static uint32_t DecodeIndex(uint64_t data) {
    return static_cast<uint32_t>(data);
  }
  // AuthWireRequest::request_id: the full generation above the slot index.
  // A session has at most one request in flight, and a session whose
  // request timed out or failed closes (kTempFailure ends it), so a late
  // reply meets either another generation or auth_in_flight == false.
  static uint64_t RequestId(uint32_t index, uint32_t generation) {
    return (static_cast<uint64_t>(generation) << 32) | index;
  }

  struct Slot {
    uint32_t generation = 0;
    std::unique_ptr<PoolSession> session;
  };

  io_uring_sqe* GetSqe();
  void ArmPoll(int fd, unsigned events, uint64_t data);
  void CancelPoll(uint64_t data);
  PoolSession* Find(uint64_t data);

  void HandleCqe(const io_uring_cqe& cqe);
  void HandleMasterInput();
  void HandleHandoff(UniqueFd fd, const Handoff& handoff);
  void HandleAuthInput();
  void HandleAuthReply(const AuthWireReply& reply);
  void HandleAuthEof();
  void HandleOpened();
  void HandleSignals();

  // Moves the session along: starts a pending auth, flushes output, closes
  // when done, arms the polls it waits on and reschedules its deadline.
  // May end the session (the slot is then free).
  void Pump(uint32_t index);
  void StartAuth(uint32_t index);
  // The auth reply's verdict, or nullopt when it was kOk and the maildrop
  // open was handed to the opener (HandleOpened resolves the session).
  std::optional<AuthVerdict> Authorize(uint32_t index,
                                       const AuthWireReply& reply,
                                       const std::string& user);
  void Resolve(uint32_t index, AuthVerdict verdict,
               std::unique_ptr<mailbox::Maildrop> maildrop);
  void EndSession(uint32_t index);
  void EndAll(const char* why);
  void Reschedule(uint32_t index);
  void ExpireDeadlines();

  void Report(WorkerEvent event, uint64_t session_id);
  void FlushReports();

  const PoolWorkerEnvironment& env_;
  UniqueFd master_;
  UniqueFd auth_;
  UniqueFd signal_fd_;
  io_uring ring_{};
  bool ring_ready_ = false;
  sigset_t old_mask_{};
  bool mask_set_ = false;

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  size_t live_ = 0;
  // (deadline, slot index): the earliest first.
  std::set<std::pair<absl::Time, uint32_t>> deadlines_;
  absl::Time now_;

  std::unique_ptr<char[]> read_buffer_;
  WriteScratch scratch_;
  std::unique_ptr<MaildropOpener> opener_;
  std::deque<std::string> reports_;  // queued while the master's side is full
  bool master_out_armed_ = false;
  bool auth_dead_ = false;
  bool draining_ = false;
  absl::Time drain_deadline_ = absl::InfiniteFuture();
  bool terminate_ = false;
  absl::Time last_refusal_log_ = absl::InfinitePast();
};

absl::Status PoolWorker::Init() {
  // Block first, then open the signalfd: a SIGTERM in between stays pending
  // and is read from the fd (as accept_loop.cc).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (::pthread_sigmask(SIG_BLOCK, &set, &old_mask_) != 0) {
    return absl::InternalError("pthread_sigmask");
  }
  mask_set_ = true;
  signal_fd_.Reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) return absl::ErrnoToStatus(errno, "signalfd");
  // After the mask: the opener's thread inherits it, so SIGTERM stays the
  // signalfd's.
  absl::StatusOr<std::unique_ptr<MaildropOpener>> opener =
      MaildropOpener::Start(env_.open_maildrop);
  if (!opener.ok()) return opener.status();
  opener_ = std::move(*opener);
  const int ret = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (ret < 0) return absl::ErrnoToStatus(-ret, "io_uring_queue_init");
  ring_ready_ = true;
  SetNonBlocking(master_.get());
  SetNonBlocking(auth_.get());
  return absl::OkStatus();
}

PoolWorker::~PoolWorker() {
  // The opener first (it finishes or leaves behind the open in progress and
  // releases results nobody took), then the sessions: their fds may still be
  // watched by the ring, which io_uring_queue_exit() tears down with
  // everything in flight.
  opener_.reset();
  slots_.clear();
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (mask_set_) ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

io_uring_sqe* PoolWorker::GetSqe() { return GetSqeFlushingIfFull(&ring_); }

void PoolWorker::ArmPoll(int fd, unsigned events, uint64_t data) {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) {
    // Unreachable in practice (GetSqe just submitted). Without the poll the
    // session would only wake at its deadline, which still ends it.
    core::Log(Severity::kCrit, "io_uring: no submission entry");
    return;
  }
  io_uring_prep_poll_add(sqe, fd, events);
  io_uring_sqe_set_data64(sqe, data);
}

void PoolWorker::CancelPoll(uint64_t data) {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;  // the stale CQE is ignored either way
  io_uring_prep_poll_remove(sqe, data);
  io_uring_sqe_set_data64(sqe, Encode(Op::kCancel, 0, 0));
}

PoolSession* PoolWorker::Find(uint64_t data) {
  const uint32_t index = DecodeIndex(data);
  if (index >= slots_.size()) return nullptr;
  Slot& slot = slots_[index];
  if ((slot.generation & kGenerationMask) != DecodeGeneration(data)) {
    return nullptr;
  }
  return slot.session.get();
}

int PoolWorker::Run() {
  now_ = MonotonicNow();
  ArmPoll(master_.get(), POLLIN, Encode(Op::kMasterIn, 0, 0));
  ArmPoll(auth_.get(), POLLIN, Encode(Op::kAuthIn, 0, 0));
  ArmPoll(signal_fd_.get(), POLLIN, Encode(Op::kSignal, 0, 0));
  ArmPoll(opener_->ready_fd(), POLLIN, Encode(Op::kOpened, 0, 0));
  while (!terminate_ && !(draining_ && live_ == 0)) {
    absl::Time next = drain_deadline_;
    if (!deadlines_.empty()) next = std::min(next, deadlines_.begin()->first);
    int ret;
    io_uring_cqe* first = nullptr;
    if (next == absl::InfiniteFuture()) {
      ret = io_uring_submit_and_wait(&ring_, 1);
    } else {
      const absl::Duration wait =
          std::max(next - MonotonicNow(), absl::ZeroDuration());
      __kernel_timespec ts{};
      ts.tv_sec = absl::ToInt64Seconds(wait);
      ts.tv_nsec = absl::ToInt64Nanoseconds(wait - absl::Seconds(ts.tv_sec));
      ret = io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
    }
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
        ret != -EBUSY) {
      core::Logf(Severity::kCrit, "io_uring_submit_and_wait: %s",
                 strerror(-ret));
      EndAll("ring failure");
      return 1;
    }
    now_ = MonotonicNow();
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      const io_uring_cqe c = *cqe;  // handlers may submit; copy first
      HandleCqe(c);
    }
    io_uring_cq_advance(&ring_, seen);
    now_ = MonotonicNow();
    ExpireDeadlines();
    if (draining_ && now_ >= drain_deadline_ && live_ > 0) {
      EndAll("Drain timeout");
    }
  }
  if (terminate_) EndAll("Terminating");
  FlushReports();  // best effort: the master may be gone
  return 0;
}

void PoolWorker::HandleCqe(const io_uring_cqe& cqe) {
  switch (DecodeOp(cqe.user_data)) {
    case Op::kRead: {
      PoolSession* s = Find(cqe.user_data);
      if (s == nullptr || !s->read_armed) return;  // stale
      const uint32_t index = DecodeIndex(cqe.user_data);
      s->read_armed = false;
      s->read_deadline = absl::InfiniteFuture();
      // Readable, hung up or failed: recv says which. A spurious wake-up
      // (the session stopped wanting input meanwhile) just re-pumps.
      if (s->session.wants_input()) {
        ReadInput(*s, read_buffer_.get(), kReadBufferBytes);
      }
      Pump(index);
      return;
    }
    case Op::kWrite: {
      PoolSession* s = Find(cqe.user_data);
      if (s == nullptr || !s->write_armed) return;
      s->write_armed = false;
      s->write_deadline = absl::InfiniteFuture();
      Pump(DecodeIndex(cqe.user_data));
      return;
    }
    case Op::kMasterIn:
      HandleMasterInput();
      return;
    case Op::kMasterOut:
      master_out_armed_ = false;
      FlushReports();
      return;
    case Op::kAuthIn:
      HandleAuthInput();
      return;
    case Op::kSignal:
      HandleSignals();
      return;
    case Op::kOpened:
      HandleOpened();
      return;
    case Op::kCancel:
      return;
  }
}

void PoolWorker::HandleMasterInput() {
  if (draining_) return;
  std::string bytes;
  for (int i = 0; i < kMaxMessagesPerEvent; ++i) {
    UniqueFd fd;
    absl::StatusOr<bool> got = ReceiveMessage(master_.get(), &bytes, &fd);
    if (!got.ok()) {
      if (absl::IsUnavailable(got.status())) break;  // EAGAIN: drained
      core::Logf(Severity::kCrit, "master channel: %s",
                 got.status().ToString());
      // A malformed datagram is consumed: read the next. Any other error
      // would repeat forever: treat the channel as closed.
      if (absl::IsInvalidArgument(got.status())) continue;
      got = false;
    }
    if (!*got) {
      // The master is gone or replacing us (SIGHUP): no new sessions; the
      // running ones get drain_timeout to finish.
      draining_ = true;
      drain_deadline_ = now_ + env_.drain_timeout;
      core::Logf(Severity::kInfo, "Draining: %d session%s still running", live_,
                 live_ == 1 ? "" : "s");
      return;
    }
    absl::StatusOr<Handoff> handoff = DecodeHandoff(bytes);
    if (!handoff.ok() || !fd) {
      core::Log(Severity::kCrit, "master channel: malformed handoff");
      if (handoff.ok()) Report(WorkerEvent::kSessionEnded, handoff->session_id);
      continue;
    }
    HandleHandoff(std::move(fd), *handoff);
  }
  ArmPoll(master_.get(), POLLIN, Encode(Op::kMasterIn, 0, 0));
}

void PoolWorker::HandleHandoff(UniqueFd fd, const Handoff& handoff) {
  SetNonBlocking(fd.get());
  if (live_ >= env_.max_sessions) {
    // Best effort: the line fits any fresh socket's send buffer.
    (void)!::send(fd.get(), kTooManySessions, sizeof(kTooManySessions) - 1,
                  MSG_DONTWAIT | MSG_NOSIGNAL);
    fd.Reset();
    if (now_ - last_refusal_log_ >= kRefusalLogInterval) {
      last_refusal_log_ = now_;
      core::Logf(Severity::kNotice, "%s: worker full (%d sessions)",
                 FormatHost(handoff.peer), env_.max_sessions);
    }
    Report(WorkerEvent::kSessionEnded, handoff.session_id);
    return;
  }
  // Replies must never sit in Nagle's buffer waiting for a delayed ACK
  // (see session_process.cc). ENOTSUP on non-TCP sockets (tests) is fine.
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  std::string host = FormatHost(handoff.peer);
  core::Logf(Severity::kInfo, "Session from %s", host);
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  slot.session = std::make_unique<PoolSession>(
      env_.session_options, std::move(fd), handoff.session_id, std::move(host));
  slot.session->preauth_deadline = now_ + env_.preauth_timeout;
  ++live_;
  Pump(index);  // the greeting
}

void PoolWorker::Pump(uint32_t index) {
  Slot& slot = slots_[index];
  PoolSession& s = *slot.session;
  // Bounded: each round starts an auth (at most max_auth_attempts per
  // session), writes, waits, ends the session, or calls Resume(); rounds
  // that only Resume() without producing a byte are capped.
  int idle_rounds = 0;
  for (;;) {
    if (s.session.pending_auth() && !s.auth_in_flight && !s.open_in_flight &&
        !s.session.closing()) {
      StartAuth(index);  // may resolve at once (kTempFailure)
      continue;
    }
    if (!s.write_armed && !s.session.output().empty()) {
      bool wrote = false;
      const FlushResult result = FlushOutput(s, scratch_, &wrote);
      if (wrote) idle_rounds = 0;
      if (result == FlushResult::kClose) {
        EndSession(index);
        return;
      }
      if (result == FlushResult::kBlocked) {
        s.write_armed = true;
        s.write_deadline = now_ + env_.write_timeout;
        ArmPoll(s.fd.get(), POLLOUT,
                Encode(Op::kWrite, index, slot.generation));
      }
    }
    if (s.session.closing()) {
      if (s.session.output().empty()) {
        EndSession(index);
        return;
      }
      break;  // the last replies wait for POLLOUT
    }
    if (s.session.wants_input()) {
      if (!s.read_armed) {
        s.read_armed = true;
        // popa3d's per-read idle timeout, from the start of each wait.
        s.read_deadline = now_ + env_.idle_timeout;
        ArmPoll(s.fd.get(), POLLIN, Encode(Op::kRead, index, slot.generation));
      }
      break;
    }
    if (s.auth_in_flight || s.open_in_flight || s.write_armed) break;
    // No output, no wait: after EOF or behind released backpressure, let
    // the session work through what it has buffered (driver contract).
    if (++idle_rounds > kMaxIdleRounds) {
      core::Log(Severity::kCrit, "session made no progress; closing");
      s.session.Timeout();
      EndSession(index);
      return;
    }
    s.session.Resume();
  }
  Reschedule(index);
}

void PoolWorker::StartAuth(uint32_t index) {
  Slot& slot = slots_[index];
  PoolSession& s = *slot.session;
  s.auth_attempted = true;
  const core::AuthRequest& pending = *s.session.pending_auth();
  if (auth_dead_) {
    core::Log(Severity::kCrit,
              "Authentication backend failure: auth process gone");
    Resolve(index, AuthVerdict::kTempFailure, nullptr);
    return;
  }
  AuthWireRequest request;
  request.request_id = RequestId(index, slot.generation);
  request.remote_host = s.remote_host;
  request.user = pending.user;
  request.password = pending.password;
  std::string wire = EncodeAuthRequest(request);
  const absl::Status sent = SendMessage(auth_.get(), wire);
  // The copies die here; explicit_bzero can't be optimised away.
  ::explicit_bzero(request.password.data(), request.password.size());
  ::explicit_bzero(wire.data(), wire.size());
  if (!sent.ok()) {
    // EAGAIN: the auth process is behind by a whole socket buffer; failing
    // fast is better than queueing passwords in an unprivileged process.
    core::Logf(Severity::kCrit, "Authentication backend failure: %s",
               sent.message());
    Resolve(index, AuthVerdict::kTempFailure, nullptr);
    return;
  }
  s.auth_in_flight = true;
  s.auth_deadline = now_ + env_.auth_timeout;
}

void PoolWorker::HandleAuthInput() {
  std::string bytes;
  for (int i = 0; i < kMaxMessagesPerEvent; ++i) {
    UniqueFd fd;  // none expected; one that arrives is closed
    absl::StatusOr<bool> got = ReceiveMessage(auth_.get(), &bytes, &fd);
    if (!got.ok()) {
      if (absl::IsUnavailable(got.status())) break;
      core::Logf(Severity::kCrit, "auth channel: %s", got.status().ToString());
      if (absl::IsInvalidArgument(got.status())) continue;  // as above
      got = false;
    }
    if (!*got) {
      HandleAuthEof();
      return;  // not re-armed: EOF stays EOF
    }
    absl::StatusOr<AuthWireReply> reply = DecodeAuthReply(bytes);
    ::explicit_bzero(bytes.data(), bytes.size());
    if (!reply.ok()) {
      core::Logf(Severity::kCrit, "auth channel: %s",
                 reply.status().ToString());
      continue;
    }
    HandleAuthReply(*reply);
  }
  ArmPoll(auth_.get(), POLLIN, Encode(Op::kAuthIn, 0, 0));
}

void PoolWorker::HandleAuthEof() {
  auth_dead_ = true;
  core::Log(Severity::kCrit, "auth process gone: logins fail until restart");
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    PoolSession* s = slots_[i].session.get();
    if (s == nullptr || !s->auth_in_flight) continue;
    Resolve(i, AuthVerdict::kTempFailure, nullptr);
    if (slots_[i].session) Pump(i);
  }
}

void PoolWorker::HandleAuthReply(const AuthWireReply& reply) {
  const uint32_t index = static_cast<uint32_t>(reply.request_id);
  const uint32_t generation = static_cast<uint32_t>(reply.request_id >> 32);
  if (index >= slots_.size() || slots_[index].generation != generation) return;
  PoolSession* s = slots_[index].session.get();
  // Late: the session timed out waiting, or closed.
  if (s == nullptr || !s->auth_in_flight || !s->session.pending_auth()) return;
  const std::string user = s->session.pending_auth()->user;
  const std::optional<AuthVerdict> verdict = Authorize(index, reply, user);
  if (!verdict.has_value()) {
    // The opener has it; the pre-auth deadline still bounds the wait.
    s->auth_in_flight = false;
    s->auth_deadline = absl::InfiniteFuture();
    s->open_in_flight = true;
    Reschedule(index);
    return;
  }
  Resolve(index, *verdict, nullptr);
  Pump(index);
}

std::optional<AuthVerdict> PoolWorker::Authorize(uint32_t index,
                                                 const AuthWireReply& reply,
                                                 const std::string& user) {
  PoolSession& s = *slots_[index].session;
  switch (reply.verdict) {
    case AuthWireVerdict::kDenied:
      LogAuthDenied(user, reply.known_user);
      Report(WorkerEvent::kAuthFailed, s.session_id);
      return AuthVerdict::kDenied;
    case AuthWireVerdict::kTempFailure:
      return AuthVerdict::kTempFailure;  // the auth process logged why
    case AuthWireVerdict::kOk:
      break;
  }
  // The auth process refuses root already; this is defence in depth.
  if (reply.uid == 0) {
    LogAuthDenied(user, true);
    Report(WorkerEvent::kAuthFailed, s.session_id);
    return AuthVerdict::kDenied;
  }
  Report(WorkerEvent::kAuthSucceeded, s.session_id);
  core::auth::AuthenticatedUser account;
  account.name = reply.name;
  account.uid = reply.uid;
  account.gid = reply.gid;
  account.home = reply.home;
  absl::StatusOr<std::string> path = env_.mail_path(account);
  if (!path.ok()) {
    core::Logf(Severity::kNotice,
               "Failed or refused to load mailbox for %s: %s", user,
               path.status().message());
    return AuthVerdict::kLoadFailed;
  }
  s.mail_path = *path;
  absl::StatusOr<std::string> state =
      MakeStateSubdir(env_.state_dir, reply.uid);
  if (!state.ok()) {
    core::Logf(Severity::kCrit, "State directory: %s",
               state.status().message());
    return AuthVerdict::kTempFailure;
  }
  s.authenticated = true;
  core::Logf(Severity::kInfo, "Authentication passed for %s", user);
  // Untrusted from here: the mailbox contents. open_maildrop refuses a
  // mailbox the authenticated uid does not own (a hard link to another
  // user's mailbox in this user's mail path).
  MaildropOpener::Request request;
  request.tag = Encode(Op::kOpened, index, slots_[index].generation);
  request.path = *path;
  request.state_dir = *state;
  request.owner = reply.uid;
  opener_->Submit(std::move(request));
  return std::nullopt;
}

void PoolWorker::HandleOpened() {
  for (MaildropOpener::Result& result : opener_->TakeResults()) {
    PoolSession* s = Find(result.tag);
    // The session ended while its mailbox was being opened: the maildrop
    // (and its lock) is released as `result` goes.
    if (s == nullptr || !s->open_in_flight) continue;
    s->open_in_flight = false;
    std::unique_ptr<mailbox::Maildrop> maildrop;
    const AuthVerdict verdict = AcceptOpenedMaildrop(
        s->mail_path, std::move(result.maildrop), &maildrop);
    const uint32_t index = DecodeIndex(result.tag);
    Resolve(index, verdict, std::move(maildrop));
    Pump(index);
  }
  ArmPoll(opener_->ready_fd(), POLLIN, Encode(Op::kOpened, 0, 0));
}

void PoolWorker::Resolve(uint32_t index, AuthVerdict verdict,
                         std::unique_ptr<mailbox::Maildrop> maildrop) {
  PoolSession& s = *slots_[index].session;
  s.auth_in_flight = false;
  s.auth_deadline = absl::InfiniteFuture();
  s.auth_failure_logged = verdict == AuthVerdict::kTempFailure ||
                          verdict == AuthVerdict::kInUse ||
                          verdict == AuthVerdict::kLoadFailed;
  s.session.ResolveAuth(verdict, std::move(maildrop));
  // The pre-auth deadline bounds the time to log in, not the session.
  if (s.session.authenticated()) s.preauth_deadline = absl::InfiniteFuture();
}

void PoolWorker::Reschedule(uint32_t index) {
  PoolSession& s = *slots_[index].session;
  const absl::Time next = s.NextDeadline();
  if (next == s.scheduled) return;
  if (s.scheduled != absl::InfiniteFuture()) {
    deadlines_.erase({s.scheduled, index});
  }
  if (next != absl::InfiniteFuture()) deadlines_.insert({next, index});
  s.scheduled = next;
}

void PoolWorker::ExpireDeadlines() {
  // Bounded: each round removes the first entry (EndSession erases it, or
  // Pump reschedules it past now_ since every expired deadline is cleared).
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_) {
    const uint32_t index = deadlines_.begin()->second;
    PoolSession& s = *slots_[index].session;
    if (s.auth_in_flight && s.auth_deadline <= now_ &&
        s.preauth_deadline > now_) {
      // The auth process did not answer in time: [SYS/TEMP], and the
      // session closes (a late reply finds auth_in_flight false).
      core::Logf(Severity::kCrit,
                 "Authentication backend failure: no reply within %s",
                 absl::FormatDuration(env_.auth_timeout));
      Resolve(index, AuthVerdict::kTempFailure, nullptr);
      Pump(index);
      continue;
    }
    // Pre-auth, idle or write deadline: close without a reply (popa3d).
    s.session.Timeout();
    EndSession(index);
  }
}

void PoolWorker::EndSession(uint32_t index) {
  Slot& slot = slots_[index];
  PoolSession& s = *slot.session;
  if (s.read_armed) CancelPoll(Encode(Op::kRead, index, slot.generation));
  if (s.write_armed) CancelPoll(Encode(Op::kWrite, index, slot.generation));
  if (s.scheduled != absl::InfiniteFuture()) {
    deadlines_.erase({s.scheduled, index});
  }
  SessionLogFacts facts;
  facts.authenticated = s.authenticated;
  facts.auth_attempted = s.auth_attempted;
  facts.auth_failure_logged = s.auth_failure_logged;
  facts.peer_gone = s.peer_gone;
  facts.mail_path = s.mail_path;
  LogSessionEnd(s.session, facts);
  const uint64_t session_id = s.session_id;
  // The session (and the maildrop its queued streams map) dies before the
  // socket closes (member order); cancelled polls hold their own file
  // reference, and their late CQEs no longer match the generation.
  slot.session.reset();
  ++slot.generation;
  free_slots_.push_back(index);
  --live_;
  Report(WorkerEvent::kSessionEnded, session_id);
}

void PoolWorker::EndAll(const char* why) {
  if (live_ > 0) {
    core::Logf(Severity::kInfo, "%s: ending %d session%s", why, live_,
               live_ == 1 ? "" : "s");
  }
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].session) continue;
    slots_[i].session->session.Timeout();
    EndSession(i);
  }
}

void PoolWorker::HandleSignals() {
  signalfd_siginfo info[8];
  for (;;) {
    const ssize_t n = ::read(signal_fd_.get(), info, sizeof(info));
    if (n <= 0) break;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(info[0]); ++i) {
      if (info[i].ssi_signo == SIGTERM || info[i].ssi_signo == SIGINT) {
        terminate_ = true;
      }
    }
  }
  if (!terminate_) {
    ArmPoll(signal_fd_.get(), POLLIN, Encode(Op::kSignal, 0, 0));
  }
}

void PoolWorker::Report(WorkerEvent event, uint64_t session_id) {
  WorkerReport report;
  report.event = event;
  report.session_id = session_id;
  std::string wire = EncodeWorkerReport(report);
  if (reports_.empty()) {
    const absl::Status st = SendMessage(master_.get(), wire);
    if (st.ok()) return;
    // Anything but EAGAIN: the master is gone; nobody to tell.
    if (!absl::IsUnavailable(st)) return;
  }
  if (reports_.size() >= kMaxQueuedReports) {
    core::Log(Severity::kCrit, "master channel full: report dropped");
    return;
  }
  reports_.push_back(std::move(wire));
  if (!master_out_armed_ && !terminate_) {
    master_out_armed_ = true;
    ArmPoll(master_.get(), POLLOUT, Encode(Op::kMasterOut, 0, 0));
  }
}

void PoolWorker::FlushReports() {
  while (!reports_.empty()) {
    const absl::Status st = SendMessage(master_.get(), reports_.front());
    if (absl::IsUnavailable(st)) break;
    reports_.pop_front();  // sent, or the master is gone
  }
  if (!reports_.empty() && !master_out_armed_ && !terminate_) {
    master_out_armed_ = true;
    ArmPoll(master_.get(), POLLOUT, Encode(Op::kMasterOut, 0, 0));
  }
}

}  // namespace

int RunPoolWorker(const PoolWorkerEnvironment& env, UniqueFd master_channel,
                  UniqueFd auth_channel) {
  PoolWorker worker(env, std::move(master_channel), std::move(auth_channel));
  if (absl::Status st = worker.Init(); !st.ok()) {
    core::Logf(Severity::kCrit, "pool worker: %s", st.ToString());
    return 1;
  }
  return worker.Run();
}

}  // namespace popgate::net
