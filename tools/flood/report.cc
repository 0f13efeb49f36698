#include "tools/flood/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace popgate::flood {
namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9};
constexpr absl::string_view kPercentileKeys[] = {"p50", "p90", "p99", "p99_9"};

double Rate(uint64_t n, double seconds) {
  return seconds > 0 ? n / seconds : 0.0;
}

std::string HistogramLine(const Histogram& h) {
  if (h.count() == 0) return "(none)";
  std::string out;
  for (size_t i = 0; i < std::size(kPercentiles); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : "  ", "p",
                    absl::StrFormat("%g", kPercentiles[i]), " ",
                    FormatMicros(h.ValueAtPercentile(kPercentiles[i])));
  }
  absl::StrAppend(&out, "  max ", FormatMicros(h.max()));
  return out;
}

std::string HistogramJson(const Histogram& h) {
  std::string out =
      absl::StrCat("{\"count\":", h.count(), ",\"min\":", h.min());
  for (size_t i = 0; i < std::size(kPercentiles); ++i) {
    absl::StrAppend(&out, ",\"", kPercentileKeys[i],
                    "\":", h.ValueAtPercentile(kPercentiles[i]));
  }
  absl::StrAppend(&out, ",\"max\":", h.max(),
                  ",\"mean\":", absl::StrFormat("%.1f", h.mean()), "}");
  return out;
}

// "refused-at-connect 3, timeout 9" over the non-zero failure outcomes.
std::string FailureCauses(const ScenarioStats& s) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < s.outcomes.size(); ++i) {
    const Outcome o = static_cast<Outcome>(i);
    if (s.outcomes[i] == 0 || o == Outcome::kOk) continue;
    if (IsAttack(s.kind) &&
        (o == Outcome::kClosedByServer || o == Outcome::kNotClosed ||
         o == Outcome::kHeldAtEnd)) {
      continue;
    }
    parts.push_back(absl::StrCat(OutcomeName(o), " ", s.outcomes[i]));
  }
  return absl::StrJoin(parts, ", ");
}

