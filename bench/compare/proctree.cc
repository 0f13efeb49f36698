// proctree: CPU time and memory of a process tree, sampled from /proc.
//
//   proctree --root=PID [--interval-ms=200] [--max-seconds=600]
//
// Samples the tree rooted at PID (PID and every live descendant) until SIGTERM,
// SIGINT, or --max-seconds, then prints one JSON line on stdout:
//   {"root":PID,"clk_tck":100,"ticks_start":N,"ticks_end":N,"cpu_s":X,
//    "peak_rss_kb":N,"peak_pss_kb":N,"peak_pss_anon_kb":N,"peak_procs":N,
//    "peak_zombies":N,"samples":N,"root_alive":B}
// CPU ticks of the tree = sum over live processes of utime+stime+cutime+cstime.
// A child that exits and is reaped moves its time (and its reaped children's)
// into its parent's cutime/cstime, so the sum stays consistent across exits as
// long as the server reaps its children (popa3d, Dovecot and popgate all do).
// peak_rss_kb is the largest sum of RSS over the tree (shared pages counted once
// per process, so it overstates forking servers); peak_pss_kb is the largest sum
// of PSS (/proc/PID/smaps_rollup), which splits shared pages fairly;
// peak_pss_anon_kb the same for anonymous memory only (mapped mailbox files
// are page cache and show in PSS but not here). Zombies are counted in procs.
// Part of bench/compare (run.sh); built with g++ -O2 -std=c++20.

#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Proc {
  int pid = 0;
  int ppid = 0;
  long long ticks = 0;  // utime + stime + cutime + cstime
  long long rss_pages = 0;
  bool zombie = false;
};

bool ReadFile(const char* path, std::string* out) {
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return false;
  char buf[4096];
  out->clear();
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  std::fclose(f);
  return true;
}

bool ReadStat(int pid, Proc* p) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  std::string s;
  if (!ReadFile(path, &s)) return false;
  size_t close = s.rfind(')');
  if (close == std::string::npos) return false;
  // Fields after ") ": 3 state, 4 ppid, ... 14 utime, 15 stime, 16 cutime,
  // 17 cstime, ... 24 rss.
  std::vector<long long> f;
  const char* c = s.c_str() + close + 2;
  p->zombie = (*c == 'Z');
  f.push_back(0);  // state placeholder (field 3)
  while (*c && *c != ' ') ++c;
  while (*c) {
    while (*c == ' ') ++c;
    if (!*c) break;
    char* end;
    long long v = std::strtoll(c, &end, 10);
    f.push_back(v);
    c = end;
    while (*c && *c != ' ') ++c;
    if (f.size() > 22) break;
  }
  // f[0] = field 3, so field k is f[k - 3].
  if (f.size() < 22) return false;
  p->pid = pid;
  p->ppid = static_cast<int>(f[4 - 3]);
  p->ticks = f[14 - 3] + f[15 - 3] + f[16 - 3] + f[17 - 3];
  p->rss_pages = f[24 - 3];
  return true;
}

// PSS and its anonymous part (Pss_Anon: heap, stacks, private copies; not
// mapped mailbox files, which are page cache) from smaps_rollup, in kB.
void PssKb(int pid, long long* pss, long long* pss_anon) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
  std::string s;
  if (!ReadFile(path, &s)) return;
  size_t at = s.find("\nPss:");
  if (at != std::string::npos) *pss += std::strtoll(s.c_str() + at + 5, nullptr, 10);
  at = s.find("\nPss_Anon:");
  if (at != std::string::npos) *pss_anon += std::strtoll(s.c_str() + at + 10, nullptr, 10);
}

struct Sample {
  long long ticks = 0;
  long long rss_kb = 0;
  long long pss_kb = 0;
  long long pss_anon_kb = 0;
  int procs = 0;
  int zombies = 0;
  bool root_alive = false;
};

