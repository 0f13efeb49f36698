// The auth process loop (auth_process.h). One thread polls the control
// channel, every worker channel, the auth service's eventfd and a signalfd
// for SIGHUP; the only blocking call is poll(). Penalty delays are a min-heap
// of held replies whose earliest due time is poll()'s timeout.
//
// Trust: every byte from a worker channel is hostile (a worker parses
// client input and may be compromised). A malformed datagram is dropped and
// counted; a worker can make us spend at most one hash per request, bounded
// by the service queue, and cannot get kOk without the right password.
//
// Secrets: the receive buffer, decoded requests and jobs are wiped as soon
// as their password has been hashed into the cache key and handed to the
// service (WipeSecret); nothing logs a password or an unknown user's name.
#include "net/auth_process.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "core/auth/auth_cache.h"
#include "core/auth/auth_service.h"
#include "core/logging.h"
#include "net/address.h"
#include "net/daemon.h"
#include "net/pool_protocol.h"

namespace popgate::net {
namespace {

using core::Severity;
using core::auth::AuthCache;
using core::auth::AuthCompletion;
using core::auth::AuthJob;
using core::auth::AuthService;
using core::auth::WipeSecret;

// How often source_changed() may be asked (auth_process.h): a stat() per
// request would be cheap, but a once-a-second bound keeps a flood of
// requests from turning into a flood of syscalls.
constexpr absl::Duration kSourceCheckInterval = absl::Seconds(1);
// After EOF on control: how long running and queued verifications may
// still finish. A hash takes milliseconds; PAM with a fail delay a few
// seconds. Past this, queued jobs are dropped (running ones are joined:
// a crypt or PAM call cannot be interrupted).
constexpr absl::Duration kDrainGrace = absl::Seconds(10);
// Datagrams read from one channel per wake-up, so one busy worker cannot
// starve the others (or the completions) on a single poll round.
constexpr int kMaxMessagesPerWake = 64;
// Replies held for a worker whose channel is full (it is not reading).
// Beyond this they are dropped; the worker's auth_timeout answers the
// session [SYS/TEMP]. Each is ~100 bytes.
constexpr size_t kMaxOutbox = 4096;
// At most one "queue full" log line per interval (a flood would otherwise
// become a syslog flood).
constexpr absl::Duration kOverloadLogInterval = absl::Seconds(60);

int PollMillis(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) return -1;
  if (deadline <= now) return 0;
  // Rounded up, so we never wake just before the deadline and spin.
  const int64_t ms = absl::ToInt64Milliseconds(deadline - now);
  return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, INT_MAX));
}

// The penalty key for the worker's remote_host. Anything not numeric
// (empty for AF_UNIX peers in tests, or garbage from a broken worker)
// shares the all-zero key, as SourceKeyOf does for unknown families: a
// worker cannot dodge penalties by sending nonsense, only pool itself.
limits::SourceKey SourceOf(const std::string& host, bool* numeric) {
  absl::StatusOr<SocketAddress> address = MakeSocketAddress(host, 0);
  *numeric = address.ok();
  return address.ok() ? SourceKeyOf(*address) : limits::SourceKey{};
}

class AuthLoop {
 public:
  AuthLoop(const AuthProcessOptions& options, AuthService& service,
           std::function<bool()> source_changed, std::function<void()> reload,
           int control, int signal_fd)
      : service_(service),
        source_changed_(std::move(source_changed)),
        reload_(std::move(reload)),
        control_(control),
        signal_fd_(signal_fd),
        cache_(options.cache_entries, options.cache_ttl),
        penalties_(options.penalty) {}

  int Run();

 private:
  struct Channel {
    UniqueFd fd;
    std::deque<std::string> outbox;  // encoded replies, oldest first
    bool reported_malformed = false;
  };
  // A request handed to the service, by job tag.
  struct Pending {
    uint64_t channel_id = 0;
    uint64_t request_id = 0;
    limits::SourceKey source;
    AuthCache::Key cache_key{};
    uint64_t cache_epoch = 0;
  };
  // A refusal held for its penalty delay.
  struct Held {
    absl::Time due;
    uint64_t seq = 0;  // FIFO among equal due times
    uint64_t channel_id = 0;
    AuthWireReply reply;
  };
  struct HeldLater {
    bool operator()(const Held& a, const Held& b) const {
      return a.due != b.due ? a.due > b.due : a.seq > b.seq;
    }
  };

  void CheckSource(absl::Time now);
  void Reload();
  void ReadSignals();
  void ReadControl(absl::Time now);
  void ReadChannel(uint64_t id, absl::Time now);
  void HandleRequest(uint64_t channel_id, const AuthWireRequest& request,
                     absl::Time now);
  void HandleCompletion(AuthCompletion completion, absl::Time now);
  void SendDueReplies(absl::Time now);
  void Reply(uint64_t channel_id, const AuthWireReply& reply);
  void FlushOutbox(uint64_t id);
  void CloseChannel(uint64_t id) { channels_.erase(id); }

