#include "core/config.h"

// inet_pton is a libc parser, not a syscall; it stays in this .cc so that no
// core/ header pulls in socket headers (STYLE.md §1).
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

#ifndef POPGATE_VERSION
#define POPGATE_VERSION "0.1.0"
#endif

// Each flag: what it sets, default and why, and what breaks if it is raised.
// Defaults reproduce `popa3d -D` as Debian ships it (popa3d-behaviour.md §1),
// except where a comment says why we differ.

// Default 0.0.0.0:110, popa3d's fixed DAEMON_ADDR/PORT. Port 0 lets the
// kernel pick (tests read the bound port back). Listing more addresses costs
// one listening socket each; nothing breaks.
ABSL_FLAG(std::string, listen, "0.0.0.0:110",
          "Comma-separated addresses to listen on with -D: v4:port or "
          "[v6]:port, e.g. 127.0.0.1:110,[::1]:110.");

// Default mbox:/var/mail/%u, popa3d's MAIL_SPOOL_PATH. `~` stands for the
// user's home (popa3d built without a spool: mbox:~/Mailbox); maildir:
// names the directory holding new/ and cur/ (maildir:~/Maildir). For
// virtual users "user@domain", %n is the local part and %d the domain
// (empty without '@'): maildir:/srv/mail/%d/%n.
ABSL_FLAG(std::string, mail, "mbox:/var/mail/%u",
          "Mailbox location: mbox:<pattern> or maildir:<pattern>; %u is the "
          "user name, %n/%d its local part/domain, a leading ~ the user's "
          "home.");

// Default pam, as Debian's popa3d. shadow: popa3d's upstream default;
// passwd-file:PATH: Dovecot-style virtual users (user:{SCHEME}hash:uid:gid:
// gecos:home:shell). Which one to use is a site decision, not a limit.
ABSL_FLAG(std::string, auth, "pam",
          "Password backend: pam | shadow | passwd-file:/path/to/file.");

// Default "popgate". Use "popa3d" to reuse Debian's /etc/pam.d/popa3d as a
// drop-in replacement. A service without a file falls back to PAM's "other"
// (deny on Debian), so a typo locks everyone out rather than in.
ABSL_FLAG(std::string, pam_service, "popgate",
          "PAM service name (popa3d for a drop-in replacement).");

// Default "popgate"; "popa3d" keeps existing fail2ban filters and log
// routing that match on the ident.
ABSL_FLAG(std::string, syslog_ident, "popgate", "syslog identity.");

// popa3d's -D: run the standalone daemon. Without it we serve one session on
// stdin/stdout (inetd mode), exactly as popa3d.
ABSL_FLAG(bool, D, false, "Run as a standalone daemon (default: inetd mode).");

// popa3d's -V: print the version to stdout and exit 0.
ABSL_FLAG(bool, V, false, "Print the version and exit.");

// With -D: stay in the foreground (systemd Type=simple, containers, tests)
// instead of detaching as popa3d does.
ABSL_FLAG(bool, foreground, false, "With -D, do not detach.");

// Default syslog (facility daemon, LOG_PID), popa3d's only target. stderr
// writes timestamped "ident[pid]: message" lines, for --foreground.
ABSL_FLAG(std::string, log, "syslog", "Log target: syslog | stderr.");

// Default 500, popa3d's MAX_SESSIONS. Each session costs at least a table
// slot, a socket and its buffers (a process with --mode=fork): raising it
// trades memory and fds for capacity; keep it below RLIMIT_NOFILE.
ABSL_FLAG(int32_t, max_sessions, 500,
          "Most concurrent sessions in all (global cap).");

// Default 50, popa3d's MAX_SESSIONS_PER_SOURCE. Raising it lets one source
// (or one NAT) take a larger share of --max_sessions.
ABSL_FLAG(int32_t, max_sessions_per_source, 50,
          "Most concurrent sessions per source address.");

