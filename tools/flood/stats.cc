#include "tools/flood/stats.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace popgate::flood {
namespace {

constexpr absl::string_view kScenarioNames[] = {
    "poll",      "download",      "retr-throughput", "connect-close",
    "hold-idle", "slowloris",     "guess",           "overlong",
    "junk",      "pipeline-bomb", "no-read"};
static_assert(std::size(kScenarioNames) ==
              static_cast<size_t>(ScenarioKind::kCount));

constexpr absl::string_view kOutcomeNames[] = {"ok",
                                               "refused-at-connect",
                                               "connect-timeout",
                                               "eof-before-greeting",
                                               "err-greeting",
                                               "err-auth",
                                               "err-in-use",
                                               "err-command",
                                               "eof-mid-session",
                                               "timeout",
                                               "protocol-error",
                                               "verify-error",
                                               "closed-by-server",
                                               "not-closed",
                                               "held-at-end",
                                               "local-fd-limit",
                                               "local-ports-exhausted",
                                               "local-error"};
static_assert(std::size(kOutcomeNames) == static_cast<size_t>(Outcome::kCount));

constexpr absl::string_view kCheckNames[] = {"bad-status-line",
                                             "overlong-status-line",
                                             "bare-lf",
                                             "unstuffed-dot",
                                             "listing-overflow",
                                             "unexpected-bytes",
                                             "bad-listing",
                                             "stat-list-mismatch",
                                             "retr-size-mismatch",
                                             "retr-size-off-by-one",
                                             "uidl-changed",
                                             "wrong-password-accepted",
                                             "line-split"};
static_assert(std::size(kCheckNames) == static_cast<size_t>(Check::kCount));

// The scalar fields of ScenarioStats in serialization order.
// Templated on constness so Merge and Serialize can read a const one.
template <typename S>
auto Scalars(S& s) {
  return std::vector<decltype(&s.clients)>{
      &s.clients,      &s.clients_run,     &s.connects,  &s.established,
      &s.greetings_ok, &s.greetings_err,   &s.commands,  &s.ok_replies,
      &s.err_replies,  &s.bytes_in,        &s.bytes_out, &s.payload_bytes,
      &s.messages,     &s.in_flight_at_end};
}

absl::Status ParseNumbers(absl::string_view text,
                          const std::vector<uint64_t*>& out) {
  std::vector<absl::string_view> tokens =
      absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (tokens.size() != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "report: expected ", out.size(), " numbers, got ", tokens.size()));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!absl::SimpleAtoi(tokens[i], out[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("report: bad number '", tokens[i], "'"));
    }
  }
  return absl::OkStatus();
}

template <size_t N>
std::vector<uint64_t*> Pointers(std::array<uint64_t, N>& a) {
  std::vector<uint64_t*> v;
  for (uint64_t& x : a) v.push_back(&x);
  return v;
}

}  // namespace

absl::string_view ScenarioName(ScenarioKind kind) {
  return kScenarioNames[static_cast<size_t>(kind)];
}

absl::StatusOr<ScenarioKind> ParseScenarioKind(absl::string_view name) {
  for (size_t i = 0; i < std::size(kScenarioNames); ++i) {
    if (kScenarioNames[i] == name) return static_cast<ScenarioKind>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown scenario '", name,
                   "'; known: ", absl::StrJoin(kScenarioNames, ", ")));
}

bool IsAttack(ScenarioKind kind) {
  return kind != ScenarioKind::kPoll && kind != ScenarioKind::kDownload &&
         kind != ScenarioKind::kRetrThroughput;
}

absl::string_view OutcomeName(Outcome outcome) {
  return kOutcomeNames[static_cast<size_t>(outcome)];
}

absl::string_view CheckName(Check check) {
  return kCheckNames[static_cast<size_t>(check)];
}

bool CheckFails(Check check) { return check != Check::kRetrSizeOffByOne; }

uint64_t ScenarioStats::finished() const {
  uint64_t n = 0;
  for (uint64_t x : outcomes) n += x;
  return n;
}

uint64_t ScenarioStats::failed() const {
  uint64_t n = finished() - outcome(Outcome::kOk);
  if (IsAttack(kind)) {
    n -= outcome(Outcome::kClosedByServer) + outcome(Outcome::kNotClosed) +
         outcome(Outcome::kHeldAtEnd);
  }
  return n;
}

uint64_t ScenarioStats::attacker_accepted() const {
  return kind == ScenarioKind::kConnectClose ? established : greetings_ok;
}

uint64_t ScenarioStats::attacker_refused() const {
  return outcome(Outcome::kRefusedAtConnect) +
         outcome(Outcome::kConnectTimeout) +
         outcome(Outcome::kEofBeforeGreeting) + outcome(Outcome::kErrGreeting);
}

