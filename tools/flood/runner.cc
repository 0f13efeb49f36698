#include "tools/flood/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tools/flood/engine.h"
#include "tools/flood/listing.h"
#include "tools/flood/report.h"

namespace popgate::flood {
namespace {

bool AnyDele(const Options& o) {
  if (!o.dele) return false;
  for (const ScenarioSpec& s : o.scenarios) {
    if (s.kind == ScenarioKind::kDownload) return true;
  }
  return false;
}

// Writes all of `data`; false on error.
bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += n;
  }
  return true;
}

// Prints the live line: \r + text + erase to end of line, no newline.
void PrintProgress(const std::string& line) {
  fprintf(stderr, "\r%s\033[K", line.c_str());
  fflush(stderr);
}

constexpr size_t kMaxFramePayload = 64 << 20;

}  // namespace

std::string EncodeFrame(const WorkerFrame& frame) {
  return absl::StrCat(std::string(1, frame.kind), " ", frame.open, " ",
                      frame.payload.size(), "\n", frame.payload);
}

absl::StatusOr<bool> DecodeFrame(std::string* buffer, WorkerFrame* frame) {
  const size_t eol = buffer->find('\n');
  if (eol == std::string::npos) {
    if (buffer->size() > 64) {
      return absl::InvalidArgumentError("worker frame: header too long");
    }
    return false;
  }
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(*buffer).substr(0, eol), ' ');
  uint64_t open = 0, length = 0;
  if (parts.size() != 3 || parts[0].size() != 1 ||
      (parts[0][0] != 'P' && parts[0][0] != 'F') ||
      !absl::SimpleAtoi(parts[1], &open) ||
      !absl::SimpleAtoi(parts[2], &length) || length > kMaxFramePayload) {
    return absl::InvalidArgumentError("worker frame: bad header");
  }
  if (buffer->size() < eol + 1 + length) return false;
  frame->kind = parts[0][0];
  frame->open = open;
  frame->payload = buffer->substr(eol + 1, length);
  buffer->erase(0, eol + 1 + length);
  return true;
}

uint64_t RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : rl.rlim_cur;
}

RunReport RunLoad(const Options& options, const SockAddr& target,
                  uint64_t fd_limit, int process, int processes,
                  const ProgressFn& progress, const std::atomic<bool>& stop) {
  UidlTracker uidls(AnyDele(options));
  Shared shared{&options, &uidls};
  const int threads = options.threads;
  const uint64_t usable = fd_limit > kReservedFds ? fd_limit - kReservedFds : 1;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int t = 0; t < threads; ++t) {
    EngineSlice slice{process, processes, t, threads, usable / threads};
    engines.push_back(std::make_unique<Engine>(shared, target, slice));
  }

  const absl::Time start = absl::Now();
  std::atomic<int> running{threads};
  absl::Notification all_done;
  std::vector<std::thread> workers;
  for (auto& e : engines) {
    workers.emplace_back([&, engine = e.get()] {
      engine->Run(options.duration, stop);
      if (running.fetch_sub(1) == 1) all_done.Notify();
    });
  }

  auto collect = [&] {
    RunReport r;
    for (auto& e : engines) {
      std::vector<ScenarioStats> s = e->Snapshot();
      if (r.scenarios.empty()) {
        r.scenarios = std::move(s);
      } else {
        for (size_t i = 0; i < s.size(); ++i) r.scenarios[i].Merge(s[i]);
      }
      r.limits.Merge(e->limits());
    }
    r.threads = threads;
    r.processes = processes;
    r.target = target.ToString();
    r.sources = options.source_text;
    r.limits.fd_limit = fd_limit;
    return r;
  };
  // Bounded by the duration: engines stop by themselves.
  while (!all_done.WaitForNotificationWithTimeout(absl::Seconds(1))) {
    if (!progress) continue;
    RunReport live = collect();
    live.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    uint64_t open = 0;
    for (auto& e : engines) open += e->open_connections();
    progress(live, open);
  }
  for (std::thread& t : workers) t.join();

  RunReport report = collect();
  // Rates are over the time load was applied, not thread start and join.
  absl::Duration longest;
  for (auto& e : engines) longest = std::max(longest, e->elapsed());
  report.seconds = absl::ToDoubleSeconds(longest);
  return report;
}