  AuthService& service_;
  const std::function<bool()> source_changed_;
  const std::function<void()> reload_;
  const int control_;
  const int signal_fd_;
  AuthCache cache_;
  limits::PenaltyTable penalties_;

  // std::map: stable references, and ids only grow, so iteration order is
  // age order.
  std::map<uint64_t, Channel> channels_;
  uint64_t next_channel_id_ = 1;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  uint64_t next_tag_ = 1;
  std::priority_queue<Held, std::vector<Held>, HeldLater> held_;
  uint64_t next_held_seq_ = 0;

  // Reused for every datagram (its capacity is kMaxMessageBytes + 1) and
  // wiped after each one, since a request carries a password.
  std::string buffer_;

  absl::Time next_source_check_ = absl::InfinitePast();
  bool draining_ = false;
  absl::Time drain_deadline_ = absl::InfiniteFuture();
  uint64_t overloads_ = 0;
  absl::Time last_overload_log_ = absl::InfinitePast();
};

int AuthLoop::Run() {
  std::vector<pollfd> fds;
  std::vector<uint64_t> fd_channel;  // channel id per pollfd from kFirst
  constexpr size_t kSignal = 0, kWake = 1, kControl = 2, kFirst = 3;
  for (;;) {
    absl::Time now = MonotonicNow();
    SendDueReplies(now);
    if (draining_ && (service_.in_flight() == 0 || now >= drain_deadline_)) {
      break;
    }

    fds.clear();
    fd_channel.clear();
    fds.push_back({signal_fd_, POLLIN, 0});
    fds.push_back({service_.wake_fd(), POLLIN, 0});
    // Once draining, control is at EOF and new requests are not read: they
    // would only be dropped at exit (the worker answers them [SYS/TEMP]).
    fds.push_back({draining_ ? -1 : control_, POLLIN, 0});
    for (auto& [id, channel] : channels_) {
      short events = draining_ ? 0 : POLLIN;
      if (!channel.outbox.empty()) events |= POLLOUT;
      fds.push_back({channel.fd.get(), events, 0});
      fd_channel.push_back(id);
    }
    absl::Time deadline = draining_ ? drain_deadline_ : absl::InfiniteFuture();
    if (!held_.empty()) deadline = std::min(deadline, held_.top().due);

    const int n = ::poll(fds.data(), fds.size(), PollMillis(deadline, now));
    if (n < 0) {
      if (errno == EINTR) continue;
      core::Logf(Severity::kCrit, "auth process: poll: %s", strerror(errno));
      return 1;
    }
    now = MonotonicNow();
    // Before any request of this round, so a changed password is never
    // served from the cache after we could have known.
    CheckSource(now);
    if (fds[kSignal].revents & POLLIN) ReadSignals();
    // Completions before new requests: they free queue slots.
    if (fds[kWake].revents & POLLIN) {
      service_.DrainCompletions([&](AuthCompletion completion) {
        HandleCompletion(std::move(completion), now);
      });
    }
    if (fds[kControl].revents) ReadControl(now);
    for (size_t i = kFirst; i < fds.size(); ++i) {
      const short revents = fds[i].revents;
      const uint64_t id = fd_channel[i - kFirst];
      if (revents & POLLOUT) FlushOutbox(id);
      if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (draining_) {
          // Not reading any more; a dead channel still needs dropping,
          // or poll() would report it forever.
          if (revents & (POLLHUP | POLLERR)) CloseChannel(id);
        } else {
          ReadChannel(id, now);
        }
      }
    }
  }

  // Exit: answer every refusal still held now. The penalty delay slows a
  // guesser down; with the process going away, holding it protects
  // nothing, and an answer beats a worker-side timeout.
  while (!held_.empty()) {
    Held held = held_.top();
    held_.pop();
    Reply(held.channel_id, held.reply);
  }
  for (auto it = channels_.begin(); it != channels_.end();) {
    const uint64_t id = (it++)->first;  // FlushOutbox may erase `id`
    FlushOutbox(id);
  }
  return 0;
}

void AuthLoop::CheckSource(absl::Time now) {
  if (!source_changed_ || now < next_source_check_) return;
  next_source_check_ = now + kSourceCheckInterval;
  if (source_changed_()) {
    core::Log(Severity::kInfo, "auth process: account source changed");
    Reload();
  }
}

void AuthLoop::Reload() {
  if (reload_) reload_();
  // Either way: a password changed under us must not keep working from the
  // cache (auth_cache.h; in-flight results from before are dropped by the
  // epoch check in Insert).
  cache_.Flush();
}

