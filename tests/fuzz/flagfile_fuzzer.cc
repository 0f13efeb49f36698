// Fuzz target for popgate's flags as a --flagfile sets them: the input is a
// flagfile's text, read line by line the way absl's parser reads one (blank
// lines and '#' comments skipped, "--name=value", "-name value", "--noname"
// for booleans), each value set through absl's own flag parsers, then
// core::ConfigFromFlags() validates the lot. absl::ParseCommandLine itself
// exits on the first unknown flag or bad value, so this target does the
// splitting and leaves the values to absl; unknown flags, and absl's own
// (--flagfile, --fromenv, ...), are skipped. Only the flags defined in
// core/config.cc are set; every input starts from their defaults.
//
// Checks: an accepted Config is within the documented ranges and its mail
// pattern expands; a refused one is InvalidArgument naming a flag
// ("--name: ..."); every accepted flag value prints back to a value absl
// parses again. Seeds: tests/fuzz/corpus/flagfile/.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::core::AuthKind;
using popgate::core::Config;

using ::popgate::fuzz::Check;

// The flags config.cc defines; nothing else is touched.
absl::CommandLineFlag* PopgateFlag(absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || flag->IsRetired()) return nullptr;
  if (!absl::EndsWith(flag->Filename(), "core/config.cc")) return nullptr;
  return flag;
}

// Applies the flagfile lines in order, as absl would; a line absl would
// reject (not starting with '-', unknown flag, bad value) is skipped here
// rather than ending the run.
void ApplyFlagfile(absl::string_view text) {
  std::vector<absl::string_view> args;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    args.push_back(line);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    std::string error;
    if (eq != absl::string_view::npos) {
      if (absl::CommandLineFlag* flag = PopgateFlag(name)) {
        flag->ParseFrom(arg.substr(eq + 1), &error);
      }
      continue;
    }
    if (absl::CommandLineFlag* flag = PopgateFlag(name)) {
      if (flag->IsOfType<bool>()) {
        flag->ParseFrom("true", &error);
      } else if (i + 1 < args.size()) {
        flag->ParseFrom(args[++i], &error);  // "--name value"
      }
      continue;
    }
    absl::string_view positive = name;
    if (absl::ConsumePrefix(&positive, "no")) {
      absl::CommandLineFlag* flag = PopgateFlag(positive);
      if (flag != nullptr && flag->IsOfType<bool>()) {
        flag->ParseFrom("false", &error);
      }
    }
  }
}

bool IsPlain(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

void CheckAccepted(const Config& c) {
  Check(!c.listen.empty(), "no listen address");
  for (const auto& a : c.listen) {
    Check(a.family == 2 || a.family == 10, "listen family");
    Check(!a.host.empty(), "listen host");
  }
  Check(!c.mail.pattern.empty() &&
            (c.mail.pattern[0] == '/' || absl::StartsWith(c.mail.pattern, "~/")),
        "mail pattern not absolute");
  auto path = popgate::core::ExpandMailPath(c.mail, "user", "/home/user");
  Check(path.ok() && !path->empty() && (*path)[0] == '/',
        "mail pattern does not expand");
  Check(c.auth.kind != AuthKind::kPasswdFile ||
            (!c.auth.path.empty() && c.auth.path[0] == '/'),
        "passwd-file path not absolute");
  Check(IsPlain(c.pam_service) && IsPlain(c.syslog_ident), "names");
  Check(c.pool_user.empty() || IsPlain(c.pool_user), "pool_user");
  Check(c.pool_group.empty() || IsPlain(c.pool_group), "pool_group");
  Check(!c.state_dir.empty() && c.state_dir[0] == '/', "state_dir");
  Check(c.max_sessions >= 1 && c.max_sessions_per_source >= 1 &&
            c.max_sessions_per_source <= c.max_sessions,
        "session limits");
  Check(c.min_session_slot >= absl::ZeroDuration(), "min_session_slot");
  Check(c.idle_timeout > absl::ZeroDuration() &&
            c.idle_timeout != absl::InfiniteDuration(),
        "idle_timeout");
  Check(c.write_timeout > absl::ZeroDuration() &&
            c.write_timeout != absl::InfiniteDuration(),
        "write_timeout");
  Check(c.preauth_timeout > absl::ZeroDuration() &&
            c.preauth_timeout != absl::InfiniteDuration(),
        "preauth_timeout");
  Check(c.max_line_bytes >= 48 && c.max_line_bytes <= 65536, "max_line_bytes");
  Check(c.max_bad_commands >= 1 && c.max_auth_attempts >= 1, "counts");
  Check(c.max_mailbox_bytes >= 1 && c.max_messages >= 1, "mailbox limits");
  Check(c.workers >= 0 && c.auth_threads >= 0 && c.auth_queue >= 1 &&
            c.auth_cache_size >= 0 && c.max_sessions_per_worker >= 0,
        "pool sizes");
  Check(c.auth_cache_ttl >= absl::ZeroDuration() &&
            c.auth_cache_ttl <= absl::Hours(24),
        "auth_cache_ttl");
  Check(c.drain_timeout > absl::ZeroDuration() &&
            c.drain_timeout <= absl::Hours(24),
        "drain_timeout");
  Check(std::isfinite(c.rate_per_source) && c.rate_per_source >= 0,
        "rate_per_source");
  Check(c.burst_per_source >= 1, "burst_per_source");
  Check(c.source_prefix_v4 >= 0 && c.source_prefix_v4 <= 32 &&
            c.source_prefix_v6 >= 0 && c.source_prefix_v6 <= 128,
        "source prefixes");
  Check(c.max_tracked_sources >= 1, "max_tracked_sources");
  Check(c.auth_fail_delay >= absl::ZeroDuration() &&
            c.auth_fail_delay <= c.auth_fail_max_delay &&
            c.auth_fail_max_delay <= absl::Minutes(10),
        "auth fail delays");
  Check(c.auth_lockout_failures >= 0 && c.auth_lockout > absl::ZeroDuration() &&
            c.auth_lockout <= absl::Hours(24),
        "auth lockout");
}

// What a flag holds prints back to a value its parser takes again (what
// --helpfull shows and a generated flagfile would contain).
void CheckValuesRoundTrip() {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (PopgateFlag(name) == nullptr) continue;
    const std::string value = flag->CurrentValue();
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "--%s=%s does not parse back: %s\n",
                   std::string(name).c_str(), value.c_str(), error.c_str());
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::FlagSaver saver;  // back to the defaults for the next input
  ApplyFlagfile(absl::string_view(reinterpret_cast<const char*>(data), size));
  absl::StatusOr<Config> config = popgate::core::ConfigFromFlags();
  if (config.ok()) {
    CheckAccepted(*config);
  } else {
    Check(config.status().code() == absl::StatusCode::kInvalidArgument,
          "refusal is not InvalidArgument");
    Check(absl::StartsWith(config.status().message(), "--"),
          "refusal does not name a flag");
  }
  CheckValuesRoundTrip();
  return 0;
}
