// The --mode=pool half of the -D master: forks and supervises the auth
// process and N workers, hands admitted connections to the least-loaded
// worker, and turns worker reports and exits into released admission slots.
//
// Callers: net/accept_loop.cc (Master), which owns the ring and the signals
// and calls in here on events: Dispatch() per admitted connection,
// DrainReports() when a worker channel is readable, OnChildExit() per
// reaped pid, Tick() about once a second, Reload() on SIGHUP,
// BeginShutdown() on SIGTERM.
//
// Processes (all forked from the master, so they start with its memory and
// privileges; `become_child` closes the master's ring, listeners and
// signalfd and restores the signal mask, and this class closes every
// channel the child must not hold, so a worker sees EOF when the master
// dies):
//  - the auth process: one `control` socketpair; keeps the master's
//    privileges (PAM/shadow need root);
//  - worker i: a master channel (Handoff + fd down, WorkerReport up) and
//    an auth channel whose other end goes to the auth process over
//    `control` (SCM_RIGHTS, payload kAuthChannelTag). `run_worker` drops
//    privileges in the child.
//
// Policies:
//  - a worker that dies loses its sessions (their slots are released) and
//    is respawned in its slot, at most once per respawn_interval per slot;
//  - the auth process that dies is respawned (same pacing), and then every
//    worker is replaced gracefully, as on SIGHUP: the old workers hold
//    channels to the dead process, and handing a fresh end to a running
//    worker would need a second message kind for little gain (their
//    sessions already past PASS are unaffected by the drain);
//  - "drain" a worker = shutdown(SHUT_WR) on its master channel: it sees
//    EOF, takes no more sessions and exits when its sessions end, while we
//    still read its reports (so slots come back one by one). A draining
//    worker still alive drain_timeout + kKillGrace later gets SIGKILL.
//
// Trust: workers are unprivileged and parse client bytes. Their reports are
// decoded strictly; a session id is honoured only from the worker it was
// handed to, so a compromised worker can release only its own slots.
// Threading: single-threaded, the master's loop.
#ifndef POPGATE_NET_POOL_SUPERVISOR_H_
#define POPGATE_NET_POOL_SUPERVISOR_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "limits/flood_table.h"
#include "net/address.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct PoolOptions {
  // Worker processes (>= 1).
  int workers = 1;
  // Sessions the master hands one worker at most; 0 = no cap here (the
  // worker enforces its own PoolWorkerEnvironment::max_sessions).
  size_t max_sessions_per_worker = 0;
  // Crash-loop pacing: at most one spawn per worker slot (and of the auth
  // process) per interval.
  absl::Duration respawn_interval = absl::Seconds(1);
  // A draining worker still alive after drain_timeout + kKillGrace is
  // killed (its own drain deadline should have ended it first).
  absl::Duration drain_timeout = absl::Seconds(600);
  // In the auth child: serve `control` until EOF; returns the exit status.
  std::function<int(UniqueFd control)> run_auth;
  // In a worker child, still with the master's privileges: set up, drop
  // privileges and serve; returns the exit status.
  std::function<int(UniqueFd master_channel, UniqueFd auth_channel)> run_worker;
};

class PoolSupervisor {
 public:
  static constexpr absl::Duration kKillGrace = absl::Seconds(5);

  // `become_child` runs first in every forked child (see the file comment);
  // its argument is true in the auth process, which must keep SIGHUP
  // blocked (it reads SIGHUP from a signalfd; an unblocked window would let
  // an early SIGHUP kill it).
  // `release_slot` runs in the master when a session's slot may go: the
  // worker reported its end, or the worker died.
  PoolSupervisor(PoolOptions options,
                 std::function<void(bool auth_process)> become_child,
                 std::function<void(limits::SlotId)> release_slot);
  // Closes the channels (children see EOF and wind down); kills nobody.
  ~PoolSupervisor();
  PoolSupervisor(const PoolSupervisor&) = delete;
  PoolSupervisor& operator=(const PoolSupervisor&) = delete;

  // Forks the auth process, then the workers. Unavailable if the auth
  // process or no worker at all could be started (a startup failure the
  // operator must see); a partial start is logged and repaired by Tick().
  absl::Status Start(absl::Time now);

