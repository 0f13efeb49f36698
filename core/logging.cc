#include "core/logging.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace popgate::core {
namespace {

// The sink used when none is installed. A function-local static so that
// logging during static initialisation (flag parsing) still works; it is
// never destroyed, so logging from a late atexit handler is safe too.
LogSink* DefaultSink() {
  static LogSink* const sink = new StderrSink("popgate");
  return sink;
}

std::atomic<LogSink*> g_sink{nullptr};

int SyslogPriority(Severity severity) {
  switch (severity) {
    case Severity::kInfo:
      return LOG_INFO;
    case Severity::kNotice:
      return LOG_NOTICE;
    case Severity::kWarning:
      return LOG_WARNING;
    case Severity::kCrit:
      return LOG_CRIT;
  }
  return LOG_CRIT;  // unreachable: the switch is exhaustive
}

}  // namespace

absl::string_view SeverityName(Severity severity) {
  switch (severity) {
    case Severity::kInfo:
      return "info";
    case Severity::kNotice:
      return "notice";
    case Severity::kWarning:
      return "warning";
    case Severity::kCrit:
      return "crit";
  }
  return "crit";
}

LogSink* SetLogSink(LogSink* sink) {
  LogSink* previous = g_sink.exchange(sink, std::memory_order_acq_rel);
  return previous;
}

std::string SanitizeLogText(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void Log(Severity severity, absl::string_view message) {
  LogSink* sink = g_sink.load(std::memory_order_acquire);
  if (sink == nullptr) sink = DefaultSink();
  sink->Send(severity, SanitizeLogText(message));
}

SyslogSink::SyslogSink(std::string ident) : ident_(std::move(ident)) {
  ::openlog(ident_.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

SyslogSink::~SyslogSink() { ::closelog(); }

void SyslogSink::Send(Severity severity, absl::string_view message) {
  // "%.*s": the message is never used as a format string.
  ::syslog(SyslogPriority(severity), "%.*s", static_cast<int>(message.size()),
           message.data());
}

std::string FormatStderrLine(absl::Time now, absl::string_view ident,
                             pid_t pid, absl::string_view message) {
  return absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone()), " ",
      ident, "[", pid, "]: ", message);
}

void StderrSink::Send(Severity severity, absl::string_view message) {
  std::string line = FormatStderrLine(absl::Now(), ident_, ::getpid(), message);
  line.push_back('\n');
  // One fwrite: stdio locks the stream per call, so concurrent lines stay
  // whole. A failed write to stderr has nowhere to be reported; drop it.
  (void)std::fwrite(line.data(), 1, line.size(), stderr);
}

void CaptureLogSink::Send(Severity severity, absl::string_view message) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back(Entry{severity, std::string(message)});
}

std::vector<CaptureLogSink::Entry> CaptureLogSink::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_;
}

bool CaptureLogSink::Contains(absl::string_view needle) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : entries_) {
    if (absl::string_view(e.message).find(needle) != absl::string_view::npos) {
      return true;
    }
  }
  return false;
}

void CaptureLogSink::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
}

LogRateLimiter::LogRateLimiter(absl::Duration interval, size_t max_keys)
    : interval_(interval), max_keys_(max_keys == 0 ? 1 : max_keys) {}

bool LogRateLimiter::ShouldLog(absl::string_view key, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = last_logged_.find(key);
  if (it != last_logged_.end()) {
    // now < last: the clock went back (tests, or a wall clock jump); popa3d
    // logs in that case rather than staying silent until it catches up.
    if (now < it->second || now - it->second >= interval_) {
      it->second = now;
      return true;
    }
    ++suppressed_;
    return false;
  }
  if (last_logged_.size() >= max_keys_) EvictExpiredLocked(now);
  if (last_logged_.size() >= max_keys_) {
    ++suppressed_;
    return false;
  }
  last_logged_.emplace(std::string(key), now);
  return true;
}

void LogRateLimiter::EvictExpiredLocked(absl::Time now) {
  // O(n), but only when the table is full; n is bounded by max_keys_.
  for (auto it = last_logged_.begin(); it != last_logged_.end();) {
    if (now < it->second || now - it->second >= interval_) {
      it = last_logged_.erase(it);
    } else {
      ++it;
    }
  }
}

uint64_t LogRateLimiter::suppressed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return suppressed_;
}

size_t LogRateLimiter::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_logged_.size();
}

}  // namespace popgate::core
