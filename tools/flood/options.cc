#include "tools/flood/options.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace popgate::flood {
namespace {

// Caps on numeric flags: high enough for any loopback test, low enough that
// a typo cannot ask for absurd memory or time.
constexpr int kMaxThreads = 256;
constexpr int kMaxProcesses = 64;
constexpr int kMaxClients = 1000000;
constexpr int kMaxPayloadFlag = 64 << 20;
constexpr int kMaxUsers = 1000000;

absl::Status Bad(absl::string_view flag, absl::string_view value,
                 absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, ": ", why));
}

absl::Status ParseInt(absl::string_view flag, absl::string_view value, int min,
                      int max, int* out) {
  if (!absl::SimpleAtoi(value, out) || *out < min || *out > max) {
    return Bad(flag, value,
               absl::StrCat("want an integer in [", min, ", ", max, "]"));
  }
  return absl::OkStatus();
}

absl::Status ParseDur(absl::string_view flag, absl::string_view value,
                      absl::Duration* out) {
  if (!absl::ParseDuration(value, out) || *out < absl::ZeroDuration()) {
    return Bad(flag, value, "want a duration such as 10s, 500ms, 2m");
  }
  return absl::OkStatus();
}

absl::Status ParseScenarios(absl::string_view value,
                            std::vector<ScenarioSpec>* out) {
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits(':', 1));
    absl::StatusOr<ScenarioKind> kind = ParseScenarioKind(kv.first);
    if (!kind.ok()) return Bad("scenario", value, kind.status().message());
    ScenarioSpec spec{*kind, 1};
    if (item.find(':') != absl::string_view::npos) {
      if (!absl::SimpleAtoi(kv.second, &spec.clients) || spec.clients < 1 ||
          spec.clients > kMaxClients) {
        return Bad("scenario", value,
                   "want NAME:N with N clients, 1 <= N <= 1000000");
      }
    }
    out->push_back(spec);
  }
  return absl::OkStatus();
}

}  // namespace

int Options::TotalClients() const {
  int n = 0;
  for (const ScenarioSpec& s : scenarios) n += s.clients;
  return n;
}

absl::StatusOr<std::vector<Credentials>> ExpandUserPattern(
    absl::string_view pattern, absl::string_view range,
    absl::string_view pass) {
  if (std::count(pattern.begin(), pattern.end(), '%') != 1 ||
      !absl::StrContains(pattern, "%d")) {
    return Bad("user-pattern", pattern, "want exactly one %d");
  }
  std::pair<absl::string_view, absl::string_view> ends =
      absl::StrSplit(range, absl::MaxSplits('-', 1));
  int first, last;
  if (!absl::SimpleAtoi(ends.first, &first) ||
      !absl::SimpleAtoi(ends.second, &last) || first < 0 || last < first ||
      last - first >= kMaxUsers) {
    return Bad("user-range", range, "want A-B with 0 <= A <= B, < 1e6 users");
  }
  std::vector<Credentials> users;
  users.reserve(last - first + 1);
  for (int i = first; i <= last; ++i) {
    users.push_back({absl::StrReplaceAll(pattern, {{"%d", absl::StrCat(i)}}),
                     std::string(pass)});
  }
  return users;
}

absl::StatusOr<std::vector<Credentials>> ParseUsersFile(
    absl::string_view contents) {
  std::vector<Credentials> users;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--users: line ", line_no, ": want user:pass"));
    }
    if (users.size() >= static_cast<size_t>(kMaxUsers)) {
      return absl::InvalidArgumentError("--users: more than 1e6 users");
    }
    users.push_back({std::string(line.substr(0, colon)),
                     std::string(line.substr(colon + 1))});
  }
  return users;
}