// Default 10s, popa3d's MIN_DELAY: a session's slot stays taken at least this
// long after the session started, even if it ended sooner, which bounds the
// session start rate to max_sessions / min_session_slot (popa3d: 50/s).
// Raising it lowers that ceiling for everyone; 0 disables the hold.
ABSL_FLAG(absl::Duration, min_session_slot, absl::Seconds(10),
          "A session slot is held at least this long after the session "
          "started (popa3d MIN_DELAY).");

// Default 600s, popa3d's POP_TIMEOUT and RFC 1939's minimum for TRANSACTION
// ("at least 10 minutes"). Raising it lets idle clients pin slots longer.
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(600),
          "Close a session after this long without a command.");

// Default 120s; popa3d has no write timeout, so a client that stops reading
// holds its slot forever there. Raising it lets stalled readers pin slots.
ABSL_FLAG(absl::Duration, write_timeout, absl::Seconds(120),
          "Close a session when a reply makes no progress for this long.");

// Default true: wire-clean runs of a Maildir message (CR LF lines, no line
// starting with '.', at least 16 KiB) go from the page cache with
// sendfile(2), not copied from the mapping. Off only to compare the two
// paths; the octets sent are the same either way. mbox messages are always
// copied (see MboxMaildrop::Retrieve: an mbox is rewritten in place).
ABSL_FLAG(bool, sendfile, true,
          "Send wire-clean Maildir message runs from the page cache with "
          "sendfile.");

// Default /var/lib/popgate: per-user redo records for crash-safe mbox
// rewrites, and the mbox index and Maildir size caches. Must be absolute
// and on local storage; not a limit.
ABSL_FLAG(std::string, state_dir, "/var/lib/popgate",
          "Directory for per-user redo records (crash-safe mailbox updates) "
          "and mailbox index and size caches.");

// Default empty: the account "popgate" if it exists, else "nobody" (popa3d:
// POP_USER). The pre-auth child runs as this account, chrooted to
// <state_dir>/empty, while it parses AUTHORIZATION. Must not be root.
ABSL_FLAG(std::string, preauth_user, "",
          "Unprivileged account for the chrooted pre-auth child (default: "
          "popgate, else nobody).");

// Default 255, RFC 2449's line limit (popa3d keeps 127 bytes). Bounds the
// per-session input buffer; raising it costs memory per session and lets
// longer passwords through (crypt caps passphrases at 512 bytes anyway).
ABSL_FLAG(int32_t, max_line_bytes, 255,
          "Longest command line accepted, CR LF excluded.");

// Default 20, as Dovecot; popa3d has no cap. Raising it lets a junk-spewing
// client keep its slot longer.
ABSL_FLAG(int32_t, max_bad_commands, 20,
          "Close the session after this many bad commands.");

// Default 1, popa3d: one PASS per connection, so a brute-forcer pays a
// connection (and the per-source limits) per guess. Raising it makes guessing
// cheaper for attackers.
ABSL_FLAG(int32_t, max_auth_attempts, 1,
          "PASS attempts allowed per connection.");

// Default true. popa3d answers CAPA with -ERR; clients cope with either, and
// CAPA lets them learn about UIDL/TOP without guessing.
ABSL_FLAG(bool, capa, true, "Offer the CAPA command (RFC 2449).");

// Default 2147483647, popa3d's MAX_MAILBOX_OPEN_BYTES: larger mailboxes are
// refused at login. Raising it raises the index build time and memory that
// one login can cost.
ABSL_FLAG(int64_t, max_mailbox_bytes, 2147483647,
          "Refuse mailboxes larger than this many bytes.");

// Default 2097152, popa3d's MAX_MAILBOX_MESSAGES. The index costs ~100 bytes
// per message; raising it raises the memory one login can pin.
ABSL_FLAG(int64_t, max_messages, 2097152,
          "Refuse mailboxes with more messages than this.");

