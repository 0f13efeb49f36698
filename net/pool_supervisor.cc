#include "net/pool_supervisor.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "net/pool_protocol.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace popgate::net {
namespace {

using core::Severity;

// A pool child leaves with _exit (the master's objects are not its to
// destroy), which skips LeakSanitizer's at-exit check. Sanitizer builds run
// the check here instead, so what a worker or the auth process leaked fails
// a test like the master's leaks do (the auth process usually ends by the
// master's SIGTERM and is not checked); the master's objects are still
// reachable from this stack, so only the child's own leaks are reported.
[[noreturn]] void ExitChild(int rc) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_do_leak_check();
#endif
  ::_exit(rc);
}

// Reports read per readiness event: a worker flooding its channel can't
// starve the accepts; the caller polls again and gets the rest next batch.
constexpr int kReportBatch = 256;

bool SeqpacketPair(UniqueFd* a, UniqueFd* b) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return false;
  }
  // A SEQPACKET pair queues as many datagrams as the sender's buffer holds
  // (each hand-off costs ~768 bytes of it): the default 208 KiB lets a
  // worker fall ~270 hand-offs behind a connection burst before the master
  // must refuse. 2 MiB gives ~2,700. SO_SNDBUFFORCE (root) passes
  // net.core.wmem_max; without it the plain request is capped there.
  constexpr int kChannelBufferBytes = 2 << 20;
  for (int fd : fds) {
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &kChannelBufferBytes,
                     sizeof(kChannelBufferBytes)) != 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kChannelBufferBytes,
                   sizeof(kChannelBufferBytes));
    }
  }
  a->Reset(fds[0]);
  b->Reset(fds[1]);
  return true;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status))
    return absl::StrCat("exited with ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return "stopped";
}

}  // namespace

PoolSupervisor::PoolSupervisor(
    PoolOptions options, std::function<void(bool auth_process)> become_child,
    std::function<void(limits::SlotId)> release_slot)
    : options_(std::move(options)),
      become_child_(std::move(become_child)),
      release_slot_(std::move(release_slot)) {
  const size_t n =
      static_cast<size_t>(options_.workers < 1 ? 1 : options_.workers);
  slot_worker_.assign(n, 0);
  slot_last_spawn_.assign(n, absl::InfinitePast());
}

PoolSupervisor::~PoolSupervisor() = default;

absl::Status PoolSupervisor::Start(absl::Time now) {
  if (!SpawnAuth(now)) {
    return absl::UnavailableError("cannot start the auth process");
  }
  int started = 0;
  for (size_t i = 0; i < slot_worker_.size(); ++i) {
    if (SpawnWorker(static_cast<int>(i), now)) ++started;
  }
  if (started == 0) return absl::UnavailableError("cannot start any worker");
  core::Logf(Severity::kInfo, "Pool: %d worker%s, auth process %d", started,
             started == 1 ? "" : "s", auth_pid_);
  return absl::OkStatus();
}

void PoolSupervisor::CloseForChild() {
  auth_control_.Reset();
  for (auto& [id, worker] : workers_) worker->channel.Reset();
}

bool PoolSupervisor::SpawnAuth(absl::Time now) {
  auth_last_spawn_ = now;
  UniqueFd master_end, auth_end;
  if (!SeqpacketPair(&master_end, &auth_end)) {
    core::Logf(Severity::kCrit, "auth process: socketpair: %s",
               strerror(errno));
    return false;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    core::Logf(Severity::kCrit, "auth process: fork: %s", strerror(errno));
    return false;
  }
  if (pid == 0) {
    master_end.Reset();
    become_child_(/*auth_process=*/true);
    CloseForChild();
    ExitChild(options_.run_auth(std::move(auth_end)));
  }
  ::setpgid(pid, pid);  // as Master: the group exists before any kill(-pid)
  auth_pid_ = pid;
  auth_control_ = std::move(master_end);
  return true;
}

bool PoolSupervisor::SpawnWorker(int slot, absl::Time now) {
  slot_last_spawn_[static_cast<size_t>(slot)] = now;
  if (!auth_control_) return false;  // Maintain() retries after the auth
  UniqueFd master_end, worker_end, worker_auth, auth_end;
  if (!SeqpacketPair(&master_end, &worker_end) ||
      !SeqpacketPair(&worker_auth, &auth_end)) {
    core::Logf(Severity::kCrit, "worker: socketpair: %s", strerror(errno));
    return false;
  }
  // The auth end goes first: a worker must never start with a channel no
  // one serves (every PASS would time out).
  const std::string tag(1, kAuthChannelTag);
  if (absl::Status st = SendMessage(auth_control_.get(), tag, auth_end.get());
      !st.ok()) {
    core::Logf(Severity::kCrit,
               "worker: handing a channel to the auth "
               "process: %s",
               st.ToString());
    return false;
  }
  auth_end.Reset();
  const pid_t pid = ::fork();
  if (pid < 0) {
    core::Logf(Severity::kCrit, "worker: fork: %s", strerror(errno));
    return false;
  }
  if (pid == 0) {
    master_end.Reset();
    become_child_(/*auth_process=*/false);
    CloseForChild();
    ExitChild(options_.run_worker(std::move(worker_end), std::move(worker_auth)));
  }
  ::setpgid(pid, pid);
  auto worker = std::make_unique<Worker>();
  worker->id = next_worker_id_++;
  worker->slot = slot;
  worker->pid = pid;
  worker->channel = std::move(master_end);
  new_channels_.emplace_back(worker->id, worker->channel.get());
  slot_worker_[static_cast<size_t>(slot)] = worker->id;
  worker_by_pid_[pid] = worker->id;
  workers_[worker->id] = std::move(worker);
  return true;
}

