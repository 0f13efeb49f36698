#include "net/wiring.h"

#include <utility>

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
  env.authenticator = wiring->authenticator.get();
  env.state_dir = config.state_dir;
  env.preauth_user = config.preauth_user;
  const core::MailLocation location = config.mail;
  env.mail_path = [location](const core::auth::AuthenticatedUser& user) {
    return core::ExpandMailPath(location, user.name, user.home);
  };
  const int64_t max_bytes = config.max_mailbox_bytes;
  const int64_t max_messages = config.max_messages;
  const bool maildir = config.mail.format == core::MailFormat::kMaildir;
  env.open_maildrop = [max_bytes, max_messages, maildir](
                          const std::string& path, const std::string& state_dir)
      -> absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> {
    if (maildir) {
      // No redo records: a Maildir update is a set of unlinks. The lock
      // file lives in the maildir itself (see mailbox/maildir_lock.h).
      mailbox::MaildirOptions options;
      options.max_bytes = static_cast<uint64_t>(max_bytes);
      options.max_messages = static_cast<size_t>(max_messages);
      return mailbox::OpenMaildir(path, options);
    }
    mailbox::MboxOptions options;
    options.redo_dir = state_dir;
    options.max_bytes = static_cast<uint64_t>(max_bytes);
    options.max_messages = static_cast<size_t>(max_messages);
    return mailbox::OpenMbox(path, options);
  };
  wiring->flood = FloodOptionsFromConfig(config);
  if (auto* file = dynamic_cast<core::auth::PasswdFileAuthenticator*>(
          wiring->authenticator.get())) {
    const std::string path = config.auth.path;
    wiring->reload = [file, path] {
      absl::Status st = file->Reload();
      if (st.ok()) {
        core::Logf(core::Severity::kInfo, "SIGHUP: reloaded %s (%d users)",
                   path, file->size());
      } else {
        core::Logf(core::Severity::kCrit, "SIGHUP: keeping old %s: %s", path,
                   st.message());
      }
    };
  }
  return wiring;
}

}  // namespace popgate::net