absl::StatusOr<RunReport> RunAll(const Options& options, const SockAddr& target,
                                 uint64_t fd_limit, bool show_progress,
                                 const std::atomic<bool>& stop) {
  const int n = options.processes;
  if (n == 1) {
    ProgressFn print;
    if (show_progress) {
      print = [](const RunReport& r, uint64_t open) {
        PrintProgress(RenderProgress(r, r.seconds, open));
      };
    }
    RunReport r = RunLoad(options, target, fd_limit, 0, 1, print, stop);
    if (show_progress) fprintf(stderr, "\r\033[K");
    return r;
  }

  std::vector<pid_t> pids;
  std::vector<int> fds;
  for (int p = 0; p < n; ++p) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
    }
    const pid_t pid = fork();
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
    }
    if (pid == 0) {
      // Worker: no threads exist yet in the parent, so fork was safe.
      close(pipe_fds[0]);
      for (int fd : fds) close(fd);
      const int out = pipe_fds[1];
      ProgressFn report_progress = [out](const RunReport& r, uint64_t open) {
        // A failed progress write only costs the live line; the final
        // write's result decides the exit status.
        WriteAll(out, EncodeFrame({'P', open, r.Serialize()}));
      };
      RunReport r =
          RunLoad(options, target, fd_limit, p, n, report_progress, stop);
      _exit(WriteAll(out, EncodeFrame({'F', 0, r.Serialize()})) ? 0 : 1);
    }
    close(pipe_fds[1]);
    pids.push_back(pid);
    fds.push_back(pipe_fds[0]);
  }

  // Workers stop by themselves after the duration; allow for the connect
  // timeout and the final merge, then give up on them.
  const absl::Time start = absl::Now();
  const absl::Time give_up =
      start + options.duration + options.connect_timeout + absl::Seconds(30);
  std::vector<bool> open(n, true);
  std::vector<std::string> buffers(n);
  std::vector<std::optional<RunReport>> latest(n), finals(n);
  std::vector<uint64_t> open_conns(n, 0);
  absl::Status failure;
  int remaining = n;
  absl::Time next_progress = start + absl::Seconds(1);
  bool forwarded_stop = false;
  while (remaining > 0 && absl::Now() < give_up) {
    if (stop.load() && !forwarded_stop) {
      // A SIGTERM meant for the run reached only us: pass it on so the
      // workers stop early and still report.
      for (pid_t pid : pids) kill(pid, SIGTERM);
      forwarded_stop = true;
    }
    std::vector<pollfd> pfds;
    std::vector<int> which;
    for (int p = 0; p < n; ++p) {
      if (open[p]) {
        pfds.push_back({fds[p], POLLIN, 0});
        which.push_back(p);
      }
    }
    const int rc = poll(pfds.data(), pfds.size(), 250);
    if (rc < 0 && errno != EINTR) break;
    for (size_t i = 0; rc > 0 && i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) continue;
      const int p = which[i];
      char buf[65536];
      const ssize_t got = read(pfds[i].fd, buf, sizeof(buf));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        open[p] = false;
        --remaining;
        continue;
      }
      buffers[p].append(buf, got);
      // Bounded: each pass takes a frame off the buffer.
      while (true) {
        WorkerFrame frame;
        absl::StatusOr<bool> ready = DecodeFrame(&buffers[p], &frame);
        if (!ready.ok()) {
          failure = ready.status();
          break;
        }
        if (!*ready) break;
        absl::StatusOr<RunReport> r = RunReport::Deserialize(frame.payload);
        if (!r.ok()) {
          failure = r.status();
          break;
        }
        (frame.kind == 'F' ? finals[p] : latest[p]) = *std::move(r);
        open_conns[p] = frame.open;
      }
    }
    if (show_progress && absl::Now() >= next_progress) {
      RunReport live;
      uint64_t open_total = 0;
      for (int p = 0; p < n; ++p) {
        const std::optional<RunReport>& r = finals[p] ? finals[p] : latest[p];
        if (!r) continue;
        if (live.scenarios.empty()) {
          live = *r;
        } else {
          live.Merge(*r).IgnoreError();  // Same options: shapes match.
        }
        open_total += finals[p] ? 0 : open_conns[p];
      }
      if (!live.scenarios.empty()) {
        live.seconds = absl::ToDoubleSeconds(absl::Now() - start);
        PrintProgress(
            absl::StrCat(RenderProgress(live, live.seconds, open_total), "  [",
                         remaining, "/", n, " workers]"));
      }
      next_progress += absl::Seconds(1);
    }
  }
  if (show_progress) fprintf(stderr, "\r\033[K");
  for (int p = 0; p < n; ++p) {
    if (open[p]) kill(pids[p], SIGKILL);
    close(fds[p]);
  }
  for (int p = 0; p < n; ++p) {
    int status = 0;
    while (waitpid(pids[p], &status, 0) < 0 && errno == EINTR) {
    }
    if (failure.ok() && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
      failure = absl::InternalError(
          absl::StrCat("worker process ", p, " failed (status ", status, ")"));
    }
  }
  if (!failure.ok()) return failure;

  RunReport merged;
  for (int p = 0; p < n; ++p) {
    if (!finals[p]) {
      return absl::InternalError(
          absl::StrCat("worker process ", p, " sent no final report"));
    }
    if (p == 0) {
      merged = *std::move(finals[p]);
    } else if (absl::Status st = merged.Merge(*finals[p]); !st.ok()) {
      return st;
    }
  }
  merged.processes = n;
  return merged;
}

}  // namespace popgate::flood
