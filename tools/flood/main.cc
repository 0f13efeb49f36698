// popgate-flood: load and flood generator for POP3 servers. A black-box
// client: it includes no server header, so it cannot share a parser bug with
// the server it measures. Flags: Usage() in options.cc, or --help.
//
// Scenarios (combinable; NAME:N runs N concurrent clients, each looping):
//   poll             USER, PASS, STAT, UIDL, QUIT; UIDLs checked across runs
//   download         USER, PASS, STAT, LIST, RETR x K, [DELE], QUIT
//   retr-throughput  download whole mailboxes; payload MB/s
//   connect-close    connect and close at once
//   hold-idle        connect, read the greeting, hold until closed
//   slowloris        "USER aaaa..." one byte per --slowloris-interval
//   guess            USER + wrong PASS until the server cuts us off
//   overlong         one --overlong-bytes line, then QUIT
//   junk             --junk-bytes of random bytes, then QUIT
//   pipeline-bomb    --bomb-commands "USER bomb" in one write, then QUIT
//   no-read          log in, --no-read-retrs RETRs, never read
//
// Examples (one command each):
//   popgate-flood --target=127.0.0.1:1110 --user=demo --pass=demo
//       --scenario=poll:8,download:2 --duration=10s
//   popgate-flood --target=127.0.0.1:1110 --users=users.txt
//       --scenario=poll:8,connect-close:50,hold-idle:2000
//       --source=127.0.0.2-127.0.0.51 --max-connections=5000 --json=out.json
//   popgate-flood --scenario=hold-idle:40000 --max-connections=40000
//       --processes=3 --source=127.0.1.1-127.0.1.250  (past 20,000 fds)
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>
#include <vector>

#include "tools/flood/address.h"
#include "tools/flood/options.h"
#include "tools/flood/report.h"
#include "tools/flood/runner.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  using namespace popgate::flood;
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<Options> options = ParseOptions(args);
  if (!options.ok()) {
    if (absl::IsCancelled(options.status())) {  // --help
      fputs(std::string(options.status().message()).c_str(), stdout);
      return 0;
    }
    fprintf(stderr, "popgate-flood: %s\n",
            std::string(options.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<SockAddr> target =
      ResolveTarget(options->target, options->allow_targets);
  if (!target.ok()) {
    fprintf(stderr, "popgate-flood: %s\n",
            std::string(target.status().message()).c_str());
    return 2;
  }

  // Ctrl-C ends the run early but still prints the report.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const uint64_t fd_limit = RaiseFdLimit();
  const bool progress =
      options->progress == Options::Progress::kOn ||
      (options->progress == Options::Progress::kAuto && isatty(STDERR_FILENO));
  absl::StatusOr<RunReport> report =
      RunAll(*options, *target, fd_limit, progress, g_stop);
  if (!report.ok()) {
    fprintf(stderr, "popgate-flood: %s\n",
            std::string(report.status().message()).c_str());
    return 1;
  }
  const std::string json = RenderJson(*report);
  if (options->json_stdout) {
    fputs(json.c_str(), stdout);
  } else {
    fputs(RenderTable(*report).c_str(), stdout);
  }
  if (!options->json_path.empty()) {
    std::ofstream out(options->json_path);
    out << json;
    if (!out) {
      fprintf(stderr, "popgate-flood: cannot write %s\n",
              options->json_path.c_str());
      return 1;
    }
  }
  return 0;
}