std::string CheckList(const ScenarioStats& s) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < s.checks.size(); ++i) {
    if (s.checks[i] != 0) {
      parts.push_back(
          absl::StrCat(CheckName(static_cast<Check>(i)), " ", s.checks[i]));
    }
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string FormatMicros(uint64_t us) {
  if (us < 1000) return absl::StrCat(us, "us");
  if (us < 1000000) return absl::StrFormat("%.2fms", us / 1e3);
  return absl::StrFormat("%.2fs", us / 1e6);
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 10000) return absl::StrCat(bytes, " B");
  if (bytes < 10000000) return absl::StrFormat("%.1f kB", bytes / 1e3);
  if (bytes < 10000000000ull) return absl::StrFormat("%.1f MB", bytes / 1e6);
  return absl::StrFormat("%.2f GB", bytes / 1e9);
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

std::string LimitNote(const LocalLimits& l) {
  if (!l.capped()) return "";
  std::vector<std::string> why;
  if (l.clients_dropped > 0) {
    why.push_back(absl::StrCat(l.clients_dropped,
                               " clients not started (RLIMIT_NOFILE ",
                               l.fd_limit, " per process; add --processes)"));
  }
  if (l.emfile > 0) {
    why.push_back(absl::StrCat(l.emfile,
                               " socket() calls failed with EMFILE/"
                               "ENFILE (add --processes)"));
  }
  if (l.port_exhausted > 0) {
    why.push_back(absl::StrCat(l.port_exhausted,
                               " connects found no ephemeral port "
                               "(EADDRNOTAVAIL; add --source addresses)"));
  }
  const bool fd = l.clients_dropped > 0 || l.emfile > 0;
  const bool ports = l.port_exhausted > 0;
  return absl::StrCat("NOTE: capped by ",
                      fd && ports ? "fd limit and ephemeral ports"
                      : fd        ? "fd limit"
                                  : "ephemeral ports",
                      ", not the server: ", absl::StrJoin(why, "; "));
}

std::string RenderTable(const RunReport& r) {
  std::string out = absl::StrFormat(
      "popgate-flood: target %s%s, %.1fs, %d thread%s x %d process%s\n",
      r.target, r.sources.empty() ? "" : absl::StrCat(", sources ", r.sources),
      r.seconds, r.threads, r.threads == 1 ? "" : "s", r.processes,
      r.processes == 1 ? "" : "es");
  for (const ScenarioStats& s : r.scenarios) {
    const bool attack = IsAttack(s.kind);
    absl::StrAppendFormat(&out, "\n%s:%d%s\n", ScenarioName(s.kind), s.clients,
                          s.clients_run < s.clients
                              ? absl::StrCat(" (", s.clients_run, " run)")
                              : "");
    if (!attack) {
      absl::StrAppendFormat(&out,
                            "  sessions      %d ok, %d failed   %.1f ok/s\n",
                            s.outcome(Outcome::kOk), s.failed(),
                            Rate(s.outcome(Outcome::kOk), r.seconds));
    } else {
      absl::StrAppendFormat(
          &out,
          "  connections   %d attempted, %d accepted, %d refused   %.1f/s\n",
          s.connects, s.attacker_accepted(), s.attacker_refused(),
          Rate(s.connects, r.seconds));
      absl::StrAppendFormat(
          &out,
          "  attacker      %d closed by server, %d not closed, %d held "
          "at end\n",
          s.outcome(Outcome::kClosedByServer), s.outcome(Outcome::kNotClosed),
          s.outcome(Outcome::kHeldAtEnd));
    }
    const std::string causes = FailureCauses(s);
    if (!causes.empty())
      absl::StrAppend(&out, "  failures      ", causes, "\n");
    const std::string checks = CheckList(s);
    if (!checks.empty())
      absl::StrAppend(&out, "  checks        ", checks, "\n");
    absl::StrAppend(&out, attack ? "  held          " : "  latency       ",
                    HistogramLine(s.latency_us), "\n");
    absl::StrAppend(&out, "  greeting      ", HistogramLine(s.greeting_us),
                    "\n");
    absl::StrAppendFormat(&out,
                          "  replies       %d +OK, %d -ERR to %d commands\n",
                          s.ok_replies, s.err_replies, s.commands);
    absl::StrAppend(&out, "  bytes         in ", FormatBytes(s.bytes_in),
                    ", out ", FormatBytes(s.bytes_out));
    if (s.payload_bytes > 0) {
      absl::StrAppendFormat(&out, ", payload %s in %d messages (%.1f MB/s)",
                            FormatBytes(s.payload_bytes), s.messages,
                            Rate(s.payload_bytes, r.seconds) / 1e6);
    }
    absl::StrAppend(&out, "\n");
    if (s.in_flight_at_end > 0) {
      absl::StrAppend(&out, "  unfinished    ", s.in_flight_at_end,
                      " sessions cut by the end of the run (not counted)\n");
    }
  }
  const std::string note = LimitNote(r.limits);
  if (!note.empty()) absl::StrAppend(&out, "\n", note, "\n");
  return out;
}

std::string RenderJson(const RunReport& r) {
  std::string out =
      absl::StrCat("{\"target\":", JsonQuote(r.target),
                   ",\"sources\":", JsonQuote(r.sources),
                   ",\"seconds\":", absl::StrFormat("%.3f", r.seconds),
                   ",\"threads\":", r.threads, ",\"processes\":", r.processes);
  absl::StrAppend(&out, ",\"limits\":{\"fd_limit\":", r.limits.fd_limit,
                  ",\"clients_dropped\":", r.limits.clients_dropped,
                  ",\"emfile\":", r.limits.emfile,
                  ",\"port_exhausted\":", r.limits.port_exhausted,
                  ",\"capped\":", r.limits.capped() ? "true" : "false",
                  ",\"note\":", JsonQuote(LimitNote(r.limits)), "}");
  absl::StrAppend(&out, ",\"scenarios\":[");
  for (size_t i = 0; i < r.scenarios.size(); ++i) {
    const ScenarioStats& s = r.scenarios[i];
    absl::StrAppend(
        &out, i == 0 ? "" : ",", "{\"name\":", JsonQuote(ScenarioName(s.kind)),
        ",\"attack\":", IsAttack(s.kind) ? "true" : "false",
        ",\"clients\":", s.clients, ",\"clients_run\":", s.clients_run,
        ",\"finished\":", s.finished(), ",\"ok\":", s.outcome(Outcome::kOk),
        ",\"failed\":", s.failed());
    absl::StrAppend(
        &out, ",\"ok_per_sec\":",
        absl::StrFormat("%.1f", Rate(s.outcome(Outcome::kOk), r.seconds)),
        ",\"connects_per_sec\":",
        absl::StrFormat("%.1f", Rate(s.connects, r.seconds)));
    absl::StrAppend(&out, ",\"outcomes\":{");
    for (size_t k = 0; k < s.outcomes.size(); ++k) {
      absl::StrAppend(&out, k == 0 ? "" : ",",
                      JsonQuote(OutcomeName(static_cast<Outcome>(k))), ":",
                      s.outcomes[k]);
    }
    absl::StrAppend(&out, "},\"checks\":{");
    for (size_t k = 0; k < s.checks.size(); ++k) {
      absl::StrAppend(&out, k == 0 ? "" : ",",
                      JsonQuote(CheckName(static_cast<Check>(k))), ":",
                      s.checks[k]);
    }
    absl::StrAppend(&out, "}");
    absl::StrAppend(
        &out, ",\"connects\":", s.connects, ",\"established\":", s.established,
        ",\"greetings_ok\":", s.greetings_ok,
        ",\"greetings_err\":", s.greetings_err, ",\"commands\":", s.commands,
        ",\"ok_replies\":", s.ok_replies, ",\"err_replies\":", s.err_replies,
        ",\"bytes_in\":", s.bytes_in, ",\"bytes_out\":", s.bytes_out,
        ",\"payload_bytes\":", s.payload_bytes, ",\"messages\":", s.messages,
        ",\"payload_mb_per_sec\":",
        absl::StrFormat("%.3f", Rate(s.payload_bytes, r.seconds) / 1e6),
        ",\"in_flight_at_end\":", s.in_flight_at_end);
    absl::StrAppend(&out, ",\"attacker\":{\"accepted\":", s.attacker_accepted(),
                    ",\"refused\":", s.attacker_refused(), "}");
    absl::StrAppend(&out, ",\"latency_us\":", HistogramJson(s.latency_us),
                    ",\"greeting_us\":", HistogramJson(s.greeting_us), "}");
  }
  absl::StrAppend(&out, "]}\n");
  return out;
}

std::string RenderProgress(const RunReport& r, double elapsed_s,
                           uint64_t open) {
  std::string out = absl::StrFormat("%5.1fs", elapsed_s);
  Histogram all;
  uint64_t errors = 0;
  for (const ScenarioStats& s : r.scenarios) {
    const uint64_t done =
        IsAttack(s.kind) ? s.connects : s.outcome(Outcome::kOk);
    absl::StrAppendFormat(&out, "  %s %.0f/s", ScenarioName(s.kind),
                          Rate(done, elapsed_s));
    errors += s.failed();
    if (!IsAttack(s.kind)) all.Merge(s.latency_us);
  }
  absl::StrAppend(&out, "  err ", errors);
  if (all.count() > 0) {
    absl::StrAppend(&out, "  p99 ", FormatMicros(all.ValueAtPercentile(99)));
  }
  absl::StrAppend(&out, "  open ", open);
  return out;
}

}  // namespace popgate::flood