void AuthLoop::ReadSignals() {
  signalfd_siginfo info;
  bool hup = false;
  while (::read(signal_fd_, &info, sizeof(info)) ==
         static_cast<ssize_t>(sizeof(info))) {
    if (info.ssi_signo == SIGHUP) hup = true;
  }
  // Several SIGHUPs in one round: one reload does.
  if (hup) {
    core::Log(Severity::kInfo, "auth process: SIGHUP, reloading");
    Reload();
  }
}

void AuthLoop::ReadControl(absl::Time now) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    UniqueFd fd;
    absl::StatusOr<bool> received = ReceiveMessage(control_, &buffer_, &fd);
    if (received.ok() && *received) {
      if (buffer_.size() == 1 && buffer_[0] == kAuthChannelTag && fd.valid()) {
        channels_.emplace(next_channel_id_++,
                          Channel{std::move(fd), {}, false});
      } else {
        core::Log(Severity::kWarning,
                  "auth process: unexpected message on the control channel");
      }
      continue;
    }
    if (received.ok() || (!absl::IsUnavailable(received.status()) &&
                          !absl::IsInvalidArgument(received.status()))) {
      // EOF, or the master's end is broken (ECONNRESET): master gone.
      draining_ = true;
      drain_deadline_ = now + kDrainGrace;
      return;
    }
    if (absl::IsUnavailable(received.status())) return;
    core::Log(Severity::kWarning,
              "auth process: malformed message on the control channel");
  }
}

void AuthLoop::ReadChannel(uint64_t id, absl::Time now) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    auto it = channels_.find(id);  // a reply below may have closed it
    if (it == channels_.end()) return;
    // Untrusted: from a worker. Any fd it sends is closed (null `fd`).
    absl::StatusOr<bool> received =
        ReceiveMessage(it->second.fd.get(), &buffer_, nullptr);
    if (received.ok() && !*received) {
      CloseChannel(id);  // worker gone; its pending replies are dropped
      return;
    }
    if (!received.ok() && absl::IsUnavailable(received.status())) return;
    if (!received.ok() && !absl::IsInvalidArgument(received.status())) {
      CloseChannel(id);
      return;
    }
    absl::StatusOr<AuthWireRequest> request =
        received.ok() ? DecodeAuthRequest(buffer_)
                      : absl::StatusOr<AuthWireRequest>(received.status());
    WipeSecret(&buffer_);
    if (!request.ok()) {
      if (!it->second.reported_malformed) {
        it->second.reported_malformed = true;
        core::Log(Severity::kWarning,
                  "auth process: malformed request from a worker, dropped");
      }
      continue;
    }
    HandleRequest(id, *request, now);
    WipeSecret(&request->password);
  }
}

void AuthLoop::HandleRequest(uint64_t channel_id,
                             const AuthWireRequest& request, absl::Time now) {
  AuthWireReply reply;
  reply.request_id = request.request_id;
  bool numeric = false;
  const limits::SourceKey source = SourceOf(request.remote_host, &numeric);

  if (penalties_.LockedOut(source, now)) {
    // No hash, so whether the user exists is unknown: known_user false.
    reply.verdict = AuthWireVerdict::kDenied;
    Reply(channel_id, reply);
    return;
  }

  Pending pending;
  pending.channel_id = channel_id;
  pending.request_id = request.request_id;
  pending.source = source;
  // Read before the verification starts: a Flush() after this point makes
  // its result stale (AuthCache::Insert).
  pending.cache_epoch = cache_.epoch();
  if (cache_.enabled()) {
    pending.cache_key = cache_.KeyOf(request.user, request.password);
    std::optional<core::auth::AuthenticatedUser> hit =
        cache_.Lookup(pending.cache_key, now);
    if (hit.has_value() && hit->uid != 0) {
      penalties_.RecordSuccess(source, now);
      reply.verdict = AuthWireVerdict::kOk;
      reply.known_user = true;
      reply.uid = hit->uid;
      reply.gid = hit->gid;
      reply.name = std::move(hit->name);
      reply.home = std::move(hit->home);
      Reply(channel_id, reply);
      return;
    }
  }

  // Filled in place rather than through temporaries, so no moved-from
  // string with the password in its inline buffer is left unwiped.
  AuthJob job;
  job.tag = next_tag_;
  if (numeric) job.remote_host.assign(request.remote_host);
  job.user.assign(request.user);
  job.password.assign(request.password);
  if (!service_.Submit(std::move(job))) {
    ++overloads_;
    if (now - last_overload_log_ >= kOverloadLogInterval) {
      last_overload_log_ = now;
      core::Logf(Severity::kNotice,
                 "auth process: verification queue full (%d refused so far)",
                 overloads_);
    }
    reply.verdict = AuthWireVerdict::kTempFailure;
    Reply(channel_id, reply);
    return;
  }
  pending_.emplace(next_tag_++, pending);
}