// Default fork: popa3d's model, a process per session that drops to the
// mailbox owner (strongest isolation, one fork and ~1 MiB per session).
// pool: N event-loop workers as one unprivileged account plus one auth
// process; thousands of sessions per worker, but all mailboxes share the
// pool account, so it needs group access to the spool (--pool_group).
ABSL_FLAG(std::string, mode, "fork",
          "-D process model: fork (a process per session, as popa3d) or "
          "pool (N event-loop workers and an auth process).");

// Default 0 = one worker per CPU (sessions are I/O-bound; more workers than
// CPUs only add context switches). Each worker costs a process, a ring and
// its sessions' memory; a dead worker loses only its own sessions.
ABSL_FLAG(int32_t, workers, 0,
          "--mode=pool: worker processes (0 = number of CPUs).");

// Default empty: "popgate" if that account exists, else "nobody". Workers
// parse client bytes and read mailboxes as this account; never root (refused
// at startup). Every mailbox must be reachable by it (--pool_group).
ABSL_FLAG(std::string, pool_user, "",
          "--mode=pool: account the workers run as (default: popgate, else "
          "nobody; never root).");

// Default empty: the pool user's primary group. "mail" for a system spool
// (/var/mail/<user> is <user>:mail 0660 on Debian).
ABSL_FLAG(std::string, pool_group, "",
          "--mode=pool: group the workers run as (default: the pool user's "
          "primary group; mail for /var/mail).");

// Default 0 = one per CPU: hashing is CPU-bound, so more threads than CPUs
// only queue inside the kernel instead of in our bounded queue. Raising it
// lets a PAM backend that waits on the network (LDAP) overlap more calls.
ABSL_FLAG(int32_t, auth_threads, 0,
          "--mode=pool: password verification threads (0 = number of CPUs).");

// Default 256 requests waiting beyond the busy threads (about one second of
// yescrypt work on 4 CPUs); past it a PASS gets -ERR [SYS/TEMP] at once.
// Raising it turns a flood of PASS into latency for everyone.
ABSL_FLAG(int32_t, auth_queue, 256,
          "--mode=pool: password verifications queued beyond the threads.");

// Default 5m: a client polling every minute costs one hash per 5 minutes.
// A changed passwd-file flushes it. Raising it keeps an old PAM password
// working longer after a change; 0 turns the cache off.
ABSL_FLAG(absl::Duration, auth_cache_ttl, absl::Minutes(5),
          "--mode=pool: how long a verified password is remembered (0 = "
          "off).");

// Default 65536 entries (~100 bytes each); the oldest is evicted first.
ABSL_FLAG(int32_t, auth_cache_size, 65536,
          "--mode=pool: auth cache entries (0 = off).");

// Default 0 = off: popa3d limits the session start rate only through the
// slot hold (--min_session_slot). A token bucket per source prefix refills
// at this many connections per second; a source over it is refused before
// it takes a slot. Lowering it below a client's poll rate locks it out.
ABSL_FLAG(double, rate_per_source, 0,
          "New connections per second per source prefix (0 = no limit).");

// Default 20: a mail client opening a few connections at once, or a NAT's
// burst, passes. Raising it lets a source burst more connections before the
// rate applies.
ABSL_FLAG(int32_t, burst_per_source, 20,
          "Connections a source may open at once before --rate_per_source "
          "applies.");

// Defaults /32 and /64: one IPv4 address (popa3d), one IPv6 customer prefix
// (an attacker owns the whole /64). /24 makes a whole IPv4 subnet share one
// budget: stronger against botnets in one range, harsher on big NATs.
ABSL_FLAG(int32_t, source_prefix_v4, 32,
          "IPv4 prefix length that counts as one source (32 or e.g. 24).");
ABSL_FLAG(int32_t, source_prefix_v6, 64,
          "IPv6 prefix length that counts as one source.");

// Default 65536 rate buckets (~64 bytes each): far more distinct sources
// than a host sees in one refill period. Past it an idle bucket is evicted;
// only when every tracked source is busy is a new one refused.
ABSL_FLAG(int32_t, max_tracked_sources, 65536,
          "Bound on per-source rate buckets.");