Sample TakeSample(int root, bool with_pss) {
  std::vector<Proc> all;
  DIR* d = opendir("/proc");
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      Proc p;
      if (ReadStat(std::atoi(e->d_name), &p)) all.push_back(p);
    }
    closedir(d);
  }
  std::unordered_map<int, std::vector<int>> kids;
  std::unordered_map<int, size_t> index;
  for (size_t i = 0; i < all.size(); ++i) {
    kids[all[i].ppid].push_back(all[i].pid);
    index[all[i].pid] = i;
  }
  Sample out;
  static const long page_kb = sysconf(_SC_PAGESIZE) / 1024;
  std::vector<int> stack{root};
  while (!stack.empty() && out.procs < 100000) {
    int pid = stack.back();
    stack.pop_back();
    auto it = index.find(pid);
    if (it == index.end()) continue;
    const Proc& p = all[it->second];
    if (pid == root) out.root_alive = true;
    out.ticks += p.ticks;
    out.rss_kb += p.rss_pages * page_kb;
    if (with_pss && !p.zombie) PssKb(pid, &out.pss_kb, &out.pss_anon_kb);
    ++out.procs;
    if (p.zombie) ++out.zombies;
    auto k = kids.find(pid);
    if (k != kids.end()) stack.insert(stack.end(), k->second.begin(), k->second.end());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int root = 0;
  long interval_ms = 200;
  double max_seconds = 600;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--root=", 7) == 0) root = std::atoi(argv[i] + 7);
    else if (std::strncmp(argv[i], "--interval-ms=", 14) == 0) interval_ms = std::atol(argv[i] + 14);
    else if (std::strncmp(argv[i], "--max-seconds=", 14) == 0) max_seconds = std::atof(argv[i] + 14);
    else {
      std::fprintf(stderr, "usage: proctree --root=PID [--interval-ms=200] [--max-seconds=600]\n");
      return 2;
    }
  }
  if (root <= 0 || interval_ms <= 0) {
    std::fprintf(stderr, "proctree: --root=PID required\n");
    return 2;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  Sample first = TakeSample(root, true);
  long long peak_rss = first.rss_kb, peak_pss = first.pss_kb, peak_anon = first.pss_anon_kb;
  int peak_procs = first.procs, peak_zombies = first.zombies, samples = 1;
  Sample last = first;
  while (!g_stop) {
    timespec req{interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    nanosleep(&req, nullptr);
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
    Sample s = TakeSample(root, true);
    ++samples;
    if (!s.root_alive) break;
    last = s;
    if (s.rss_kb > peak_rss) peak_rss = s.rss_kb;
    if (s.pss_kb > peak_pss) peak_pss = s.pss_kb;
    if (s.pss_anon_kb > peak_anon) peak_anon = s.pss_anon_kb;
    if (s.procs > peak_procs) peak_procs = s.procs;
    if (s.zombies > peak_zombies) peak_zombies = s.zombies;
    if (el >= max_seconds) break;
  }
  // One last CPU reading after the load stopped (children reaped by then).
  Sample end = TakeSample(root, false);
  if (end.root_alive) last.ticks = end.ticks;
  long tck = sysconf(_SC_CLK_TCK);
  std::printf(
      "{\"root\":%d,\"clk_tck\":%ld,\"ticks_start\":%lld,\"ticks_end\":%lld,\"cpu_s\":%.3f,"
      "\"peak_rss_kb\":%lld,\"peak_pss_kb\":%lld,\"peak_pss_anon_kb\":%lld,"
      "\"peak_procs\":%d,\"peak_zombies\":%d,\"samples\":%d,\"root_alive\":%s}\n",
      root, tck, first.ticks, last.ticks, double(last.ticks - first.ticks) / double(tck),
      peak_rss, peak_pss, peak_anon, peak_procs, peak_zombies, samples,
      end.root_alive ? "true" : "false");
  return 0;
}
