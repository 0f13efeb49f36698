// A tiny log shim: abseil 20220623 has no log library, and popa3d's admins
// expect syslog lines with fixed texts and levels (popa3d-behaviour.md §5.4).
//
// Callers: everything. core/ code calls Log()/Logf(); net/ installs the sink
// once at startup (SyslogSink for the daemon, StderrSink for --log=stderr or
// --foreground), tests install a CaptureLogSink.
//
// Threading: Log() may be called from any thread (the auth thread pool logs
// too). Sinks must be thread-safe; the three sinks here are. SetLogSink() is
// an atomic pointer swap; the caller keeps the sink alive for as long as any
// thread may still log through it (in practice: for the process lifetime).
//
// Log injection: message bytes below 0x20 and 0x7f are escaped as \xNN before
// they reach a sink, because messages carry client-typed text (user names).
#ifndef POPGATE_CORE_LOGGING_H_
#define POPGATE_CORE_LOGGING_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace popgate::core {

// popa3d's three syslog levels plus kWarning for our own configuration
// complaints (e.g. a refused passwd-file line). Mapped 1:1 to LOG_INFO,
// LOG_NOTICE, LOG_WARNING and LOG_CRIT.
enum class Severity { kInfo, kNotice, kWarning, kCrit };

// "info", "notice", "warning", "crit".
absl::string_view SeverityName(Severity severity);

class LogSink {
 public:
  virtual ~LogSink() = default;
  // `message` is already sanitised (no control bytes) and has no trailing
  // newline. Must be thread-safe.
  virtual void Send(Severity severity, absl::string_view message) = 0;
};

// Installs `sink` (not owned; must outlive its use) and returns the previous
// one. nullptr restores the default, a StderrSink with ident "popgate".
LogSink* SetLogSink(LogSink* sink);

void Log(Severity severity, absl::string_view message);

// absl::StrFormat-style: Logf(Severity::kNotice, "Authentication failed for %s", user).
template <typename... Args>
void Logf(Severity severity, const absl::FormatSpec<Args...>& format,
          const Args&... args) {
  Log(severity, absl::StrFormat(format, args...));
}

// Escapes bytes < 0x20 and 0x7f as \xNN; everything else passes through.
std::string SanitizeLogText(absl::string_view text);

// syslog(3) with openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON), as popa3d.
// syslog is a libc call, not a socket in core/'s sense: this file is the one
// logging seam, so the exception to "core/ makes no syscalls" is confined to
// it. LOG_NDELAY opens the socket now, so logging keeps working after a
// chroot or privilege drop (popa3d does the same before its chroot).
// Construct at most one per process: openlog state is global.
class SyslogSink : public LogSink {
 public:
  explicit SyslogSink(std::string ident);
  ~SyslogSink() override;
  SyslogSink(const SyslogSink&) = delete;
  SyslogSink& operator=(const SyslogSink&) = delete;
  void Send(Severity severity, absl::string_view message) override;

 private:
  // openlog keeps the pointer, so the string lives here, never reassigned.
  const std::string ident_;
};

// One line per message on stderr: "2026-11-27T08:12:00.123Z popgate[42]:
// message". Each line leaves in a single fwrite on the unbuffered stderr, so
// lines from different threads do not interleave.
class StderrSink : public LogSink {
 public:
  explicit StderrSink(std::string ident) : ident_(std::move(ident)) {}
  void Send(Severity severity, absl::string_view message) override;

 private:
  const std::string ident_;
};

// The line StderrSink writes, without the trailing newline; pure, for tests.
std::string FormatStderrLine(absl::Time now, absl::string_view ident,
                             pid_t pid, absl::string_view message);

// Records everything it is sent; for tests.
class CaptureLogSink : public LogSink {
 public:
  struct Entry {
    Severity severity;
    std::string message;
  };
  void Send(Severity severity, absl::string_view message) override;
  std::vector<Entry> entries() const;
  // Whether some entry's message contains `needle` (at any severity).
  bool Contains(absl::string_view needle) const;
  void Clear();

 private:
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

// Installs a sink for the current scope and restores the previous one.
class ScopedLogSink {
 public:
  explicit ScopedLogSink(LogSink* sink) : previous_(SetLogSink(sink)) {}
  ~ScopedLogSink() { SetLogSink(previous_); }
  ScopedLogSink(const ScopedLogSink&) = delete;
  ScopedLogSink& operator=(const ScopedLogSink&) = delete;

 private:
  LogSink* previous_;
};

// At most one log line per key per interval, e.g. popa3d's
// "<ip>: per source limit reached", which it rate-limits to one per 10 s
// (MIN_DELAY) per table slot. Time is injected; nothing here reads a clock.
//
// Memory is bounded by `max_keys`: an attacker spraying sources cannot grow
// the table. When it is full, expired keys are dropped first; if every key
// is still fresh, lines for new keys are suppressed (and counted) rather
// than evicting a fresh key, which would let a rotating attacker log at will.
//
// Threading: internally locked; callable from any thread.
class LogRateLimiter {
 public:
  LogRateLimiter(absl::Duration interval, size_t max_keys);

  // True if a line for `key` may be logged at `now`; records it if so.
  // A clock that went backwards counts as "interval elapsed", as popa3d does.
  bool ShouldLog(absl::string_view key, absl::Time now);

  // Lines refused since construction (for a periodic summary line).
  uint64_t suppressed() const;
  size_t size() const;

 private:
  void EvictExpiredLocked(absl::Time now);

  const absl::Duration interval_;
  const size_t max_keys_;
  mutable std::mutex mu_;
  std::map<std::string, absl::Time, std::less<>> last_logged_;
  uint64_t suppressed_ = 0;
};

}  // namespace popgate::core

#endif  // POPGATE_CORE_LOGGING_H_