// Default 60s from connect to a successful PASS: a slowloris client can pin
// a session this long without knowing a password. Raising it helps humans
// typing over telnet and hurts under floods.
ABSL_FLAG(absl::Duration, preauth_timeout, absl::Seconds(60),
          "--mode=pool: close a session not authenticated within this long.");

// Default 500ms, doubled per further failure of the same source up to
// --auth_fail_max_delay (the first two failures are free: typos). Slows a
// brute-forcer down without a sleeping thread. Raising it slows legitimate
// users who mistype too.
ABSL_FLAG(absl::Duration, auth_fail_delay, absl::Milliseconds(500),
          "--mode=pool: delay before a failed PASS is answered (grows per "
          "failure).");
ABSL_FLAG(absl::Duration, auth_fail_max_delay, absl::Seconds(8),
          "--mode=pool: cap on the growing failed-PASS delay.");

// Default 30 failures: past it the source gets "-ERR" without a password
// hash being spent, for --auth_lockout. A NAT full of users who mistype can
// reach it; 0 disables the lockout.
ABSL_FLAG(int32_t, auth_lockout_failures, 30,
          "--mode=pool: failed PASS from one source before it is locked out "
          "(0 = never).");
ABSL_FLAG(absl::Duration, auth_lockout, absl::Minutes(5),
          "--mode=pool: how long a locked-out source stays locked out.");

// Default false: a refused connection is closed silently, as popa3d (cheaper,
// and tells a flooder nothing). true sends one best-effort
// "-ERR [SYS/TEMP] ..." line first, so legitimate clients show a reason.
ABSL_FLAG(bool, refuse_with_error, false,
          "Send -ERR [SYS/TEMP] before closing a refused connection.");

// Default 600s, the idle timeout: after SIGTERM (or a worker replacement on
// SIGHUP) running sessions get this long to finish before SIGKILL. Lowering
// it cuts off slow downloads; an mbox update killed mid-way is repaired from
// its redo record at the next login.
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(600),
          "On shutdown, how long sessions may run on before they are killed.");

// Default 0: derived from RLIMIT_NOFILE (two descriptors per session, the
// socket and the mailbox, minus a margin). Caps what one worker holds, so a
// crash loses at most this many sessions; the global cap is --max_sessions.
ABSL_FLAG(int32_t, max_sessions_per_worker, 0,
          "--mode=pool: sessions one worker holds at most (0 = from the fd "
          "limit).");

