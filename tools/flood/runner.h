// Runs a load: one Engine per thread in this process, or --processes forked
// workers that each run their share and stream their RunReport back over a
// pipe (progress once a second, then the final one) to be merged. Also
// raises the fd limit and drives the progress line.
//
// Threading: call from the main thread; RunAll forks, so it must run before
// any thread is started.
#ifndef POPGATE_TOOLS_FLOOD_RUNNER_H_
#define POPGATE_TOOLS_FLOOD_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "tools/flood/address.h"
#include "tools/flood/options.h"
#include "tools/flood/stats.h"

namespace popgate::flood {

// Raises RLIMIT_NOFILE's soft limit to the hard one and returns the soft
// limit now in force.
uint64_t RaiseFdLimit();

// Sockets per process are the fd limit minus this many for the epoll fds,
// pipes, stdio and the libraries' own.
inline constexpr uint64_t kReservedFds = 64;

// Called about once a second during a run with the stats so far (seconds =
// time since the start) and the connections open now.
using ProgressFn = std::function<void(const RunReport& so_far, uint64_t open)>;

// Runs share `process` of `processes` with options.threads engine threads
// for options.duration or until `stop`. `progress` may be empty.
RunReport RunLoad(const Options& options, const SockAddr& target,
                  uint64_t fd_limit, int process, int processes,
                  const ProgressFn& progress, const std::atomic<bool>& stop);

// RunLoad in this process when options.processes == 1, else forks that many
// workers and merges their reports. With `show_progress`, a live line on
// stderr. Internal on a worker that crashed or sent a bad report.
absl::StatusOr<RunReport> RunAll(const Options& options, const SockAddr& target,
                                 uint64_t fd_limit, bool show_progress,
                                 const std::atomic<bool>& stop);

// Worker-to-parent framing: "<kind> <open> <length>\n" then `length` bytes
// of RunReport::Serialize(). kind 'P' = progress, 'F' = final.
struct WorkerFrame {
  char kind = 'F';
  uint64_t open = 0;
  std::string payload;
};
std::string EncodeFrame(const WorkerFrame& frame);
// Takes one complete frame off the front of `buffer` into `frame`: true if
// it did, false if more bytes are needed. InvalidArgument on a bad header
// (or a payload over 64 MiB, far beyond any report).
absl::StatusOr<bool> DecodeFrame(std::string* buffer, WorkerFrame* frame);

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_RUNNER_H_
