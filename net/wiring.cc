#include "net/wiring.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/auth/factory.h"
#include "core/auth/passwd_file.h"
#include "mailbox/maildir.h"
#include "mailbox/mbox.h"

namespace popgate::net {

std::unique_ptr<core::LogSink> MakeLogSink(const core::Config& config) {
  if (config.log == core::LogTarget::kStderr) {
    return std::make_unique<core::StderrSink>(config.syslog_ident);
  }
  return std::make_unique<core::SyslogSink>(config.syslog_ident);
}

core::SessionOptions SessionOptionsFromConfig(const core::Config& config) {
  core::SessionOptions options;
  options.max_line_bytes = static_cast<size_t>(config.max_line_bytes);
  options.max_bad_commands = config.max_bad_commands;
  options.max_auth_attempts = config.max_auth_attempts;
  options.capa = config.capa;
  return options;
}

limits::FloodOptions FloodOptionsFromConfig(const core::Config& config) {
  limits::FloodOptions flood;
  flood.max_sessions = static_cast<size_t>(config.max_sessions);
  flood.max_per_source = static_cast<size_t>(config.max_sessions_per_source);
  flood.min_session_slot = config.min_session_slot;
  return flood;
}

limits::AdmissionOptions AdmissionOptionsFromConfig(
    const core::Config& config) {
  limits::AdmissionOptions options;
  options.flood = FloodOptionsFromConfig(config);
  options.rate_per_second = config.rate_per_source;
  options.burst = static_cast<double>(config.burst_per_source);
  options.max_tracked_sources = static_cast<size_t>(config.max_tracked_sources);
  options.prefix.ipv4_bits = config.source_prefix_v4;
  options.prefix.ipv6_bits = config.source_prefix_v6;
  return options;
}

namespace {

int Cpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : static_cast<int>(std::min(n, 1024L));
}

// Looks up an account by name with the reentrant call. `buffer` holds the
// strings the returned passwd points into.
absl::StatusOr<passwd> LookupUser(const std::string& name,
                                  std::vector<char>* buffer) {
  buffer->assign(16384, '\0');
  passwd pw{};
  passwd* result = nullptr;
  const int err =
      ::getpwnam_r(name.c_str(), &pw, buffer->data(), buffer->size(), &result);
  if (err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("getpwnam ", name));
  }
  if (result == nullptr) {
    return absl::NotFoundError(absl::StrCat("no account \"", name, "\""));
  }
  return pw;
}

// What every session's maildrop is opened with (--max_mailbox_bytes,
// --max_messages, --mail's format).
struct MaildropLimits {
  int64_t max_bytes;
  int64_t max_messages;
  bool maildir;
};

// Opens the mailbox at `path` for a session whose per-user state folder is
// `state_dir`; `owner` (pool mode) is the uid the mailbox must belong to.
absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> OpenMaildrop(
    const MaildropLimits& limits, const std::string& path,
    const std::string& state_dir, std::optional<uid_t> owner) {
  if (limits.maildir) {
    // No redo records: a Maildir update is a set of unlinks. The lock file
    // lives in the maildir itself (see mailbox/maildir_lock.h); the state
    // folder holds its size cache.
    mailbox::MaildirOptions options;
    options.max_bytes = static_cast<uint64_t>(limits.max_bytes);
    options.max_messages = static_cast<size_t>(limits.max_messages);
    options.required_owner = owner;
    options.cache_dir = state_dir;
    return mailbox::OpenMaildir(path, options);
  }
  mailbox::MboxOptions options;
  options.redo_dir = state_dir;
  options.max_bytes = static_cast<uint64_t>(limits.max_bytes);
  options.max_messages = static_cast<size_t>(limits.max_messages);
  options.required_owner = owner;
  return mailbox::OpenMbox(path, options);
}

}  // namespace

AuthProcessOptions AuthProcessOptionsFromConfig(const core::Config& config) {
  AuthProcessOptions options;
  options.threads = config.auth_threads == 0 ? Cpus() : config.auth_threads;
  options.max_queue = static_cast<size_t>(config.auth_queue);
  options.cache_entries = static_cast<size_t>(config.auth_cache_size);
  options.cache_ttl = config.auth_cache_ttl;
  limits::PenaltyOptions& penalty = options.penalty;
  penalty.base_delay = config.auth_fail_delay;
  penalty.max_delay = config.auth_fail_max_delay;
  penalty.lockout_failures = config.auth_lockout_failures;
  penalty.lockout = config.auth_lockout;
  penalty.prefix.ipv4_bits = config.source_prefix_v4;
  penalty.prefix.ipv6_bits = config.source_prefix_v6;
  return options;
}

size_t MaxSessionsPerWorker(const core::Config& config) {
  if (config.max_sessions_per_worker > 0) {
    return static_cast<size_t>(config.max_sessions_per_worker);
  }
  // The margin covers the worker's ring, channels, log socket and the
  // files a login opens briefly (index cache, redo record).
  constexpr rlim_t kMargin = 64;
  rlimit limit{};
  rlim_t fds = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur != RLIM_INFINITY) {
    fds = limit.rlim_cur;
  }
  const size_t derived =
      fds > kMargin + 2 ? static_cast<size_t>((fds - kMargin) / 2) : 1;
  return std::min(derived, static_cast<size_t>(config.max_sessions));
}