namespace popgate::core {
namespace {

constexpr size_t kMaxUserNameBytes = 64;

absl::Status FlagError(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", what));
}

// Strict decimal port: digits only (no sign, no spaces), 0..65535.
bool ParsePort(absl::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  uint32_t value = 0;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

absl::StatusOr<ListenAddress> ParseOneListenAddress(absl::string_view entry) {
  ListenAddress address;
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(entry, "[")) {
    const size_t close = entry.find(']');
    if (close == absl::string_view::npos || close + 1 >= entry.size() ||
        entry[close + 1] != ':') {
      return FlagError("listen", absl::StrCat("expected [v6]:port, got \"",
                                              entry, "\""));
    }
    host = entry.substr(1, close - 1);
    port = entry.substr(close + 2);
    address.family = AF_INET6;
  } else {
    const size_t colon = entry.rfind(':');
    if (colon == absl::string_view::npos) {
      return FlagError("listen",
                       absl::StrCat("missing :port in \"", entry, "\""));
    }
    host = entry.substr(0, colon);
    port = entry.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return FlagError("listen", absl::StrCat("IPv6 addresses need brackets: "
                                              "[v6]:port, got \"",
                                              entry, "\""));
    }
    address.family = AF_INET;
  }
  // inet_pton needs a NUL-terminated string; the copy is bounded by the
  // length check (the longest IPv6 text form is 45 bytes). An embedded NUL
  // would end the string early and make "127.0.0.1\0junk" look valid.
  if (host.empty() || host.size() > 45 ||
      host.find('\0') != absl::string_view::npos) {
    return FlagError("listen", absl::StrCat("bad address in \"", entry, "\""));
  }
  const std::string host_copy(host);
  unsigned char buffer[sizeof(struct in6_addr)];
  if (::inet_pton(address.family, host_copy.c_str(), buffer) != 1) {
    return FlagError("listen",
                     absl::StrCat("not a numeric ",
                                  address.family == AF_INET ? "IPv4" : "IPv6",
                                  " address in \"", entry, "\""));
  }
  if (!ParsePort(port, &address.port)) {
    return FlagError("listen", absl::StrCat("bad port in \"", entry,
                                            "\" (want 0..65535)"));
  }
  address.host = host_copy;
  return address;
}

absl::Status CheckRange(absl::string_view flag, int64_t value, int64_t low,
                        int64_t high) {
  if (value < low || value > high) {
    return FlagError(flag, absl::StrCat(value, " is out of range [", low, ", ",
                                        high, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(absl::string_view flag, absl::Duration value) {
  if (value <= absl::ZeroDuration() || value == absl::InfiniteDuration()) {
    return FlagError(flag, "must be positive and finite");
  }
  return absl::OkStatus();
}

// PAM service names become file names under /etc/pam.d; syslog idents end
// up in every line. Keep both to a boring character set.
bool IsPlainName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<ListenAddress>> ParseListenAddresses(
    absl::string_view text) {
  if (text.empty()) return FlagError("listen", "no address given");
  std::vector<ListenAddress> addresses;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    if (entry.empty()) return FlagError("listen", "empty entry");
    ASSIGN_OR_RETURN(ListenAddress address, ParseOneListenAddress(entry));
    for (const ListenAddress& seen : addresses) {
      if (seen == address && address.port != 0) {
        return FlagError("listen",
                         absl::StrCat("duplicate entry \"", entry, "\""));
      }
    }
    addresses.push_back(std::move(address));
  }
  return addresses;
}

absl::StatusOr<MailLocation> ParseMailLocation(absl::string_view text) {
  MailLocation location;
  absl::string_view pattern;
  if (absl::StartsWith(text, "mbox:")) {
    location.format = MailFormat::kMbox;
    pattern = text.substr(5);
  } else if (absl::StartsWith(text, "maildir:")) {
    location.format = MailFormat::kMaildir;
    pattern = text.substr(8);
  } else {
    return FlagError("mail", "expected mbox:<pattern> or maildir:<pattern>");
  }
  if (!absl::StartsWith(pattern, "/") && !absl::StartsWith(pattern, "~/")) {
    return FlagError("mail", "the pattern must be absolute or start with ~/");
  }
  if (pattern.size() > 1024) return FlagError("mail", "pattern too long");
  bool has_user = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(pattern[i]);
    if (c < 0x20 || c == 0x7f) {
      return FlagError("mail", "control character in pattern");
    }
    if (c == '%') {
      // Only %u, %n and %d are defined; rejecting the rest catches typos
      // (%U, %h) at startup instead of creating a literal "%h" directory.
      const char e = i + 1 < pattern.size() ? pattern[i + 1] : '\0';
      if (e != 'u' && e != 'n' && e != 'd') {
        return FlagError("mail",
                         "only %u, %n or %d may follow % in the pattern");
      }
      // %d alone would put a whole domain in one mailbox.
      if (e != 'd') has_user = true;
      ++i;
    }
  }
  // Without %u/%n or ~ every user would share one mailbox: certainly a typo.
  if (!has_user && !absl::StartsWith(pattern, "~/")) {
    return FlagError("mail", "the pattern needs %u, %n or a leading ~/");
  }
  location.pattern = std::string(pattern);
  return location;
}

absl::StatusOr<AuthSpec> ParseAuthSpec(absl::string_view text) {
  AuthSpec spec;
  if (text == "pam") {
    spec.kind = AuthKind::kPam;
    return spec;
  }
  if (text == "shadow") {
    spec.kind = AuthKind::kShadow;
    return spec;
  }
  if (absl::StartsWith(text, "passwd-file:")) {
    absl::string_view path = text.substr(12);
    if (!absl::StartsWith(path, "/")) {
      return FlagError("auth", "passwd-file needs an absolute path");
    }
    for (char c : path) {
      const unsigned char u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        return FlagError("auth", "control character in path");
      }
    }
    spec.kind = AuthKind::kPasswdFile;
    spec.path = std::string(path);
    return spec;
  }
  return FlagError("auth", "expected pam, shadow or passwd-file:/path");
}

bool IsSafeUserName(absl::string_view user) {
  if (user.empty() || user.size() > kMaxUserNameBytes || user[0] == '.') {
    return false;
  }
  for (char c : user) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || c == '/') return false;
  }
  return true;
}

