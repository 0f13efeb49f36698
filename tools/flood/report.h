// Renders a RunReport: the final human-readable table, the --json document,
// and the live one-line progress display.
//
// Pure functions of the report; callers decide where the text goes.
#ifndef POPGATE_TOOLS_FLOOD_REPORT_H_
#define POPGATE_TOOLS_FLOOD_REPORT_H_

#include <string>
#include <vector>

#include "tools/flood/stats.h"

namespace popgate::flood {

// One block per scenario: rate, ok/failed by cause, checks, latency
// percentiles, bytes, and for attacks accepted vs refused. Ends with the
// local-limit note when LocalLimits::capped().
std::string RenderTable(const RunReport& report);

// The same figures as one JSON object (stable keys, numbers unquoted).
std::string RenderJson(const RunReport& report);

// "12.0s  poll 1234/s  err 3  p99 1.20ms  open 950" on one line, no newline;
// `elapsed_s` is the time since the start, `open` the live connections.
std::string RenderProgress(const RunReport& report, double elapsed_s,
                           uint64_t open);

// Why the run was capped on our side, or "" if it was not.
std::string LimitNote(const LocalLimits& limits);

// "850us", "1.25ms", "3.40s": microseconds for humans.
std::string FormatMicros(uint64_t us);
// "12.3 MB" (10^6), for byte counts.
std::string FormatBytes(uint64_t bytes);

// JSON string literal with quotes; escapes control characters.
std::string JsonQuote(absl::string_view s);

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_REPORT_H_