std::string Usage() {
  return R"(usage: popgate-flood [flags]
Load and flood generator for POP3 servers (a black-box client).

Target and bounds:
  --target=HOST[:PORT]        server (default 127.0.0.1:110; [::1]:110 for IPv6)
  --allow-target=HOST         allow a non-loopback target you own (repeatable)
  --duration=D                stop after D (default 10s)
  --max-connections=N         cap on total clients (default 1000)
  --threads=N                 event-loop threads per process (default: cores)
  --processes=N               fork N workers, merge results (past the fd limit)
  --source=A-B,C,...          local addresses to bind, round-robin per connection
  --timeout=D                 reply inactivity timeout (default 10s)
  --connect-timeout=D         handshake timeout (default 5s)

Scenarios (combinable, NAME:N = N concurrent clients):
  --scenario=poll:N           USER, PASS, STAT, UIDL, QUIT in a loop
  --scenario=download:N       USER, PASS, STAT, LIST, RETR (--retr=K), [--dele], QUIT
  --scenario=retr-throughput:N  download whole mailboxes, report MB/s
  --scenario=connect-close:N  connect and close as fast as possible
  --scenario=hold-idle:N      connect and hold; reconnect when closed
  --scenario=slowloris:N      a never-ending line, one byte per --slowloris-interval
  --scenario=guess:N          wrong passwords until cut off
  --scenario=overlong:N       one --overlong-bytes command line
  --scenario=junk:N           --junk-bytes of binary junk
  --scenario=pipeline-bomb:N  --bomb-commands commands in one write
  --scenario=no-read:N        log in, --no-read-retrs RETRs, never read
  --think=D  --retr=K  --dele  --pipeline  --wrong-pass=FMT
  --slowloris-interval=D (5s)  --overlong-bytes=N (65536)  --junk-bytes=N (1MiB)
  --bomb-commands=N (10000)  --no-read-retrs=N (100)

Users (round-robin per session):
  --user=NAME --pass=PW | --users=FILE (user:pass lines) |
  --user-pattern=user%d --user-range=1-100 [--pass=PW]

Output:
  --json                      JSON on stdout instead of the table
  --json=PATH                 JSON to PATH as well as the table
  --progress=auto|on|off      live line on stderr (auto: when a terminal)
)";
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args) {
  Options o;
  std::string user, pass, users_file, pattern, range;
  bool have_pass = false;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") return absl::CancelledError(Usage());
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (see --help)"));
    }
    std::string name, value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    } else {
      name = std::string(arg);
    }
    // Boolean flags and flags with an optional value.
    if (name == "dele" || name == "pipeline") {
      const bool on = !has_value || value == "true" || value == "1";
      (name == "dele" ? o.dele : o.pipeline) = on;
      continue;
    }
    if (name == "json") {
      if (has_value) {
        o.json_path = value;
      } else {
        o.json_stdout = true;
      }
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    absl::Status st;
    if (name == "target") {
      absl::StatusOr<HostPort> hp = ParseHostPort(value, 110);
      if (!hp.ok()) return hp.status();
      o.target = *hp;
    } else if (name == "allow-target") {
      o.allow_targets.push_back(value);
    } else if (name == "source") {
      absl::StatusOr<std::vector<SockAddr>> s = ParseSourceList(value);
      if (!s.ok()) return s.status();
      o.source_text = value;
      o.sources = *std::move(s);
    } else if (name == "scenario") {
      st = ParseScenarios(value, &o.scenarios);
    } else if (name == "user") {
      user = value;
    } else if (name == "pass") {
      pass = value;
      have_pass = true;
    } else if (name == "users") {
      users_file = value;
    } else if (name == "user-pattern") {
      pattern = value;
    } else if (name == "user-range") {
      range = value;
    } else if (name == "wrong-pass") {
      o.wrong_pass = value;
    } else if (name == "threads") {
      st = ParseInt(name, value, 1, kMaxThreads, &o.threads);
    } else if (name == "processes") {
      st = ParseInt(name, value, 1, kMaxProcesses, &o.processes);
    } else if (name == "duration") {
      st = ParseDur(name, value, &o.duration);
    } else if (name == "max-connections") {
      st = ParseInt(name, value, 1, kMaxClients, &o.max_connections);
    } else if (name == "timeout") {
      st = ParseDur(name, value, &o.timeout);
    } else if (name == "connect-timeout") {
      st = ParseDur(name, value, &o.connect_timeout);
    } else if (name == "think") {
      st = ParseDur(name, value, &o.think);
    } else if (name == "retr") {
      st = ParseInt(name, value, 0, kMaxClients, &o.retr);
    } else if (name == "slowloris-interval") {
      st = ParseDur(name, value, &o.slowloris_interval);
    } else if (name == "overlong-bytes") {
      st = ParseInt(name, value, 1, kMaxPayloadFlag, &o.overlong_bytes);
    } else if (name == "junk-bytes") {
      st = ParseInt(name, value, 1, kMaxPayloadFlag, &o.junk_bytes);
    } else if (name == "bomb-commands") {
      st = ParseInt(name, value, 1, 1000000, &o.bomb_commands);
    } else if (name == "no-read-retrs") {
      st = ParseInt(name, value, 1, 100000, &o.no_read_retrs);
    } else if (name == "progress") {
      if (value == "auto") {
        o.progress = Options::Progress::kAuto;
      } else if (value == "on") {
        o.progress = Options::Progress::kOn;
      } else if (value == "off") {
        o.progress = Options::Progress::kOff;
      } else {
        st = Bad(name, value, "want auto, on or off");
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!st.ok()) return st;
  }

  // Users: exactly one source of credentials.
  const int sources = !user.empty() + !users_file.empty() + !pattern.empty();
  if (sources > 1) {
    return absl::InvalidArgumentError(
        "use one of --user, --users, --user-pattern");
  }
  if (!user.empty()) {
    if (!have_pass) return absl::InvalidArgumentError("--user needs --pass");
    o.users.push_back({user, pass});
  } else if (!users_file.empty()) {
    std::ifstream in(users_file);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("--users: cannot read ", users_file));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<std::vector<Credentials>> u = ParseUsersFile(ss.str());
    if (!u.ok()) return u.status();
    o.users = *std::move(u);
  } else if (!pattern.empty()) {
    if (range.empty()) {
      return absl::InvalidArgumentError("--user-pattern needs --user-range");
    }
    absl::StatusOr<std::vector<Credentials>> u =
        ExpandUserPattern(pattern, range, pass);
    if (!u.ok()) return u.status();
    o.users = *std::move(u);
  }

  if (o.scenarios.empty()) {
    return absl::InvalidArgumentError(
        "no --scenario given (e.g. --scenario=poll:8; see --help)");
  }
  for (const ScenarioSpec& s : o.scenarios) {
    const bool needs_login =
        !IsAttack(s.kind) || s.kind == ScenarioKind::kNoRead;
    if (needs_login && o.users.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario ", ScenarioName(s.kind),
                       " logs in: give --user/--pass, --users or "
                       "--user-pattern"));
    }
  }
  if (o.TotalClients() > o.max_connections) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scenarios ask for ", o.TotalClients(),
        " concurrent clients, over --max-connections=", o.max_connections,
        "; raise it if you mean it"));
  }
  if (o.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--duration must be positive");
  }
  if (o.threads == 0) {
    o.threads = std::max(1u, std::thread::hardware_concurrency());
  }
  if (!o.sources.empty()) {
    // The family must match the target's when the target is numeric; a name
    // is checked after resolution (connect fails with EAFNOSUPPORT).
    absl::StatusOr<SockAddr> t = ParseIp(o.target.host, o.target.port);
    if (t.ok() && t->family() != o.sources.front().family()) {
      return absl::InvalidArgumentError(
          "--source and --target are different address families");
    }
  }
  return o;
}

}  // namespace popgate::flood