void AuthLoop::HandleCompletion(AuthCompletion completion, absl::Time now) {
  auto it = pending_.find(completion.tag);
  if (it == pending_.end()) return;  // cannot happen: every job is pending
  const Pending pending = it->second;
  pending_.erase(it);

  AuthWireReply reply;
  reply.request_id = pending.request_id;
  reply.known_user = completion.known_user;
  if (completion.result.ok()) {
    const core::auth::AuthenticatedUser& user = *completion.result;
    if (user.uid == 0) {
      // Backends refuse root (authenticator.h); this is the last line.
      core::Log(Severity::kCrit,
                "auth process: backend accepted a uid 0 account; refused");
      reply.verdict = AuthWireVerdict::kDenied;
      Reply(pending.channel_id, reply);
      return;
    }
    cache_.Insert(pending.cache_key, user, now, pending.cache_epoch);
    penalties_.RecordSuccess(pending.source, now);
    reply.verdict = AuthWireVerdict::kOk;
    reply.uid = user.uid;
    reply.gid = user.gid;
    reply.name = user.name;
    reply.home = user.home;
    Reply(pending.channel_id, reply);
    return;
  }
  if (absl::IsPermissionDenied(completion.result.status())) {
    reply.verdict = AuthWireVerdict::kDenied;
    const absl::Duration delay = penalties_.RecordFailure(pending.source, now);
    if (delay > absl::ZeroDuration()) {
      held_.push(Held{now + delay, next_held_seq_++, pending.channel_id,
                      std::move(reply)});
    } else {
      Reply(pending.channel_id, reply);
    }
    return;
  }
  reply.verdict = AuthWireVerdict::kTempFailure;
  Reply(pending.channel_id, reply);
}

void AuthLoop::SendDueReplies(absl::Time now) {
  while (!held_.empty() && held_.top().due <= now) {
    Held held = held_.top();
    held_.pop();
    Reply(held.channel_id, held.reply);
  }
}

void AuthLoop::Reply(uint64_t channel_id, const AuthWireReply& reply) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;  // worker gone: dropped
  Channel& channel = it->second;
  std::string bytes = EncodeAuthReply(reply);
  if (bytes.size() > kMaxMessageBytes) {
    // Only an absurd home or name (an admin's file) gets here; the session
    // could not use the account anyway.
    core::Log(Severity::kWarning,
              "auth process: account record too large for a reply");
    AuthWireReply failure;
    failure.request_id = reply.request_id;
    failure.verdict = AuthWireVerdict::kTempFailure;
    bytes = EncodeAuthReply(failure);
  }
  if (channel.outbox.empty()) {
    const absl::Status sent = SendMessage(channel.fd.get(), bytes);
    if (sent.ok()) return;
    if (!absl::IsUnavailable(sent)) {
      CloseChannel(channel_id);  // EPIPE/ECONNRESET: worker gone
      return;
    }
  }
  if (channel.outbox.size() < kMaxOutbox) {
    channel.outbox.push_back(std::move(bytes));
  }
}

void AuthLoop::FlushOutbox(uint64_t id) {
  auto it = channels_.find(id);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  while (!channel.outbox.empty()) {
    const absl::Status sent =
        SendMessage(channel.fd.get(), channel.outbox.front());
    if (absl::IsUnavailable(sent)) return;
    if (!sent.ok()) {
      CloseChannel(id);
      return;
    }
    channel.outbox.pop_front();
  }
}

}  // namespace

int RunAuthProcess(const AuthProcessOptions& options,
                   core::auth::Authenticator& authenticator,
                   std::function<bool()> source_changed,
                   std::function<void()> reload, UniqueFd control) {
  // SIGHUP is read from a signalfd, so it must be blocked; blocked before
  // the service starts its threads, which inherit the mask, so no pool
  // thread can take the signal instead. It stays blocked: this is the
  // process's last act.
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, nullptr);
  UniqueFd signal_fd(::signalfd(-1, &hup, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd.valid()) {
    core::Logf(Severity::kCrit, "auth process: signalfd: %s", strerror(errno));
    return 1;
  }

  int threads = options.threads;
  if (threads <= 0) {
    threads =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  absl::StatusOr<std::unique_ptr<AuthService>> service =
      AuthService::Create(authenticator, threads, options.max_queue);
  if (!service.ok()) {
    core::Logf(Severity::kCrit, "auth process: %s",
               service.status().ToString());
    return 1;
  }
  // Declared after the service, so destroyed before it (the loop holds a
  // reference); the service's destructor then joins its threads.
  AuthLoop loop(options, **service, std::move(source_changed),
                std::move(reload), control.get(), signal_fd.get());
  return loop.Run();
}

}  // namespace popgate::net