absl::StatusOr<std::string> ExpandMailPath(const MailLocation& location,
                                           absl::string_view user,
                                           absl::string_view home) {
  if (!IsSafeUserName(user)) {
    return absl::InvalidArgumentError("user name not usable in a path");
  }
  absl::string_view pattern = location.pattern;
  std::string out;
  if (absl::StartsWith(pattern, "~")) {
    // A relative or empty home would make the path depend on the cwd.
    if (!absl::StartsWith(home, "/")) {
      return absl::InvalidArgumentError(
          "mail pattern uses ~ but the user has no absolute home");
    }
    absl::string_view trimmed = home;
    while (trimmed.size() > 1 && absl::EndsWith(trimmed, "/")) {
      trimmed.remove_suffix(1);
    }
    out.append(trimmed.data(), trimmed.size());
    pattern.remove_prefix(1);
    if (trimmed == "/" && absl::StartsWith(pattern, "/")) out.clear();
  }
  // %n / %d: the parts before and after the first '@' (Dovecot's rule).
  // Each must itself be a safe path component where it is used: "a@.."
  // or "@x" must not name the domain directory or a parent.
  const size_t at = user.find('@');
  const absl::string_view local = user.substr(0, at);
  const absl::string_view domain =
      at == absl::string_view::npos ? absl::string_view() : user.substr(at + 1);
  if (absl::StrContains(pattern, "%n") && !IsSafeUserName(local)) {
    return absl::InvalidArgumentError("local part not usable in a path");
  }
  // An empty domain is fine only without '@': "alice@" must not land in
  // the mailbox of "alice".
  if (absl::StrContains(pattern, "%d") &&
      (at != absl::string_view::npos && !IsSafeUserName(domain))) {
    return absl::InvalidArgumentError("domain not usable in a path");
  }
  // One left-to-right pass: a value containing "%d" is never expanded again.
  std::string expanded;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 'u' || e == 'n' || e == 'd') {
        const absl::string_view value = e == 'u'   ? user
                                        : e == 'n' ? local
                                                   : domain;
        expanded.append(value.data(), value.size());
        ++i;
        continue;
      }
    }
    expanded += pattern[i];
  }
  out.append(expanded);
  return out;
}