size_t PoolSupervisor::live_workers() const {
  size_t n = 0;
  for (uint32_t id : slot_worker_) n += id != 0;
  return n;
}

bool PoolSupervisor::Dispatch(int fd, const SocketAddress& peer,
                              limits::SlotId slot) {
  const uint64_t session_id = next_session_id_;
  const std::string handoff = EncodeHandoff(Handoff{session_id, peer});
  // Least-loaded first; a worker that fails is skipped for this connection
  // only. N is small (one per CPU), so a scan per try is cheaper than
  // keeping a heap in order.
  absl::InlinedVector<uint32_t, 8> tried;  // no allocation for N <= 8
  for (size_t attempt = 0; attempt < slot_worker_.size(); ++attempt) {
    Worker* best = nullptr;
    for (uint32_t id : slot_worker_) {
      if (id == 0 || absl::c_linear_search(tried, id)) continue;
      auto it = workers_.find(id);
      if (it == workers_.end()) continue;
      Worker* w = it->second.get();
      if (w->draining || !w->channel) continue;
      if (best == nullptr || w->sessions.size() < best->sessions.size()) {
        best = w;
      }
    }
    if (best == nullptr) return false;
    if (options_.max_sessions_per_worker != 0 &&
        best->sessions.size() >= options_.max_sessions_per_worker) {
      return false;  // the least loaded is full: so is everyone
    }
    tried.push_back(best->id);
    // Non-blocking: EAGAIN means the worker has not read its last
    // hand-offs (stuck or overloaded); another worker gets this one.
    // EPIPE/ECONNRESET: it died; its exit is reaped separately.
    if (SendMessage(best->channel.get(), handoff, fd).ok()) {
      ++next_session_id_;
      best->sessions.insert(session_id);
      sessions_[session_id] = Session{best->id, slot};
      return true;
    }
  }
  return false;
}

void PoolSupervisor::HandleReport(Worker& worker, absl::string_view bytes) {
  // Untrusted: from an unprivileged worker.
  absl::StatusOr<WorkerReport> report = DecodeWorkerReport(bytes);
  if (!report.ok()) {
    ++bad_reports_;
    return;
  }
  switch (report->event) {
    case WorkerEvent::kSessionEnded: {
      auto it = sessions_.find(report->session_id);
      // Only the worker we handed the session to may end it.
      if (it == sessions_.end() || it->second.worker != worker.id) {
        ++bad_reports_;
        return;
      }
      release_slot_(it->second.slot);
      worker.sessions.erase(report->session_id);
      sessions_.erase(it);
      return;
    }
    case WorkerEvent::kAuthFailed:
      ++auth_failures_;
      return;
    case WorkerEvent::kAuthSucceeded:
      ++auth_successes_;
      return;
  }
  ++bad_reports_;
}

int PoolSupervisor::DrainReports(uint32_t id, absl::Time now) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return -1;
  Worker& worker = *it->second;
  if (!worker.channel) return -1;
  std::string bytes;
  for (int i = 0; i < kReportBatch; ++i) {
    absl::StatusOr<bool> got = ReceiveMessage(worker.channel.get(), &bytes,
                                              /*fd=*/nullptr);
    if (!got.ok()) {
      if (absl::IsUnavailable(got.status())) return worker.channel.get();
      ++bad_reports_;  // truncated datagram: consumed, skip it
      continue;
    }
    if (!*got) {
      // EOF: the worker exited or closed its end. It can't report any
      // more; its remaining sessions are released when it is reaped. A
      // worker that closed its end but lives on serves no new sessions and
      // is killed at the drain deadline.
      worker.channel.Reset();
      if (!worker.draining) {
        worker.draining = true;
        worker.kill_at = now + options_.drain_timeout + kKillGrace;
      }
      return -1;
    }
    HandleReport(worker, bytes);
  }
  return worker.channel.get();
}

std::vector<std::pair<uint32_t, int>> PoolSupervisor::TakeNewChannels() {
  return std::exchange(new_channels_, {});
}