  // Hands `fd` to the live, non-draining worker with the fewest sessions
  // (the next one if its channel is full: EAGAIN means a stuck worker).
  // true: handed off and tracked with `slot` (the caller still closes its
  // own copy of fd). false: no worker took it; nothing is tracked.
  bool Dispatch(int fd, const SocketAddress& peer, limits::SlotId slot);

  // Worker `id`'s channel is readable or hung up: reads every pending
  // report (at most a batch; the caller polls again). Returns the channel
  // fd to poll again, or -1 (EOF or an unknown/stale id).
  int DrainReports(uint32_t id, absl::Time now);

  // Channels opened since the last call, as (worker id, fd) for the caller
  // to poll. Ids are never reused, so a stale completion is recognised.
  std::vector<std::pair<uint32_t, int>> TakeNewChannels();

  // A reaped child. false if the pid is not one of ours.
  bool OnChildExit(pid_t pid, int status, absl::Time now);
  // About once a second: due respawns, drain deadlines.
  void Tick(absl::Time now);
  // SIGHUP: SIGHUP to the auth process (it re-reads its account source),
  // then replace every worker gracefully; new connections go only to the
  // new workers.
  void Reload(absl::Time now);
  // SIGTERM: drain every worker; the auth process gets EOF and SIGTERM
  // once the last worker has exited. No respawns from here on.
  void BeginShutdown(absl::Time now);
  // `signal` to every child (the second SIGTERM, or SIGKILL at the drain
  // deadline).
  void SignalAll(int signal);

  // After BeginShutdown: every child has been reaped.
  bool finished() const {
    return shutting_down_ && workers_.empty() && auth_pid_ < 0;
  }
  size_t sessions() const { return sessions_.size(); }
  size_t live_workers() const;
  pid_t auth_pid() const { return auth_pid_; }
  // Reports counted: auth outcomes from workers, malformed datagrams.
  uint64_t auth_failures() const { return auth_failures_; }
  uint64_t auth_successes() const { return auth_successes_; }
  uint64_t bad_reports() const { return bad_reports_; }

 private:
  struct Worker {
    uint32_t id = 0;
    int slot = -1;  // index into slot_worker_, -1 once draining
    pid_t pid = -1;
    UniqueFd channel;  // master end; reset at EOF
    bool draining = false;
    absl::Time kill_at = absl::InfiniteFuture();
    absl::flat_hash_set<uint64_t> sessions;
  };
  struct Session {
    uint32_t worker = 0;
    limits::SlotId slot;
  };

  bool SpawnAuth(absl::Time now);
  bool SpawnWorker(int slot, absl::Time now);
  void Drain(Worker& worker, absl::Time now);
  void ReplaceWorkers(absl::Time now);
  void Maintain(absl::Time now);
  void EndAuthIfIdle();
  // In a forked child: close every channel this object holds.
  void CloseForChild();
  void HandleReport(Worker& worker, absl::string_view bytes);

  PoolOptions options_;
  std::function<void(bool auth_process)> become_child_;
  std::function<void(limits::SlotId)> release_slot_;

  pid_t auth_pid_ = -1;
  UniqueFd auth_control_;
  absl::Time auth_last_spawn_ = absl::InfinitePast();

  // Worker id in each slot (0 = empty) and when the slot last spawned.
  std::vector<uint32_t> slot_worker_;
  std::vector<absl::Time> slot_last_spawn_;
  absl::flat_hash_map<uint32_t, std::unique_ptr<Worker>> workers_;
  absl::flat_hash_map<pid_t, uint32_t> worker_by_pid_;
  absl::flat_hash_map<uint64_t, Session> sessions_;
  std::vector<std::pair<uint32_t, int>> new_channels_;
  uint32_t next_worker_id_ = 1;
  uint64_t next_session_id_ = 1;
  bool shutting_down_ = false;
  uint64_t auth_failures_ = 0;
  uint64_t auth_successes_ = 0;
  uint64_t bad_reports_ = 0;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_POOL_SUPERVISOR_H_
