// What popgate-flood measures: per-scenario counters and histograms, and the
// whole run's report. Plain data with Merge() so each engine thread (and
// each --processes worker) counts alone and the results add up exactly.
//
// Threading: a ScenarioStats belongs to one engine thread; merged copies are
// made under the engine's snapshot lock (see engine.h).
#ifndef POPGATE_TOOLS_FLOOD_STATS_H_
#define POPGATE_TOOLS_FLOOD_STATS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/flood/histogram.h"

namespace popgate::flood {

enum class ScenarioKind {
  kPoll,            // login, STAT, UIDL, QUIT
  kDownload,        // login, LIST, RETR (all or --retr), optional DELE, QUIT
  kRetrThroughput,  // download whole mailboxes; payload MB/s
  kConnectClose,    // attack: connect and close at once
  kHoldIdle,        // attack: connect and hold, reconnect when closed
  kSlowloris,       // attack: a never-ending line, one byte per interval
  kGuess,           // attack: wrong passwords until cut off
  kOverlong,        // attack: an overlong command line
  kJunk,            // attack: binary junk
  kPipelineBomb,    // attack: thousands of commands in one write
  kNoRead,          // attack: log in, RETR, never read
  kCount
};

// "poll", "download", "retr-throughput", "connect-close", ...
absl::string_view ScenarioName(ScenarioKind kind);
// InvalidArgument naming the known scenarios.
absl::StatusOr<ScenarioKind> ParseScenarioKind(absl::string_view name);
// Attacks are judged by how the server cuts them off, not by success.
bool IsAttack(ScenarioKind kind);

// How one connection (attacks) or one session (legit) ended. Exactly one per
// finished connection/session.
enum class Outcome {
  kOk,                   // legit: QUIT answered, all checks passed;
                         // connect-close: handshake done and closed by us
  kRefusedAtConnect,     // ECONNREFUSED or reset during the handshake
  kConnectTimeout,       // handshake not done in --connect-timeout (backlog)
  kEofBeforeGreeting,    // accepted, then closed/reset with no greeting
  kErrGreeting,          // greeting was -ERR (a polite refusal)
  kErrAuth,              // -ERR to USER or PASS
  kErrInUse,             // -ERR [IN-USE] (mailbox locked by another session)
  kErrCommand,           // -ERR to a transaction command (STAT, RETR, ...)
  kEofMidSession,        // closed or reset after the greeting, before the end
  kTimeout,              // no reply byte for --timeout
  kProtocolError,        // malformed reply (see ReplyDefect) or stray bytes
  kVerifyError,          // well-formed but inconsistent (see Check)
  kClosedByServer,       // attack: the server cut the attacker off
  kNotClosed,            // attack: finished its own script, not cut off
  kHeldAtEnd,            // attack: still connected when the run ended
  kLocalFdLimit,         // EMFILE/ENFILE here: ours, not the server's
  kLocalPortsExhausted,  // EADDRNOTAVAIL: out of ephemeral ports here
  kLocalError,           // any other local syscall failure
  kCount
};
absl::string_view OutcomeName(Outcome outcome);

// Consistency checks on what the server sent; each failure is counted here
// (several per session possible) and fails the session once.
enum class Check {
  kBadStatusLine,          // neither +OK nor -ERR
  kOverlongStatusLine,     // status line > 512 octets (RFC 2449)
  kBareLf,                 // line ended in LF alone
  kUnstuffedDot,           // body line starting with a single '.'
  kListingOverflow,        // LIST/UIDL body beyond the capture cap
  kUnexpectedBytes,        // bytes when no reply was outstanding
  kBadListing,             // LIST/UIDL/STAT line that does not parse
  kStatListMismatch,       // STAT count/octets != LIST/UIDL
  kRetrSizeMismatch,       // unstuffed RETR octets != LIST size
  kRetrSizeOffByOne,       // RETR = LIST + 1: popa3d's unterminated last line
                           // (informational: not a failure)
  kUidlChanged,            // UIDL of kept messages changed between sessions
  kWrongPasswordAccepted,  // guess: +OK to a wrong password
  kLineSplit,              // overlong: one line answered as several commands
  kCount
};
absl::string_view CheckName(Check check);
// False for purely informational checks.
bool CheckFails(Check check);

struct ScenarioStats {
  ScenarioKind kind = ScenarioKind::kPoll;
  // Concurrent clients asked for (sum over threads/processes after merge).
  uint64_t clients = 0;
  // Clients actually run, after the fd-limit cap.
  uint64_t clients_run = 0;

  std::array<uint64_t, static_cast<size_t>(Outcome::kCount)> outcomes{};
  std::array<uint64_t, static_cast<size_t>(Check::kCount)> checks{};

  uint64_t connects = 0;       // connect() attempts
  uint64_t established = 0;    // TCP handshakes completed
  uint64_t greetings_ok = 0;   // "+OK" greetings
  uint64_t greetings_err = 0;  // "-ERR" greetings
  uint64_t commands = 0;       // command lines sent
  uint64_t ok_replies = 0;
  uint64_t err_replies = 0;
  uint64_t bytes_in = 0;          // wire octets received
  uint64_t bytes_out = 0;         // wire octets sent
  uint64_t payload_bytes = 0;     // unstuffed RETR body octets
  uint64_t messages = 0;          // RETRs whose size checked out
  uint64_t in_flight_at_end = 0;  // legit sessions cut by the end of the run

  // Legit: connect start to QUIT reply. Attacks: connection lifetime.
  Histogram latency_us;
  // connect start to the end of the greeting line.
  Histogram greeting_us;

  uint64_t& outcome(Outcome o) { return outcomes[static_cast<size_t>(o)]; }
  uint64_t outcome(Outcome o) const { return outcomes[static_cast<size_t>(o)]; }
  uint64_t& check(Check c) { return checks[static_cast<size_t>(c)]; }
  uint64_t check(Check c) const { return checks[static_cast<size_t>(c)]; }

  // Finished sessions/connections (every outcome).
  uint64_t finished() const;
  // Failed ones: every outcome except kOk and, for attacks, the attack
  // outcomes (closed by server, not closed, held at end).
  uint64_t failed() const;
  // Attacks: greeted with +OK (or, for connect-close, handshake completed).
  uint64_t attacker_accepted() const;
  // Attacks: refused at connect, timed out, closed before or -ERR greeting.
  uint64_t attacker_refused() const;

  void Merge(const ScenarioStats& other);
};

// Why a run could not apply the load it was asked for, on our side.
struct LocalLimits {
  uint64_t fd_limit = 0;         // RLIMIT_NOFILE soft limit after raising
  uint64_t clients_dropped = 0;  // clients not started: fd limit
  uint64_t emfile = 0;           // EMFILE/ENFILE at socket()
  uint64_t port_exhausted = 0;   // EADDRNOTAVAIL at bind/connect

  bool capped() const {
    return clients_dropped > 0 || emfile > 0 || port_exhausted > 0;
  }
  void Merge(const LocalLimits& other);
};

struct RunReport {
  std::string target;
  std::string sources;  // as given, or "" for the kernel's choice
  double seconds = 0;   // measured wall time of the load phase
  int threads = 0;      // per process
  int processes = 1;
  std::vector<ScenarioStats> scenarios;
  LocalLimits limits;

  // Adds a worker's results; scenarios are matched by position.
  // InvalidArgument if the scenario lists differ.
  absl::Status Merge(const RunReport& other);
  // Line-oriented text form for the --processes pipe (not for humans):
  // round-trips every field exactly.
  std::string Serialize() const;
  static absl::StatusOr<RunReport> Deserialize(absl::string_view text);
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_STATS_H_
