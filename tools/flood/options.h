// Command-line options of popgate-flood and their parser.
//
// Parsing is separate from main() so it is testable and so --processes
// workers inherit one parsed copy across fork().
#ifndef POPGATE_TOOLS_FLOOD_OPTIONS_H_
#define POPGATE_TOOLS_FLOOD_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/flood/address.h"
#include "tools/flood/stats.h"

namespace popgate::flood {

struct ScenarioSpec {
  ScenarioKind kind;
  int clients;  // concurrent clients (each has at most one connection)
};

struct Credentials {
  std::string user;
  std::string pass;
};

struct Options {
  HostPort target{"127.0.0.1", 110};
  std::vector<std::string> allow_targets;
  // --source as given, and expanded; empty = let the kernel choose.
  std::string source_text;
  std::vector<SockAddr> sources;

  std::vector<ScenarioSpec> scenarios;
  std::vector<Credentials> users;
  // Password the guess scenario sends; "%d" becomes a counter.
  std::string wrong_pass = "wrong-%d";

  // Default: the number of cores.
  int threads = 0;
  int processes = 1;
  // Bounds every run: it stops by itself. 10 s is enough for stable
  // percentiles at thousands of sessions per second.
  absl::Duration duration = absl::Seconds(10);
  // Sum of clients over all scenarios may not exceed this: a typo must not
  // open 100,000 sockets by surprise.
  int max_connections = 1000;
  // No reply byte for this long fails a session with "timeout". RFC 1939
  // servers answer at once; 10 s tolerates auth penalty delays.
  absl::Duration timeout = absl::Seconds(10);
  // A handshake not done by then is "connect-timeout" (SYN dropped because
  // the listen backlog is full: the kernel retries after 1 s, 3 s, ...).
  absl::Duration connect_timeout = absl::Seconds(5);

  // Legit sessions.
  absl::Duration think = absl::ZeroDuration();
  int retr = 0;  // 0 = all messages
  bool dele = false;
  bool pipeline = false;

  // Attacks.
  absl::Duration slowloris_interval = absl::Seconds(5);
  int overlong_bytes = 64 * 1024;
  int junk_bytes = 1 << 20;
  int bomb_commands = 10000;
  int no_read_retrs = 100;

  // Output.
  bool json_stdout = false;  // --json: JSON instead of the table
  std::string json_path;     // --json=PATH: JSON to PATH, table as usual
  enum class Progress { kAuto, kOn, kOff } progress = Progress::kAuto;

  int TotalClients() const;
};

// Parses argv[1..]. Flags take "--name=value" or "--name value". Validates
// everything that does not need the network (the target is resolved and
// checked later by ResolveTarget). InvalidArgument with the flag's name;
// NotFound if --users=FILE cannot be read. A request for --help returns
// a Cancelled status whose message is the usage text.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

// Expands --user-pattern (one "%d") over --user-range "A-B" (inclusive);
// every user gets `pass`. InvalidArgument on a bad pattern or range.
absl::StatusOr<std::vector<Credentials>> ExpandUserPattern(
    absl::string_view pattern, absl::string_view range, absl::string_view pass);

// Parses "user:pass" lines; blank lines and '#' comments are skipped.
absl::StatusOr<std::vector<Credentials>> ParseUsersFile(
    absl::string_view contents);

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_OPTIONS_H_