absl::StatusOr<PoolAccount> ResolvePoolAccount(const core::Config& config) {
  PoolAccount account;
  if (::geteuid() != 0) {
    // Developer run: there is nothing to drop to; workers stay as us.
    account.uid = ::geteuid();
    account.gid = ::getegid();
    account.name = "(self)";
    return account;
  }
  std::vector<char> buffer;
  absl::StatusOr<passwd> pw;
  if (config.pool_user.empty()) {
    pw = LookupUser("popgate", &buffer);
    if (absl::IsNotFound(pw.status())) pw = LookupUser("nobody", &buffer);
  } else {
    pw = LookupUser(config.pool_user, &buffer);
  }
  if (!pw.ok()) {
    return absl::Status(pw.status().code(),
                        absl::StrCat("--pool_user: ", pw.status().message()));
  }
  account.name = pw->pw_name;
  account.uid = pw->pw_uid;
  account.gid = pw->pw_gid;
  if (!config.pool_group.empty()) {
    std::vector<char> group_buffer(16384, '\0');
    group gr{};
    group* result = nullptr;
    const int err =
        ::getgrnam_r(config.pool_group.c_str(), &gr, group_buffer.data(),
                     group_buffer.size(), &result);
    if (err != 0) {
      return absl::ErrnoToStatus(err, "--pool_group: getgrnam");
    }
    if (result == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("--pool_group: no group \"", config.pool_group, "\""));
    }
    account.gid = gr.gr_gid;
  }
  // Workers parse client bytes; root's ids would turn a parser bug into a
  // root compromise. Refuse rather than run.
  if (account.uid == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--pool_user: \"", account.name,
                     "\" is root; workers never run as "
                     "uid 0"));
  }
  if (account.gid == 0) {
    return absl::FailedPreconditionError(
        "--pool_group: workers never run as gid 0");
  }
  account.drop = true;
  return account;
}

absl::StatusOr<std::unique_ptr<Wiring>> BuildWiring(
    const core::Config& config) {
  auto wiring = std::make_unique<Wiring>();
  wiring->log_sink = MakeLogSink(config);
  core::SetLogSink(wiring->log_sink.get());

  absl::StatusOr<std::unique_ptr<core::auth::Authenticator>> auth =
      core::auth::MakeAuthenticator(config.auth,
                                    core::auth::AuthOptionsFromConfig(config));
  if (!auth.ok()) return auth.status();
  wiring->authenticator = std::move(*auth);

  SessionEnvironment& env = wiring->session_env;
  env.session_options = SessionOptionsFromConfig(config);
  env.idle_timeout = config.idle_timeout;
  env.write_timeout = config.write_timeout;
  env.sendfile = config.sendfile;
  env.authenticator = wiring->authenticator.get();
  env.state_dir = config.state_dir;
  env.preauth_user = config.preauth_user;
  const core::MailLocation location = config.mail;
  env.mail_path = [location](const core::auth::AuthenticatedUser& user) {
    return core::ExpandMailPath(location, user.name, user.home);
  };
  const MaildropLimits limits{config.max_mailbox_bytes, config.max_messages,
                              config.mail.format == core::MailFormat::kMaildir};
  env.open_maildrop = [limits](const std::string& path,
                               const std::string& state_dir) {
    return OpenMaildrop(limits, path, state_dir, std::nullopt);
  };
  wiring->admission = AdmissionOptionsFromConfig(config);
  if (auto* file = dynamic_cast<core::auth::PasswdFileAuthenticator*>(
          wiring->authenticator.get())) {
    const std::string path = config.auth.path;
    wiring->reload = [file, path] {
      absl::Status st = file->Reload();
      if (st.ok()) {
        core::Logf(core::Severity::kInfo, "Reloaded %s (%d users)",
                   path, file->size());
      } else {
        core::Logf(core::Severity::kCrit, "Reload failed, keeping old %s: %s", path,
                   st.message());
      }
    };
    // The auth process asks about once a second. Compared with the last
    // look (not with the loaded table), so a broken edit is reported once
    // per change, not every second until fixed.
    auto last_seen =
        std::make_shared<core::auth::FileIdentity>(file->identity());
    wiring->source_changed = [path, last_seen] {
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) return false;  // keep the old table
      core::auth::FileIdentity now;
      now.device = st.st_dev;
      now.inode = st.st_ino;
      now.size = st.st_size;
      now.mtime = absl::TimeFromTimespec(st.st_mtim);
      if (now == *last_seen) return false;
      *last_seen = now;
      return true;
    };
  }
  if (config.daemon && config.mode == core::DaemonMode::kPool) {
    absl::StatusOr<PoolAccount> account = ResolvePoolAccount(config);
    if (!account.ok()) return account.status();
    wiring->pool_account = *account;
    wiring->workers = config.workers == 0 ? Cpus() : config.workers;
    wiring->auth_process = AuthProcessOptionsFromConfig(config);

    PoolWorkerEnvironment& pool = wiring->pool_env;
    pool.session_options = env.session_options;
    pool.idle_timeout = config.idle_timeout;
    pool.write_timeout = config.write_timeout;
    pool.sendfile = config.sendfile;
    pool.preauth_timeout = config.preauth_timeout;
    pool.drain_timeout = config.drain_timeout;
    pool.max_sessions = MaxSessionsPerWorker(config);
    pool.state_dir = config.state_dir;  // the worker narrows it to its uid
    pool.mail_path = env.mail_path;
    // As fork mode's opener, plus the owner check: in a pool one account
    // reads every mailbox, so the file itself must say whose it is.
    pool.open_maildrop = [limits](const std::string& path,
                                  const std::string& state_dir, uid_t owner) {
      return OpenMaildrop(limits, path, state_dir, owner);
    };
  }
  return wiring;
}

}  // namespace popgate::net