std::string VersionString() {
  return absl::StrCat("popgate version ", POPGATE_VERSION);
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config config;
  ASSIGN_OR_RETURN(config.listen,
                   ParseListenAddresses(absl::GetFlag(FLAGS_listen)));
  ASSIGN_OR_RETURN(config.mail, ParseMailLocation(absl::GetFlag(FLAGS_mail)));
  ASSIGN_OR_RETURN(config.auth, ParseAuthSpec(absl::GetFlag(FLAGS_auth)));

  config.pam_service = absl::GetFlag(FLAGS_pam_service);
  if (!IsPlainName(config.pam_service)) {
    return FlagError("pam_service", "want [A-Za-z0-9._-]{1,64}, no leading .");
  }
  config.syslog_ident = absl::GetFlag(FLAGS_syslog_ident);
  if (!IsPlainName(config.syslog_ident)) {
    return FlagError("syslog_ident", "want [A-Za-z0-9._-]{1,64}, no leading .");
  }
  config.daemon = absl::GetFlag(FLAGS_D);
  config.print_version = absl::GetFlag(FLAGS_V);
  config.foreground = absl::GetFlag(FLAGS_foreground);

  const std::string log = absl::GetFlag(FLAGS_log);
  if (log == "syslog") {
    config.log = LogTarget::kSyslog;
  } else if (log == "stderr") {
    config.log = LogTarget::kStderr;
  } else {
    return FlagError("log", "expected syslog or stderr");
  }

  // Upper bounds are sanity caps against typos (an extra zero or three), not
  // tuned limits: each is far above anything one host can serve.
  config.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  RETURN_IF_ERROR(CheckRange("max_sessions", config.max_sessions, 1, 1000000));
  config.max_sessions_per_source = absl::GetFlag(FLAGS_max_sessions_per_source);
  RETURN_IF_ERROR(CheckRange("max_sessions_per_source",
                             config.max_sessions_per_source, 1,
                             config.max_sessions));

  config.min_session_slot = absl::GetFlag(FLAGS_min_session_slot);
  if (config.min_session_slot < absl::ZeroDuration() ||
      config.min_session_slot > absl::Hours(1)) {
    return FlagError("min_session_slot", "must be within [0s, 1h]");
  }
  config.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  RETURN_IF_ERROR(CheckPositive("idle_timeout", config.idle_timeout));
  config.write_timeout = absl::GetFlag(FLAGS_write_timeout);
  config.sendfile = absl::GetFlag(FLAGS_sendfile);
  RETURN_IF_ERROR(CheckPositive("write_timeout", config.write_timeout));

  config.state_dir = absl::GetFlag(FLAGS_state_dir);
  config.preauth_user = absl::GetFlag(FLAGS_preauth_user);
  if (!absl::StartsWith(config.state_dir, "/")) {
    return FlagError("state_dir", "must be an absolute path");
  }

  // 48: "PASS " plus a 40-char argument (RFC 1939's argument limit) and
  // room to spare; below that legitimate clients break.
  config.max_line_bytes = absl::GetFlag(FLAGS_max_line_bytes);
  RETURN_IF_ERROR(
      CheckRange("max_line_bytes", config.max_line_bytes, 48, 65536));
  config.max_bad_commands = absl::GetFlag(FLAGS_max_bad_commands);
  RETURN_IF_ERROR(
      CheckRange("max_bad_commands", config.max_bad_commands, 1, 1000000));
  config.max_auth_attempts = absl::GetFlag(FLAGS_max_auth_attempts);
  RETURN_IF_ERROR(
      CheckRange("max_auth_attempts", config.max_auth_attempts, 1, 100));
  config.capa = absl::GetFlag(FLAGS_capa);
  config.max_mailbox_bytes = absl::GetFlag(FLAGS_max_mailbox_bytes);
  RETURN_IF_ERROR(CheckRange("max_mailbox_bytes", config.max_mailbox_bytes, 1,
                             std::numeric_limits<int64_t>::max()));
  config.max_messages = absl::GetFlag(FLAGS_max_messages);
  RETURN_IF_ERROR(
      CheckRange("max_messages", config.max_messages, 1, int64_t{1} << 32));

  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "fork") {
    config.mode = DaemonMode::kFork;
  } else if (mode == "pool") {
    config.mode = DaemonMode::kPool;
  } else {
    return FlagError("mode", "expected fork or pool");
  }
  config.workers = absl::GetFlag(FLAGS_workers);
  RETURN_IF_ERROR(CheckRange("workers", config.workers, 0, 1024));
  config.pool_user = absl::GetFlag(FLAGS_pool_user);
  if (!config.pool_user.empty() && !IsPlainName(config.pool_user)) {
    return FlagError("pool_user", "want [A-Za-z0-9._-]{1,64}, no leading .");
  }
  config.pool_group = absl::GetFlag(FLAGS_pool_group);
  if (!config.pool_group.empty() && !IsPlainName(config.pool_group)) {
    return FlagError("pool_group", "want [A-Za-z0-9._-]{1,64}, no leading .");
  }
  config.auth_threads = absl::GetFlag(FLAGS_auth_threads);
  RETURN_IF_ERROR(CheckRange("auth_threads", config.auth_threads, 0, 1024));
  config.auth_queue = absl::GetFlag(FLAGS_auth_queue);
  RETURN_IF_ERROR(CheckRange("auth_queue", config.auth_queue, 1, 1000000));
  config.auth_cache_ttl = absl::GetFlag(FLAGS_auth_cache_ttl);
  if (config.auth_cache_ttl < absl::ZeroDuration() ||
      config.auth_cache_ttl > absl::Hours(24)) {
    return FlagError("auth_cache_ttl", "must be within [0s, 24h]");
  }
  config.auth_cache_size = absl::GetFlag(FLAGS_auth_cache_size);
  RETURN_IF_ERROR(
      CheckRange("auth_cache_size", config.auth_cache_size, 0, 16777216));
  config.max_sessions_per_worker = absl::GetFlag(FLAGS_max_sessions_per_worker);
  RETURN_IF_ERROR(CheckRange("max_sessions_per_worker",
                             config.max_sessions_per_worker, 0, 10000000));
  config.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (config.drain_timeout <= absl::ZeroDuration() ||
      config.drain_timeout > absl::Hours(24)) {
    return FlagError("drain_timeout", "must be within (0s, 24h]");
  }

  // NaN fails both comparisons, so test for the valid range, not the bad.
  config.rate_per_source = absl::GetFlag(FLAGS_rate_per_source);
  if (!(config.rate_per_source >= 0 && config.rate_per_source <= 1e6)) {
    return FlagError("rate_per_source", "must be within [0, 1000000]");
  }
  config.burst_per_source = absl::GetFlag(FLAGS_burst_per_source);
  RETURN_IF_ERROR(
      CheckRange("burst_per_source", config.burst_per_source, 1, 1000000));
  config.source_prefix_v4 = absl::GetFlag(FLAGS_source_prefix_v4);
  RETURN_IF_ERROR(
      CheckRange("source_prefix_v4", config.source_prefix_v4, 0, 32));
  config.source_prefix_v6 = absl::GetFlag(FLAGS_source_prefix_v6);
  RETURN_IF_ERROR(
      CheckRange("source_prefix_v6", config.source_prefix_v6, 0, 128));
  config.max_tracked_sources = absl::GetFlag(FLAGS_max_tracked_sources);
  RETURN_IF_ERROR(CheckRange("max_tracked_sources", config.max_tracked_sources,
                             1, 16777216));
  config.refuse_with_error = absl::GetFlag(FLAGS_refuse_with_error);

  config.preauth_timeout = absl::GetFlag(FLAGS_preauth_timeout);
  RETURN_IF_ERROR(CheckPositive("preauth_timeout", config.preauth_timeout));
  config.auth_fail_delay = absl::GetFlag(FLAGS_auth_fail_delay);
  if (config.auth_fail_delay < absl::ZeroDuration() ||
      config.auth_fail_delay > absl::Minutes(1)) {
    return FlagError("auth_fail_delay", "must be within [0s, 1m]");
  }
  config.auth_fail_max_delay = absl::GetFlag(FLAGS_auth_fail_max_delay);
  if (config.auth_fail_max_delay < config.auth_fail_delay ||
      config.auth_fail_max_delay > absl::Minutes(10)) {
    return FlagError("auth_fail_max_delay",
                     "must be within [--auth_fail_delay, 10m]");
  }
  config.auth_lockout_failures = absl::GetFlag(FLAGS_auth_lockout_failures);
  RETURN_IF_ERROR(CheckRange("auth_lockout_failures",
                             config.auth_lockout_failures, 0, 1000000));
  config.auth_lockout = absl::GetFlag(FLAGS_auth_lockout);
  if (config.auth_lockout <= absl::ZeroDuration() ||
      config.auth_lockout > absl::Hours(24)) {
    return FlagError("auth_lockout", "must be within (0s, 24h]");
  }
  return config;
}

}  // namespace popgate::core