void PoolSupervisor::Drain(Worker& worker, absl::Time now) {
  if (worker.slot >= 0) {
    slot_worker_[static_cast<size_t>(worker.slot)] = 0;
    worker.slot = -1;
  }
  worker.draining = true;
  worker.kill_at = now + options_.drain_timeout + kKillGrace;
  // SHUT_WR, not close: the worker sees EOF (no more hand-offs) while its
  // session-end reports still reach us, so slots come back one by one.
  if (worker.channel) ::shutdown(worker.channel.get(), SHUT_WR);
}

void PoolSupervisor::ReplaceWorkers(absl::Time now) {
  // Every worker still in a slot, including one whose channel hit EOF but
  // that is not reaped yet (its slot must be free for the new one).
  for (auto& [id, worker] : workers_) {
    if (!worker->draining || worker->slot >= 0) Drain(*worker, now);
  }
  for (size_t i = 0; i < slot_worker_.size(); ++i) {
    SpawnWorker(static_cast<int>(i), now);
  }
}

void PoolSupervisor::Reload(absl::Time now) {
  if (shutting_down_) return;
  if (auth_pid_ > 0) ::kill(auth_pid_, SIGHUP);
  ReplaceWorkers(now);
  core::Logf(Severity::kInfo, "SIGHUP: %d new worker%s", live_workers(),
             live_workers() == 1 ? "" : "s");
}

bool PoolSupervisor::OnChildExit(pid_t pid, int status, absl::Time now) {
  if (pid == auth_pid_) {
    auth_pid_ = -1;
    auth_control_.Reset();
    if (!shutting_down_) {
      core::Logf(Severity::kCrit, "Auth process %d %s; restarting it", pid,
                 DescribeExit(status));
    }
    Maintain(now);
    return true;
  }
  auto by_pid = worker_by_pid_.find(pid);
  if (by_pid == worker_by_pid_.end()) return false;
  const uint32_t id = by_pid->second;
  worker_by_pid_.erase(by_pid);
  auto it = workers_.find(id);
  Worker& worker = *it->second;
  // Its sockets are closed now: every session it still held is over.
  for (uint64_t session_id : worker.sessions) {
    auto s = sessions_.find(session_id);
    if (s == sessions_.end()) continue;
    release_slot_(s->second.slot);
    sessions_.erase(s);
  }
  // A drained worker exits 0; at shutdown we may have signalled it.
  const bool expected =
      (worker.draining && WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
      (shutting_down_ && WIFSIGNALED(status) &&
       (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL));
  if (!expected) {
    core::Logf(Severity::kCrit, "Worker %d %s; %d session%s lost", pid,
               DescribeExit(status), worker.sessions.size(),
               worker.sessions.size() == 1 ? "" : "s");
  }
  if (worker.slot >= 0) slot_worker_[static_cast<size_t>(worker.slot)] = 0;
  workers_.erase(it);
  Maintain(now);
  return true;
}

void PoolSupervisor::Maintain(absl::Time now) {
  if (shutting_down_) {
    EndAuthIfIdle();
    return;
  }
  if (auth_pid_ < 0) {
    if (now - auth_last_spawn_ < options_.respawn_interval) return;
    if (!SpawnAuth(now)) return;
    core::Logf(Severity::kInfo, "Auth process %d started; replacing workers",
               auth_pid_);
    // The running workers' auth channels led to the dead process.
    ReplaceWorkers(now);
    return;
  }
  for (size_t i = 0; i < slot_worker_.size(); ++i) {
    if (slot_worker_[i] != 0) continue;
    if (now - slot_last_spawn_[i] < options_.respawn_interval) continue;
    if (SpawnWorker(static_cast<int>(i), now)) {
      core::Logf(Severity::kInfo, "Worker slot %d: started worker %d", i,
                 workers_[slot_worker_[i]]->pid);
    }
  }
}

void PoolSupervisor::Tick(absl::Time now) {
  for (auto& [id, worker] : workers_) {
    if (now >= worker->kill_at) {
      core::Logf(Severity::kNotice, "Worker %d still draining; killing it",
                 worker->pid);
      ::kill(worker->pid, SIGKILL);
      worker->kill_at = absl::InfiniteFuture();
    }
  }
  Maintain(now);
}

void PoolSupervisor::BeginShutdown(absl::Time now) {
  shutting_down_ = true;
  for (auto& [id, worker] : workers_) Drain(*worker, now);
  EndAuthIfIdle();
}

void PoolSupervisor::EndAuthIfIdle() {
  if (!workers_.empty() || auth_pid_ < 0) return;
  // EOF on control ends it once in-flight work is done; SIGTERM in case it
  // is stuck in a backend call.
  if (auth_control_) {
    auth_control_.Reset();
    ::kill(auth_pid_, SIGTERM);
  }
}

void PoolSupervisor::SignalAll(int signal) {
  for (auto& [id, worker] : workers_) {
    if (::kill(-worker->pid, signal) != 0) ::kill(worker->pid, signal);
  }
  if (auth_pid_ > 0 && ::kill(-auth_pid_, signal) != 0) {
    ::kill(auth_pid_, signal);
  }
}

}  // namespace popgate::net
