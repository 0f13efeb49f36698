// Engine: one epoll event loop driving many client connections on one
// thread. Each client is a Behavior (scenario.h); the engine owns sockets,
// buffers, timers and the per-scenario stats, and never blocks except in
// epoll_wait.
//
// Life of a client: waiting (think time) -> connecting (non-blocking
// connect, bound to the next --source address) -> open (the behavior reads
// and writes) -> closed, outcome recorded -> waiting again, until the run's
// deadline. Level-triggered epoll; EPOLLOUT only while output is queued.
//
// Threading: Run() on one thread. Snapshot() and open_connections() may be
// called from any thread (the progress display).
#ifndef POPGATE_TOOLS_FLOOD_ENGINE_H_
#define POPGATE_TOOLS_FLOOD_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tools/flood/address.h"
#include "tools/flood/scenario.h"
#include "tools/flood/stats.h"

namespace popgate::flood {

// Which of all clients this engine runs: client g of a scenario belongs to
// the engine with g % (processes * threads) == process + thread * processes.
struct EngineSlice {
  int process = 0;
  int processes = 1;
  int thread = 0;
  int threads = 1;
  // Most sockets this engine may hold; clients beyond are not started and
  // counted in LocalLimits::clients_dropped.
  uint64_t fd_budget = UINT64_MAX;
};

class Engine {
 public:
  Engine(const Shared& shared, const SockAddr& target,
         const EngineSlice& slice);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs until `duration` has passed or `stop` becomes true (checked at
  // least every 100 ms). REQUIRES: called once.
  void Run(absl::Duration duration, const std::atomic<bool>& stop);

  // The stats so far (published a few times a second, and at the end).
  std::vector<ScenarioStats> Snapshot() const;
  LocalLimits limits() const;
  // How long the last Run() drove load (its loop, not setup or teardown).
  absl::Duration elapsed() const { return elapsed_; }
  uint64_t open_connections() const {
    return open_.load(std::memory_order_relaxed);
  }

 private:
  struct Client;
  enum class Phase { kWaiting, kConnecting, kOpen };
  static constexpr int64_t kNever = INT64_MAX;

  int64_t NowUs() const;
  void StartConnect(Client& c);
  void OnEvent(Client& c, uint32_t events);
  void OnConnectDone(Client& c);
  void ReadAvailable(Client& c);
  void FlushOutput(Client& c);
  void AfterCallback(Client& c);
  void Close(Client& c, Outcome outcome);
  void ScheduleNext(Client& c, absl::Duration delay);
  void SetDeadline(Client& c, int64_t at_us);
  void RunTimers(int64_t now_us);
  void UpdateInterest(Client& c);
  void Publish();

  const Shared shared_;
  const SockAddr target_;
  const EngineSlice slice_;
  int epoll_fd_ = -1;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<ScenarioStats> stats_;  // one per --scenario, this thread only
  LocalLimits limits_;
  // Min-heap of (deadline, client index); stale entries are skipped.
  using TimerEntry = std::pair<int64_t, uint32_t>;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>,
                      std::greater<TimerEntry>>
      timers_;
  std::vector<uint32_t> ready_;  // clients to connect in the next iteration
  std::string read_buffer_;
  int64_t start_us_ = 0;
  bool running_ = false;
  absl::Duration elapsed_;

  std::atomic<uint64_t> open_{0};
  mutable absl::Mutex mu_;
  std::vector<ScenarioStats> published_ ABSL_GUARDED_BY(mu_);
  LocalLimits published_limits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_ENGINE_H_
