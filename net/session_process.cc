#include "net/session_process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"
#include "net/address.h"
#include "net/daemon.h"
#include "net/privileges.h"
#include "net/session_logging.h"
#include "net/send_gathered.h"
#include "net/unique_fd.h"

namespace popgate::net {
namespace {

using core::Severity;

// Read size. popa3d reads 128 bytes at a time; commands are short, but a
// pipelining client (RFC 2449) sends many per segment: 4 KiB takes a full
// pipelined batch in one read().
constexpr size_t kReadBufferBytes = 4096;
// Most octets gathered per send round. Larger than a socket send buffer's
// usual free space, so one syscall fills it; the memory is the mailbox
// mapping's, not ours (views).
constexpr size_t kWriteWindowBytes = 256 * 1024;
// Loop rounds in a row that neither write, read nor wait (checkpoints
// resolving, Resume() draining buffered commands) before we call it a bug
// and close, so a confused session can never make us spin.
constexpr int kMaxIdleRounds = 1024;
// Upper bound on auth resolutions per wake-up; each consumes an attempt, so
// max_auth_attempts bounds it first.
constexpr int kMaxAuthRounds = 64;

void SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) {
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

// Milliseconds left until `deadline`, clamped for poll().
int PollMillis(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const int64_t ms = absl::ToInt64Milliseconds(deadline - now);
  return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, INT_MAX));
}

enum class WaitResult { kReady, kTimeout, kError };

// Waits for `events` on `fd` until `deadline` (EINTR resumes with the time
// left, so a signal can't stretch a deadline).
WaitResult WaitFor(int fd, short events, absl::Time deadline) {
  for (;;) {
    const absl::Time now = MonotonicNow();
    if (now >= deadline) return WaitResult::kTimeout;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, PollMillis(deadline, now));
    if (n > 0) return WaitResult::kReady;  // incl. POLLHUP/POLLERR: read says
    if (n == 0) continue;                  // loop re-checks the deadline
    if (errno != EINTR) return WaitResult::kError;
  }
}

// The numeric peer address of a socket, or "" (inetd on a pipe, tests).
std::string PeerHost(int fd) {
  SocketAddress peer;
  peer.length = sizeof(peer.storage);
  if (::getpeername(fd, peer.mutable_get(), &peer.length) != 0) return "";
  return FormatHost(peer);
}

class SessionDriver {
 public:
  SessionDriver(int in_fd, int out_fd, const SessionEnvironment& env)
      : in_fd_(in_fd),
        out_fd_(out_fd),
        env_(env),
        session_(env.session_options),
        remote_host_(PeerHost(in_fd)),
        sender_(GatheredSender::Syscall::kSendmsg, env.sendfile) {}

  int Run();

  // Pre-auth mode (the jailed child): read one line at a time with
  // MSG_PEEK so that nothing past the PASS line leaves the kernel's socket
  // buffer, and instead of authenticating, hand {user, password} to the
  // root parent through `pipe_fd` once every earlier reply is flushed.
  void SetPreauthPipe(int pipe_fd) { preauth_pipe_ = pipe_fd; }
  // Drops queued output unsent (the greeting another process already sent).
  void DiscardOutput();
  // The root parent's side: re-plays USER/PASS into this (fresh or
  // back-in-AUTHORIZATION) session and discards the replies the child
  // already sent. True if PASS is now pending, as it was in the child.
  bool Replay(const core::AuthRequest& request);
  // Runs every pending PASS. False after a fatal privilege failure.
  bool ResolvePendingAuth();
  // Flushes until the output is empty. False if the connection finished.
  bool FlushAll();
  const core::Session& session() const { return session_; }

 private:
  // One gather + send round (waiting for POLLOUT if the peer's window is
  // full). False when the connection is finished (write error, write
  // timeout, queue error).
  bool FlushOnce();
  // Reads into `buffer` (at most one line in pre-auth mode). read()'s result.
  ssize_t ReadInput(char* buffer, size_t size);
  // Sends the pending credentials to the parent. False on a pipe error.
  bool HandOver();
  // One auth: returns nullopt when fatal (the process must end at once).
  std::optional<core::AuthVerdict> Authenticate(
      const core::AuthRequest& request,
      std::unique_ptr<mailbox::Maildrop>* maildrop);
  void LogEnd();

