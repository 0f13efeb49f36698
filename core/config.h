// Daemon configuration: the command-line flags (absl flags, so `--flagfile`
// works too) and their parsed, typed form.
//
// Callers: net/'s main() calls absl::ParseCommandLine, then ConfigFromFlags()
// once at startup and hands the pieces on (SessionOptions, limits, auth).
// core/ code receives values, never reads flags itself, so tests build a
// Config by hand.
//
// Flag syntax is an operator interface: scripts and flagfiles rely on it, so
// names and value syntax change only with a deprecation period. Every flag's
// default, reason and the cost of raising it are documented in config.cc.
//
// No socket headers here (core/ stays socket-free): address families are
// plain ints with the AF_INET/AF_INET6 values, parsed in config.cc.
#ifndef POPGATE_CORE_CONFIG_H_
#define POPGATE_CORE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, mail);
ABSL_DECLARE_FLAG(std::string, auth);
ABSL_DECLARE_FLAG(std::string, pam_service);
ABSL_DECLARE_FLAG(std::string, syslog_ident);
ABSL_DECLARE_FLAG(bool, D);
ABSL_DECLARE_FLAG(bool, V);
ABSL_DECLARE_FLAG(bool, foreground);
ABSL_DECLARE_FLAG(std::string, log);
ABSL_DECLARE_FLAG(int32_t, max_sessions);
ABSL_DECLARE_FLAG(int32_t, max_sessions_per_source);
ABSL_DECLARE_FLAG(absl::Duration, min_session_slot);
ABSL_DECLARE_FLAG(absl::Duration, idle_timeout);
ABSL_DECLARE_FLAG(absl::Duration, write_timeout);
ABSL_DECLARE_FLAG(bool, sendfile);
ABSL_DECLARE_FLAG(std::string, state_dir);
ABSL_DECLARE_FLAG(std::string, preauth_user);
ABSL_DECLARE_FLAG(int32_t, max_line_bytes);
ABSL_DECLARE_FLAG(int32_t, max_bad_commands);
ABSL_DECLARE_FLAG(int32_t, max_auth_attempts);
ABSL_DECLARE_FLAG(bool, capa);
ABSL_DECLARE_FLAG(int64_t, max_mailbox_bytes);
ABSL_DECLARE_FLAG(int64_t, max_messages);
ABSL_DECLARE_FLAG(std::string, mode);
ABSL_DECLARE_FLAG(int32_t, workers);
ABSL_DECLARE_FLAG(std::string, pool_user);
ABSL_DECLARE_FLAG(std::string, pool_group);
ABSL_DECLARE_FLAG(int32_t, auth_threads);
ABSL_DECLARE_FLAG(int32_t, auth_queue);
ABSL_DECLARE_FLAG(absl::Duration, auth_cache_ttl);
ABSL_DECLARE_FLAG(int32_t, auth_cache_size);
ABSL_DECLARE_FLAG(double, rate_per_source);
ABSL_DECLARE_FLAG(int32_t, burst_per_source);
ABSL_DECLARE_FLAG(int32_t, source_prefix_v4);
ABSL_DECLARE_FLAG(int32_t, source_prefix_v6);
ABSL_DECLARE_FLAG(int32_t, max_tracked_sources);
ABSL_DECLARE_FLAG(absl::Duration, preauth_timeout);
ABSL_DECLARE_FLAG(absl::Duration, auth_fail_delay);
ABSL_DECLARE_FLAG(absl::Duration, auth_fail_max_delay);
ABSL_DECLARE_FLAG(int32_t, auth_lockout_failures);
ABSL_DECLARE_FLAG(absl::Duration, auth_lockout);
ABSL_DECLARE_FLAG(bool, refuse_with_error);
ABSL_DECLARE_FLAG(absl::Duration, drain_timeout);
ABSL_DECLARE_FLAG(int32_t, max_sessions_per_worker);

namespace popgate::core {

// One --listen entry. `family` is AF_INET (2) or AF_INET6 (10); `host` is the
// numeric address without brackets ("127.0.0.1", "::1").
struct ListenAddress {
  std::string host;
  uint16_t port = 0;  // 0: the kernel picks (tests; the daemon reports it)
  int family = 0;

  friend bool operator==(const ListenAddress&, const ListenAddress&) = default;
};

enum class MailFormat { kMbox, kMaildir };

// --mail=<format>:<pattern>. The pattern is absolute ("/var/mail/%u") or
// starts with "~/" (the user's home). Escapes: %u the user name, %n its local
// part and %d its domain ("alice@example.org" -> "alice", "example.org"); it
// needs %u, %n or "~/", and no other % escape.
struct MailLocation {
  MailFormat format = MailFormat::kMbox;
  std::string pattern = "/var/mail/%u";

  friend bool operator==(const MailLocation&, const MailLocation&) = default;
};

enum class AuthKind { kPam, kShadow, kPasswdFile };

// --auth=pam | shadow | passwd-file:<absolute path>.
struct AuthSpec {
  AuthKind kind = AuthKind::kPam;
  std::string path;  // only for kPasswdFile