void ScenarioStats::Merge(const ScenarioStats& other) {
  std::vector<uint64_t*> mine = Scalars(*this);
  std::vector<const uint64_t*> theirs = Scalars(other);
  for (size_t i = 0; i < mine.size(); ++i) *mine[i] += *theirs[i];
  for (size_t i = 0; i < outcomes.size(); ++i) outcomes[i] += other.outcomes[i];
  for (size_t i = 0; i < checks.size(); ++i) checks[i] += other.checks[i];
  latency_us.Merge(other.latency_us);
  greeting_us.Merge(other.greeting_us);
}

void LocalLimits::Merge(const LocalLimits& other) {
  // Each worker has the same limit; keep it, don't add it.
  fd_limit = std::max(fd_limit, other.fd_limit);
  clients_dropped += other.clients_dropped;
  emfile += other.emfile;
  port_exhausted += other.port_exhausted;
}

absl::Status RunReport::Merge(const RunReport& other) {
  if (other.scenarios.size() != scenarios.size()) {
    return absl::InvalidArgumentError("report: scenario lists differ");
  }
  for (size_t i = 0; i < scenarios.size(); ++i) {
    if (scenarios[i].kind != other.scenarios[i].kind) {
      return absl::InvalidArgumentError("report: scenario kinds differ");
    }
    scenarios[i].Merge(other.scenarios[i]);
  }
  // Workers run side by side: the run lasted as long as the slowest one.
  seconds = std::max(seconds, other.seconds);
  limits.Merge(other.limits);
  return absl::OkStatus();
}

std::string RunReport::Serialize() const {
  std::string out;
  absl::StrAppend(&out, "run ", static_cast<int64_t>(seconds * 1e6), " ",
                  threads, " ", processes, "\n");
  absl::StrAppend(&out, "target ", target, "\n");
  absl::StrAppend(&out, "sources ", sources, "\n");
  absl::StrAppend(&out, "limits ", limits.fd_limit, " ", limits.clients_dropped,
                  " ", limits.emfile, " ", limits.port_exhausted, "\n");
  for (const ScenarioStats& s : scenarios) {
    absl::StrAppend(&out, "scenario ", ScenarioName(s.kind), "\n");
    std::vector<std::string> nums;
    for (const uint64_t* p : Scalars(s)) nums.push_back(absl::StrCat(*p));
    absl::StrAppend(&out, "s ", absl::StrJoin(nums, " "), "\n");
    absl::StrAppend(&out, "o ", absl::StrJoin(s.outcomes, " "), "\n");
    absl::StrAppend(&out, "c ", absl::StrJoin(s.checks, " "), "\n");
    absl::StrAppend(&out, "hl ", s.latency_us.Serialize(), "\n");
    absl::StrAppend(&out, "hg ", s.greeting_us.Serialize(), "\n");
  }
  absl::StrAppend(&out, "end\n");
  return out;
}

absl::StatusOr<RunReport> RunReport::Deserialize(absl::string_view text) {
  RunReport r;
  bool ended = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    const absl::string_view key = kv.first, rest = kv.second;
    absl::Status st;
    if (key == "run") {
      uint64_t micros = 0, threads = 0, processes = 0;
      st = ParseNumbers(rest, {&micros, &threads, &processes});
      r.seconds = micros / 1e6;
      r.threads = static_cast<int>(threads);
      r.processes = static_cast<int>(processes);
    } else if (key == "target") {
      r.target = std::string(rest);
    } else if (key == "sources") {
      r.sources = std::string(rest);
    } else if (key == "limits") {
      st = ParseNumbers(rest, {&r.limits.fd_limit, &r.limits.clients_dropped,
                               &r.limits.emfile, &r.limits.port_exhausted});
    } else if (key == "scenario") {
      absl::StatusOr<ScenarioKind> kind = ParseScenarioKind(rest);
      if (!kind.ok()) return kind.status();
      r.scenarios.emplace_back().kind = *kind;
    } else if (key == "end") {
      ended = true;
    } else {
      if (r.scenarios.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("report: '", key, "' before any scenario"));
      }
      ScenarioStats& s = r.scenarios.back();
      if (key == "s") {
        st = ParseNumbers(rest, Scalars(s));
      } else if (key == "o") {
        st = ParseNumbers(rest, Pointers(s.outcomes));
      } else if (key == "c") {
        st = ParseNumbers(rest, Pointers(s.checks));
      } else if (key == "hl" || key == "hg") {
        absl::StatusOr<Histogram> h = Histogram::Deserialize(rest);
        if (!h.ok()) return h.status();
        (key == "hl" ? s.latency_us : s.greeting_us) = *std::move(h);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("report: unknown line '", key, "'"));
      }
    }
    if (!st.ok()) return st;
  }
  if (!ended) return absl::InvalidArgumentError("report: truncated");
  return r;
}

}  // namespace popgate::flood