  const int in_fd_;
  const int out_fd_;
  const SessionEnvironment& env_;
  core::Session session_;
  bool authenticated_ = false;
  bool auth_attempted_ = false;  // a PASS reached the backend
  bool peer_gone_ = false;
  // The client's address for PAM_RHOST; empty when fd 0 is not a socket.
  const std::string remote_host_;
  bool write_timed_out_ = false;
  // The verdict already has its log line ("Failed or refused to load ...");
  // don't add "Server failure accessing" for the same event.
  bool auth_failure_logged_ = false;
  int idle_rounds_ = 0;
  int preauth_pipe_ = -1;
  bool handed_over_ = false;  // the parent owns the session from here
  absl::Time last_progress_;
  std::string mail_path_;  // for CRIT lines after the load
  std::vector<absl::string_view> views_;
  std::vector<core::OutputQueue::FileExtent> extents_;
  GatheredSender sender_;
};

bool SessionDriver::FlushOnce() {
  core::OutputQueue& out = session_.output();
  views_.clear();
  extents_.clear();
  absl::Status st =
      GatherSessionOutput(session_, kWriteWindowBytes, &views_, &extents_);
  if (!st.ok()) return false;  // the session recorded why (stale, I/O)
  if (views_.empty()) {
    // A checkpoint ran, or a stream had nothing yet: no bytes, but the queue
    // moved. Guard against a queue that never yields anything.
    session_.Resume();
    return ++idle_rounds_ <= kMaxIdleRounds;
  }
  // Tiny per-line segments of LF mail were already merged by the
  // OutputQueue, so the views here are few and large.
  const GatheredSender::Result result =
      sender_.Send(out_fd_, views_, extents_);
  const size_t sent = result.sent;
  switch (result.stop) {
    case GatheredSender::Result::Stop::kAll:
    case GatheredSender::Result::Stop::kBlocked:
      break;
    case GatheredSender::Result::Stop::kFailed:
      peer_gone_ = true;
      return false;
    case GatheredSender::Result::Stop::kFileShrunk:
      return false;  // the client never gets the final dot
  }
  const bool blocked = result.stop == GatheredSender::Result::Stop::kBlocked;
  if (sent > 0) {
    idle_rounds_ = 0;
    out.Consume(sent);
    session_.Resume();  // driver contract: after every Consume()
    last_progress_ = MonotonicNow();
  }
  if (!blocked) return true;
  switch (WaitFor(out_fd_, POLLOUT, last_progress_ + env_.write_timeout)) {
    case WaitResult::kReady:
      return true;
    case WaitResult::kTimeout:
      write_timed_out_ = true;
      return false;
    case WaitResult::kError:
      peer_gone_ = true;
      return false;
  }
  return false;
}

std::optional<core::AuthVerdict> SessionDriver::Authenticate(
    const core::AuthRequest& request,
    std::unique_ptr<mailbox::Maildrop>* maildrop) {
  using core::AuthVerdict;
  bool known_user = false;
  absl::StatusOr<core::auth::AuthenticatedUser> user =
      env_.authenticator->AuthenticateFrom(remote_host_, request.user,
                                           request.password, &known_user);
  if (!user.ok()) {
    if (absl::IsPermissionDenied(user.status())) {
      LogAuthDenied(request.user, known_user);
      return AuthVerdict::kDenied;
    }
    core::Logf(Severity::kCrit, "Authentication backend failure: %s",
               user.status().message());
    return AuthVerdict::kTempFailure;
  }
  // Backends refuse root already; this is the last line of defence.
  if (user->uid == 0) {
    LogAuthDenied(request.user, /*known_user=*/true);
    return AuthVerdict::kDenied;
  }
  // Not root (a developer's run): we can only serve ourselves.
  if (::geteuid() != 0 && user->uid != ::geteuid()) {
    core::Logf(Severity::kCrit,
               "Not running as root: cannot serve uid %d (we are uid %d)",
               user->uid, ::geteuid());
    return AuthVerdict::kTempFailure;
  }
  absl::StatusOr<std::string> path = env_.mail_path(*user);
  if (!path.ok()) {
    core::Logf(Severity::kNotice,
               "Failed or refused to load mailbox for %s: %s", request.user,
               path.status().message());
    return AuthVerdict::kLoadFailed;
  }
  mail_path_ = *path;
  // As root: the per-user state directory must exist and belong to the
  // user before we lose the right to create or chown it.
  absl::StatusOr<std::string> state =
      PrepareStateDir(env_.state_dir, user->uid, user->gid);
  if (!state.ok()) {
    core::Logf(Severity::kCrit, "State directory: %s",
               state.status().message());
    return AuthVerdict::kTempFailure;
  }
  // The point of no return: from here on this process is the user.
  // The user must not find other accounts' hashes in our memory.
  env_.authenticator->WipeSecrets();
  absl::Status dropped = DropPrivileges(user->uid, user->gid);
  if (!dropped.ok()) {
    core::Logf(Severity::kCrit, "%s", dropped.message());
    return std::nullopt;
  }
  authenticated_ = true;
  core::Logf(Severity::kInfo, "Authentication passed for %s", request.user);

  // Untrusted from here: the mailbox contents (parsed as the user).
  return AcceptOpenedMaildrop(*path, env_.open_maildrop(*path, *state),
                              maildrop);
}