  friend bool operator==(const AuthSpec&, const AuthSpec&) = default;
};

enum class LogTarget { kSyslog, kStderr };

// --mode: kFork is popa3d's process per session; kPool hands connections to
// N unprivileged event-loop workers and verifies passwords in one auth
// process.
enum class DaemonMode { kFork, kPool };

// Everything the flags say, parsed and validated. Field meanings are the
// flags' (config.cc); defaults here equal the flag defaults.
struct Config {
  // 2 == AF_INET (no socket header in core/ headers).
  std::vector<ListenAddress> listen = {ListenAddress{"0.0.0.0", 110, 2}};
  MailLocation mail;
  AuthSpec auth;
  std::string pam_service = "popgate";
  std::string syslog_ident = "popgate";
  bool daemon = false;         // -D
  bool print_version = false;  // -V
  bool foreground = false;
  LogTarget log = LogTarget::kSyslog;
  int max_sessions = 500;
  int max_sessions_per_source = 50;
  absl::Duration min_session_slot = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(600);
  absl::Duration write_timeout = absl::Seconds(120);
  bool sendfile = true;
  std::string state_dir = "/var/lib/popgate";
  // Account of the chrooted pre-auth child; empty = "popgate", else "nobody".
  std::string preauth_user;
  int max_line_bytes = 255;
  int max_bad_commands = 20;
  int max_auth_attempts = 1;
  bool capa = true;
  int64_t max_mailbox_bytes = 2147483647;
  int64_t max_messages = 2097152;

  // -D process model and the pool's processes (config.cc has the reasons).
  DaemonMode mode = DaemonMode::kFork;
  int workers = 0;         // 0 = number of CPUs
  std::string pool_user;   // empty = "popgate", else "nobody"
  std::string pool_group;  // empty = the pool user's primary group
  int auth_threads = 0;    // 0 = number of CPUs
  int auth_queue = 256;
  absl::Duration auth_cache_ttl = absl::Minutes(5);  // zero = no cache
  int auth_cache_size = 65536;
  int max_sessions_per_worker = 0;  // 0 = derived from RLIMIT_NOFILE
  absl::Duration drain_timeout = absl::Seconds(600);

  // Admission beyond popa3d's slots: connect rate per source, aggregation.
  double rate_per_source = 0;  // connections per second; 0 = off
  int burst_per_source = 20;
  int source_prefix_v4 = 32;
  int source_prefix_v6 = 64;
  int max_tracked_sources = 65536;
  bool refuse_with_error = false;

  // Slowloris and brute-force bounds (pool mode).
  absl::Duration preauth_timeout = absl::Seconds(60);
  absl::Duration auth_fail_delay = absl::Milliseconds(500);
  absl::Duration auth_fail_max_delay = absl::Seconds(8);
  int auth_lockout_failures = 30;  // 0 = never lock out
  absl::Duration auth_lockout = absl::Minutes(5);
};

// Reads every flag above and validates it. InvalidArgument naming the flag
// ("--listen: ...") for bad syntax or out-of-range values.
// REQUIRES: absl::ParseCommandLine has run (or flags were set in a test).
absl::StatusOr<Config> ConfigFromFlags();

// The parsers behind ConfigFromFlags, exposed for tests and fuzzers. Each
// returns InvalidArgument naming its flag on any junk.
//
// "127.0.0.1:110,[::1]:110": comma-separated, no spaces, numeric hosts only
// (no names: resolving at startup would make binding depend on DNS), IPv6 in
// brackets, port 0..65535 required, no duplicates, at least one entry.
absl::StatusOr<std::vector<ListenAddress>> ParseListenAddresses(
    absl::string_view text);
// "mbox:/var/mail/%u", "mbox:~/Mailbox", "maildir:~/Maildir",
// "maildir:/srv/mail/%d/%n".
absl::StatusOr<MailLocation> ParseMailLocation(absl::string_view text);
// "pam", "shadow", "passwd-file:/etc/popgate/passwd" (absolute path).
absl::StatusOr<AuthSpec> ParseAuthSpec(absl::string_view text);

// Whether `user` may appear in a filesystem path: non-empty, at most 64
// bytes, no '/', no leading '.', only bytes 0x20..0x7e. popa3d puts the typed
// name in the spool path verbatim (only its virtual mode validates); we
// validate always, so "../x" or a NUL can never reach open().
bool IsSafeUserName(absl::string_view user);

// The mailbox path for `user`: %u -> user, %n -> local part, %d -> domain
// (every occurrence, one pass), a leading "~" -> home. InvalidArgument if a
// part used is unsafe (IsSafeUserName) or the pattern needs a home and
// `home` is not an absolute path.
absl::StatusOr<std::string> ExpandMailPath(const MailLocation& location,
                                           absl::string_view user,
                                           absl::string_view home);

// "popgate version 0.1.0": what -V prints.
std::string VersionString();

}  // namespace popgate::core

#endif  // POPGATE_CORE_CONFIG_H_