bool SessionDriver::ResolvePendingAuth() {
  for (int round = 0; round < kMaxAuthRounds && session_.pending_auth();
       ++round) {
    core::AuthRequest request = *session_.pending_auth();
    auth_attempted_ = true;
    std::unique_ptr<mailbox::Maildrop> maildrop;
    std::optional<core::AuthVerdict> verdict = Authenticate(request, &maildrop);
    // The password copy dies here; explicit_bzero can't be optimised away.
    ::explicit_bzero(request.password.data(), request.password.size());
    if (!verdict) return false;
    auth_failure_logged_ = *verdict == core::AuthVerdict::kTempFailure ||
                           *verdict == core::AuthVerdict::kInUse ||
                           *verdict == core::AuthVerdict::kLoadFailed;
    session_.ResolveAuth(*verdict, std::move(maildrop));
  }
  return true;
}

int SessionDriver::Run() {
  SetNonBlocking(in_fd_);
  if (out_fd_ != in_fd_) SetNonBlocking(out_fd_);
  // Replies must never sit in Nagle's buffer waiting for an ACK the client
  // delays (popa3d loses ~40 ms per RETR to this). ENOTSOCK (inetd test
  // pipes) is fine to ignore.
  const int one = 1;
  ::setsockopt(out_fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  char buffer[kReadBufferBytes];
  int exit_code = 0;
  last_progress_ = MonotonicNow();
  // Bounded: every iteration writes (the peer takes bytes), reads (the peer
  // sent bytes), waits in poll() with a deadline, or ends the session; the
  // few that do none of these are capped by idle_rounds_.
  for (;;) {
    if (preauth_pipe_ < 0 && !ResolvePendingAuth()) {
      exit_code = 1;
      break;
    }
    if (!session_.output().empty()) {
      if (!FlushOnce()) break;
      continue;
    }
    if (preauth_pipe_ >= 0 && session_.pending_auth()) {
      // Every reply before PASS is on the wire: the parent takes over.
      handed_over_ = HandOver();
      exit_code = handed_over_ ? 0 : 1;
      break;
    }
    if (session_.closing()) break;
    if (!session_.wants_input()) {
      // After EOF or behind backpressure: let the session work through what
      // it has buffered (driver contract), without reading more.
      session_.Resume();
      if (++idle_rounds_ > kMaxIdleRounds) break;
      continue;
    }
    idle_rounds_ = 0;
    // popa3d's per-read idle timeout (alarm() around read()).
    const WaitResult wait =
        WaitFor(in_fd_, POLLIN, MonotonicNow() + env_.idle_timeout);
    if (wait == WaitResult::kTimeout) {
      session_.Timeout();
      break;  // close without a reply, as popa3d
    }
    ssize_t n = -1;
    if (wait == WaitResult::kReady) {
      n = ReadInput(buffer, sizeof(buffer));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    }
    if (n > 0) {
      // Untrusted: from the socket.
      session_.Receive(absl::string_view(buffer, static_cast<size_t>(n)));
    } else {
      // EOF, reset or a poll error: the peer is gone for reading. Commands
      // it pipelined before the half-close are still answered.
      session_.ReceiveEof();
    }
    last_progress_ = MonotonicNow();
  }
  ::explicit_bzero(buffer, sizeof(buffer));
  if (write_timed_out_) session_.Timeout();
  if (!handed_over_) LogEnd();
  return exit_code;
}

ssize_t SessionDriver::ReadInput(char* buffer, size_t size) {
  if (preauth_pipe_ < 0) return ::read(in_fd_, buffer, size);
  // Peek, then consume through the first LF only: a line is the unit the
  // session acts on, so PASS is always the last line this process takes.
  // Whatever the client pipelined behind it stays in the socket for the
  // parent (which will serve it as the user). Pre-auth input is a handful
  // of short lines, so the extra syscall per line is noise.
  const ssize_t peeked = ::recv(in_fd_, buffer, size, MSG_PEEK);
  if (peeked <= 0) return peeked;
  const void* lf = ::memchr(buffer, '\n', static_cast<size_t>(peeked));
  const size_t take =
      lf == nullptr
          ? static_cast<size_t>(peeked)
          : static_cast<size_t>(static_cast<const char*>(lf) - buffer) + 1;
  return ::read(in_fd_, buffer, take);
}

bool SessionDriver::HandOver() {
  const core::AuthRequest& request = *session_.pending_auth();
  const uint32_t lengths[2] = {static_cast<uint32_t>(request.user.size()),
                               static_cast<uint32_t>(request.password.size())};
  std::string message(reinterpret_cast<const char*>(lengths), sizeof(lengths));
  message += request.user;
  message += request.password;
  // The parent reads to EOF (our exit), so partial writes just continue.
  size_t sent = 0;
  while (sent < message.size()) {
    const ssize_t n =
        ::write(preauth_pipe_, message.data() + sent, message.size() - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::explicit_bzero(message.data(), message.size());
  return sent == message.size();
}

void SessionDriver::DiscardOutput() {
  core::OutputQueue& out = session_.output();
  // Bounded: each round consumes what Gather() produced; the replies being
  // dropped are a few short lines.
  for (int i = 0; i < kMaxIdleRounds && !out.empty(); ++i) {
    views_.clear();
    if (!out.Gather(kWriteWindowBytes, &views_).ok()) return;
    size_t bytes = 0;
    for (absl::string_view v : views_) bytes += v.size();
    out.Consume(bytes);
    session_.Resume();
  }
}

bool SessionDriver::Replay(const core::AuthRequest& request) {
  std::string lines = absl::StrCat("USER ", request.user, "\r\n", "PASS ",
                                   request.password, "\r\n");
  session_.Receive(lines);
  ::explicit_bzero(lines.data(), lines.size());
  DiscardOutput();
  const std::optional<core::AuthRequest>& pending = session_.pending_auth();
  return pending.has_value() && pending->user == request.user &&
         pending->password == request.password;
}

bool SessionDriver::FlushAll() {
  while (!session_.output().empty()) {
    if (!FlushOnce()) return false;
  }
  return true;
}

void SessionDriver::LogEnd() {
  SessionLogFacts facts;
  facts.authenticated = authenticated_;
  facts.auth_attempted = auth_attempted_;
  facts.auth_failure_logged = auth_failure_logged_;
  facts.peer_gone = peer_gone_;
  facts.mail_path = mail_path_;
  LogSessionEnd(session_, facts);
}

}  // namespace

std::string LoadedLogLine(size_t messages, uint64_t bytes) {
  return absl::StrFormat("%u message%s (%u byte%s) loaded", messages,
                         messages == 1 ? "" : "s", bytes,
                         bytes == 1 ? "" : "s");
}

std::string UpdateLogLine(const core::Session::UpdateSummary& s) {
  return absl::StrFormat("%u (%u) deleted, %u (%u) left", s.deleted,
                         s.deleted_bytes, s.left, s.left_bytes);
}

namespace {

// Privilege separation applies when we are root (there is something to
// protect) and the input is a socket (MSG_PEEK keeps pipelined input
// behind PASS in the kernel for the parent; inetd gives us a socket).
bool UsePreauthJail(int in_fd) {
  if (::geteuid() != 0) return false;
  int type = 0;
  socklen_t len = sizeof(type);
  return ::getsockopt(in_fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
         type == SOCK_STREAM;
}

// Runs AUTHORIZATION in a jailed child (popa3d pop_root.c). Returns the
// credentials it collected, or nullopt if the session ended there (QUIT,
// EOF, timeout: the child logged the end). `greet`: first round only.
absl::StatusOr<std::optional<core::AuthRequest>> RunPreauthChild(
    int in_fd, int out_fd, const SessionEnvironment& env, bool greet) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid == 0) {
    read_end.Reset();
    // This child only reads USER/PASS: it must not carry the accounts'
    // hashes (inherited from the master) into the jail.
    env.authenticator->WipeSecrets();
    // Untrusted input is parsed only after this line: no root, no files.
    if (absl::Status st = EnterPreauthJail(env.state_dir, env.preauth_user);
        !st.ok()) {
      core::Logf(Severity::kCrit, "pre-auth jail: %s", st.message());
      ::_exit(1);
    }
    // Die with the session process (e.g. killed by the master's second
    // SIGTERM), never outlive it holding the connection. Set after the uid
    // change, which clears it; the getppid() check closes the race with a
    // parent that died before the prctl.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    SessionDriver child(in_fd, out_fd, env);
    child.SetPreauthPipe(write_end.get());
    if (!greet) child.DiscardOutput();
    ::_exit(child.Run());
  }
  write_end.Reset();
  // Untrusted: the child may be compromised. Read at most one message of
  // the size it can legitimately send, then wait for it to exit.
  const size_t cap = 8 + 2 * (env.session_options.max_line_bytes + 16);
  std::string message(cap + 1, '\0');
  size_t got = 0;
  for (;;) {
    const ssize_t n =
        ::read(read_end.get(), message.data() + got, message.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
    if (got == message.size()) break;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    core::Logf(Severity::kCrit, "pre-auth process killed by signal %d",
               WTERMSIG(status));
  }
  absl::Cleanup wipe = [&] {
    ::explicit_bzero(message.data(), message.size());
  };
  if (got == 0) return std::optional<core::AuthRequest>();
  uint32_t lengths[2];
  if (got < sizeof(lengths) || got > cap) {
    return absl::InternalError("malformed pre-auth message");
  }
  std::memcpy(lengths, message.data(), sizeof(lengths));
  if (uint64_t{lengths[0]} + lengths[1] + sizeof(lengths) != got) {
    return absl::InternalError("malformed pre-auth message");
  }
  core::AuthRequest request;
  request.user = message.substr(sizeof(lengths), lengths[0]);
  request.password = message.substr(sizeof(lengths) + lengths[0], lengths[1]);
  return std::optional<core::AuthRequest>(std::move(request));
}

}  // namespace

int RunSession(int in_fd, int out_fd, const SessionEnvironment& env) {
  SessionDriver driver(in_fd, out_fd, env);
  if (!UsePreauthJail(in_fd)) return driver.Run();

  // The jailed child sends the greeting and every AUTHORIZATION reply; this
  // root process only sees {user, password}, replays them into its own
  // session, authenticates, and becomes the user.
  driver.DiscardOutput();
  // Each round consumes one PASS attempt, and the session closes after
  // max_auth_attempts of them; the bound is a backstop.
  const int rounds = std::max(1, env.session_options.max_auth_attempts) + 1;
  for (int round = 0; round < rounds; ++round) {
    absl::StatusOr<std::optional<core::AuthRequest>> creds =
        RunPreauthChild(in_fd, out_fd, env, /*greet=*/round == 0);
    if (!creds.ok()) {
      core::Logf(Severity::kCrit, "%s", creds.status().ToString());
      return 1;
    }
    if (!creds->has_value()) return 0;  // ended in AUTHORIZATION
    const bool replayed = driver.Replay(**creds);
    ::explicit_bzero((*creds)->password.data(), (*creds)->password.size());
    if (!replayed) {
      core::Log(Severity::kCrit, "pre-auth replay did not reach PASS");
      return 1;
    }
    if (!driver.ResolvePendingAuth()) return 1;  // privilege failure
    if (driver.session().authenticated() || driver.session().closing()) {
      return driver.Run();  // TRANSACTION as the user, or the final -ERR
    }
    // A failed attempt with attempts left: send the -ERR, then another
    // jailed round for the next USER/PASS.
    if (!driver.FlushAll()) return driver.Run();
  }
  return 1;
}

}  // namespace popgate::net
