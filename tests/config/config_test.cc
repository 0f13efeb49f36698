#include "core/config.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every test starts from the compiled-in defaults and leaves them behind.
class ConfigTest : public ::testing::Test {
 private:
  absl::FlagSaver saver_;
};

TEST_F(ConfigTest, DefaultsMatchPopa3d) {
  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk()) << config.status();
  EXPECT_THAT(config->listen,
              ElementsAre(ListenAddress{"0.0.0.0", 110, AF_INET}));
  EXPECT_EQ(config->mail, (MailLocation{MailFormat::kMbox, "/var/mail/%u"}));
  EXPECT_EQ(config->auth, (AuthSpec{AuthKind::kPam, ""}));
  EXPECT_EQ(config->pam_service, "popgate");
  EXPECT_EQ(config->syslog_ident, "popgate");
  EXPECT_FALSE(config->daemon);
  EXPECT_FALSE(config->print_version);
  EXPECT_FALSE(config->foreground);
  EXPECT_EQ(config->log, LogTarget::kSyslog);
  EXPECT_EQ(config->max_sessions, 500);
  EXPECT_EQ(config->max_sessions_per_source, 50);
  EXPECT_EQ(config->min_session_slot, absl::Seconds(10));
  EXPECT_EQ(config->idle_timeout, absl::Seconds(600));
  EXPECT_EQ(config->write_timeout, absl::Seconds(120));
  EXPECT_EQ(config->state_dir, "/var/lib/popgate");
  EXPECT_EQ(config->max_line_bytes, 255);
  EXPECT_EQ(config->max_bad_commands, 20);
  EXPECT_EQ(config->max_auth_attempts, 1);
  EXPECT_TRUE(config->capa);
  EXPECT_EQ(config->max_mailbox_bytes, 2147483647);
  EXPECT_EQ(config->max_messages, 2097152);
}

TEST_F(ConfigTest, PoolAndAdmissionDefaults) {
  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk()) << config.status();
  // fork mode with rate 0 and /32, /64 is popa3d's policy unchanged.
  EXPECT_EQ(config->mode, DaemonMode::kFork);
  EXPECT_EQ(config->workers, 0);
  EXPECT_EQ(config->pool_user, "");
  EXPECT_EQ(config->pool_group, "");
  EXPECT_EQ(config->auth_threads, 0);
  EXPECT_EQ(config->auth_queue, 256);
  EXPECT_EQ(config->auth_cache_ttl, absl::Minutes(5));
  EXPECT_EQ(config->auth_cache_size, 65536);
  EXPECT_EQ(config->rate_per_source, 0);
  EXPECT_EQ(config->burst_per_source, 20);
  EXPECT_EQ(config->source_prefix_v4, 32);
  EXPECT_EQ(config->source_prefix_v6, 64);
  EXPECT_EQ(config->max_tracked_sources, 65536);
  EXPECT_EQ(config->preauth_timeout, absl::Seconds(60));
  EXPECT_EQ(config->auth_fail_delay, absl::Milliseconds(500));
  EXPECT_EQ(config->auth_fail_max_delay, absl::Seconds(8));
  EXPECT_EQ(config->auth_lockout_failures, 30);
  EXPECT_EQ(config->auth_lockout, absl::Minutes(5));
  EXPECT_FALSE(config->refuse_with_error);
  EXPECT_EQ(config->drain_timeout, absl::Seconds(600));
  EXPECT_EQ(config->max_sessions_per_worker, 0);
}

TEST_F(ConfigTest, PoolAndAdmissionFlagsFromCommandLine) {
  const char* args[] = {"popgate",
                        "-D",
                        "--mode=pool",
                        "--workers=3",
                        "--pool_user=vmail",
                        "--pool_group=mail",
                        "--auth_threads=2",
                        "--auth_queue=10",
                        "--auth_cache_ttl=0",
                        "--auth_cache_size=0",
                        "--rate_per_source=0.5",
                        "--burst_per_source=4",
                        "--source_prefix_v4=24",
                        "--source_prefix_v6=48",
                        "--max_tracked_sources=100",
                        "--preauth_timeout=20s",
                        "--auth_fail_delay=0",
                        "--auth_fail_max_delay=2s",
                        "--auth_lockout_failures=0",
                        "--auth_lockout=1h",
                        "--refuse_with_error",
                        "--drain_timeout=30s",
                        "--max_sessions_per_worker=5000"};
  std::vector<char*> argv;
  for (const char* a : args) argv.push_back(const_cast<char*>(a));
  absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk()) << config.status();
  EXPECT_EQ(config->mode, DaemonMode::kPool);
  EXPECT_EQ(config->workers, 3);
  EXPECT_EQ(config->pool_user, "vmail");
  EXPECT_EQ(config->pool_group, "mail");
  EXPECT_EQ(config->auth_threads, 2);
  EXPECT_EQ(config->auth_queue, 10);
  EXPECT_EQ(config->auth_cache_ttl, absl::ZeroDuration());
  EXPECT_EQ(config->auth_cache_size, 0);
  EXPECT_EQ(config->rate_per_source, 0.5);
  EXPECT_EQ(config->burst_per_source, 4);
  EXPECT_EQ(config->source_prefix_v4, 24);
  EXPECT_EQ(config->source_prefix_v6, 48);
  EXPECT_EQ(config->max_tracked_sources, 100);
  EXPECT_EQ(config->preauth_timeout, absl::Seconds(20));
  EXPECT_EQ(config->auth_fail_delay, absl::ZeroDuration());
  EXPECT_EQ(config->auth_fail_max_delay, absl::Seconds(2));
  EXPECT_EQ(config->auth_lockout_failures, 0);
  EXPECT_EQ(config->auth_lockout, absl::Hours(1));
  EXPECT_TRUE(config->refuse_with_error);
  EXPECT_EQ(config->drain_timeout, absl::Seconds(30));
  EXPECT_EQ(config->max_sessions_per_worker, 5000);
}

TEST_F(ConfigTest, StructDefaultsEqualFlagDefaults) {
  // Tests build Config by hand; its defaults must not drift from the flags'.
  absl::StatusOr<Config> from_flags = ConfigFromFlags();
  ASSERT_THAT(from_flags, IsOk());
  Config by_hand;
  EXPECT_EQ(by_hand.listen, from_flags->listen);
  EXPECT_EQ(by_hand.mail, from_flags->mail);
  EXPECT_EQ(by_hand.auth, from_flags->auth);
  EXPECT_EQ(by_hand.max_sessions, from_flags->max_sessions);
  EXPECT_EQ(by_hand.min_session_slot, from_flags->min_session_slot);
  EXPECT_EQ(by_hand.idle_timeout, from_flags->idle_timeout);
  EXPECT_EQ(by_hand.max_line_bytes, from_flags->max_line_bytes);
  EXPECT_EQ(by_hand.max_messages, from_flags->max_messages);
  EXPECT_EQ(by_hand.mode, from_flags->mode);
  EXPECT_EQ(by_hand.workers, from_flags->workers);
  EXPECT_EQ(by_hand.auth_threads, from_flags->auth_threads);
  EXPECT_EQ(by_hand.auth_queue, from_flags->auth_queue);
  EXPECT_EQ(by_hand.auth_cache_ttl, from_flags->auth_cache_ttl);
  EXPECT_EQ(by_hand.auth_cache_size, from_flags->auth_cache_size);
  EXPECT_EQ(by_hand.rate_per_source, from_flags->rate_per_source);
  EXPECT_EQ(by_hand.burst_per_source, from_flags->burst_per_source);
  EXPECT_EQ(by_hand.source_prefix_v4, from_flags->source_prefix_v4);
  EXPECT_EQ(by_hand.source_prefix_v6, from_flags->source_prefix_v6);
  EXPECT_EQ(by_hand.max_tracked_sources, from_flags->max_tracked_sources);
  EXPECT_EQ(by_hand.preauth_timeout, from_flags->preauth_timeout);
  EXPECT_EQ(by_hand.auth_fail_delay, from_flags->auth_fail_delay);
  EXPECT_EQ(by_hand.auth_fail_max_delay, from_flags->auth_fail_max_delay);
  EXPECT_EQ(by_hand.auth_lockout_failures, from_flags->auth_lockout_failures);
  EXPECT_EQ(by_hand.auth_lockout, from_flags->auth_lockout);
  EXPECT_EQ(by_hand.refuse_with_error, from_flags->refuse_with_error);
  EXPECT_EQ(by_hand.drain_timeout, from_flags->drain_timeout);
  EXPECT_EQ(by_hand.max_sessions_per_worker,
            from_flags->max_sessions_per_worker);
}

struct ListenCase {
  const char* name;
  const char* text;
  friend std::ostream& operator<<(std::ostream& os, const ListenCase& c) {
    return os << c.name << " \"" << c.text << "\"";
  }
};

class ListenRejectTest : public ::testing::TestWithParam<ListenCase> {};

TEST_P(ListenRejectTest, RejectedWithFlagName) {
  absl::StatusOr<std::vector<ListenAddress>> parsed =
      ParseListenAddresses(GetParam().text);
  ASSERT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument))
      << GetParam().text;
  EXPECT_THAT(parsed.status().message(), HasSubstr("--listen"));
}

INSTANTIATE_TEST_SUITE_P(
    Junk, ListenRejectTest,
    ::testing::Values(
        ListenCase{"Empty", ""}, ListenCase{"NoPort", "127.0.0.1"},
        ListenCase{"EmptyPort", "127.0.0.1:"},
        ListenCase{"PortTooBig", "127.0.0.1:65536"},
        ListenCase{"PortHuge", "127.0.0.1:99999999999"},
        ListenCase{"NegativePort", "127.0.0.1:-1"},
        ListenCase{"PlusPort", "127.0.0.1:+1"},
        ListenCase{"SpaceInPort", "127.0.0.1: 110"},
        ListenCase{"HexPort", "127.0.0.1:0x6e"},
        ListenCase{"V6WithoutBrackets", "::1:110"},
        ListenCase{"BracketNoColon", "[::1]110"},
        ListenCase{"BracketNoPort", "[::1]:"},
        ListenCase{"UnclosedBracket", "[::1:110"},
        ListenCase{"V4InBrackets", "[127.0.0.1]:110"},
        ListenCase{"ScopeId", "[fe80::1%lo]:110"},
        ListenCase{"HostName", "localhost:110"},
        ListenCase{"ShortV4", "1.2.3:110"},
        ListenCase{"OctetTooBig", "256.0.0.1:110"},
        ListenCase{"EmptyHost", ":110"},
        ListenCase{"TrailingComma", "127.0.0.1:110,"},
        ListenCase{"LeadingComma", ",127.0.0.1:110"},
        ListenCase{"LeadingSpace", " 127.0.0.1:110"},
        ListenCase{"SpaceAfterComma", "127.0.0.1:110, [::1]:110"},
        ListenCase{"Duplicate", "127.0.0.1:110,127.0.0.1:110"}),
    [](const ::testing::TestParamInfo<ListenCase>& info) {
      return std::string(info.param.name);
    });

TEST(ListenTest, ParsesV4AndV6) {
  absl::StatusOr<std::vector<ListenAddress>> parsed =
      ParseListenAddresses("127.0.0.1:110,[::1]:110,[::]:0,0.0.0.0:65535");
  ASSERT_THAT(parsed, IsOk()) << parsed.status();
  EXPECT_THAT(*parsed, ElementsAre(ListenAddress{"127.0.0.1", 110, AF_INET},
                                   ListenAddress{"::1", 110, AF_INET6},
                                   ListenAddress{"::", 0, AF_INET6},
                                   ListenAddress{"0.0.0.0", 65535, AF_INET}));
}

TEST(ListenTest, PortZeroMayRepeat) {
  // Each port-0 socket gets its own kernel-chosen port: not a duplicate.
  EXPECT_THAT(ParseListenAddresses("127.0.0.1:0,127.0.0.1:0"), IsOk());
}

TEST(ListenTest, EmbeddedNulRejected) {
  EXPECT_THAT(ParseListenAddresses(absl::string_view("127.0.0.1\0:110", 14)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MailLocationTest, Accepts) {
  EXPECT_EQ(*ParseMailLocation("mbox:/var/mail/%u"),
            (MailLocation{MailFormat::kMbox, "/var/mail/%u"}));
  EXPECT_EQ(*ParseMailLocation("mbox:~/Mailbox"),
            (MailLocation{MailFormat::kMbox, "~/Mailbox"}));
  EXPECT_EQ(*ParseMailLocation("maildir:~/Maildir"),
            (MailLocation{MailFormat::kMaildir, "~/Maildir"}));
  EXPECT_EQ(*ParseMailLocation("maildir:/srv/mail/%u/Maildir"),
            (MailLocation{MailFormat::kMaildir, "/srv/mail/%u/Maildir"}));
}

TEST(MailLocationTest, Rejects) {
  for (const char* text :
       {"", "/var/mail/%u", "mbox:", "mbox:var/mail/%u", "mbox:/var/mail/%d",
        "mbox:/var/mail/%", "mbox:/var/mail/%%u", "mbox:/var/mail/shared",
        "mbx:/var/mail/%u", "mbox:~user/Mailbox", "mbox:~", "MBOX:/var/mail/%u",
        "mbox:/var/mail/\n%u"}) {
    absl::StatusOr<MailLocation> parsed = ParseMailLocation(text);
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument)) << text;
    if (!parsed.ok()) {
      EXPECT_THAT(parsed.status().message(), HasSubstr("--mail")) << text;
    }
  }
}

TEST(AuthSpecTest, Parses) {
  EXPECT_EQ(*ParseAuthSpec("pam"), (AuthSpec{AuthKind::kPam, ""}));
  EXPECT_EQ(*ParseAuthSpec("shadow"), (AuthSpec{AuthKind::kShadow, ""}));
  EXPECT_EQ(*ParseAuthSpec("passwd-file:/etc/popgate/passwd"),
            (AuthSpec{AuthKind::kPasswdFile, "/etc/popgate/passwd"}));
  for (const char* text : {"", "PAM", "ldap", "passwd-file:", "passwd-file",
                           "passwd-file:relative/path", "shadow:/etc/shadow",
                           "passwd-file:/etc/pass\nwd"}) {
    absl::StatusOr<AuthSpec> parsed = ParseAuthSpec(text);
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument)) << text;
    if (!parsed.ok()) {
      EXPECT_THAT(parsed.status().message(), HasSubstr("--auth"));
    }
  }
}

TEST(ExpandMailPathTest, ExpandsUserAndHome) {
  const MailLocation spool{MailFormat::kMbox, "/var/mail/%u"};
  EXPECT_EQ(*ExpandMailPath(spool, "alice", ""), "/var/mail/alice");
  const MailLocation twice{MailFormat::kMbox, "/srv/%u/mail/%u"};
  EXPECT_EQ(*ExpandMailPath(twice, "bob", ""), "/srv/bob/mail/bob");
  const MailLocation home{MailFormat::kMbox, "~/Mailbox"};
  EXPECT_EQ(*ExpandMailPath(home, "alice", "/home/alice"),
            "/home/alice/Mailbox");
  EXPECT_EQ(*ExpandMailPath(home, "alice", "/home/alice/"),
            "/home/alice/Mailbox");
  EXPECT_EQ(*ExpandMailPath(home, "alice", "/"), "/Mailbox");
  const MailLocation both{MailFormat::kMbox, "~/mail/%u"};
  EXPECT_EQ(*ExpandMailPath(both, "a.b", "/h"), "/h/mail/a.b");
}

TEST(ExpandMailPathTest, TildeNeedsAbsoluteHome) {
  const MailLocation home{MailFormat::kMbox, "~/Mailbox"};
  EXPECT_THAT(ExpandMailPath(home, "alice", ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ExpandMailPath(home, "alice", "home/alice"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ExpandMailPathTest, RejectsUnsafeUserNames) {
  const MailLocation spool{MailFormat::kMbox, "/var/mail/%u"};
  const std::string too_long(65, 'a');
  for (absl::string_view user :
       {absl::string_view(""), absl::string_view("/"),
        absl::string_view("a/b"), absl::string_view("../root"),
        absl::string_view(".."), absl::string_view(".hidden"),
        absl::string_view("a\x01"), absl::string_view("a\r"),
        absl::string_view("a\n"), absl::string_view("a\x7f"),
        absl::string_view("caf\xc3\xa9"), absl::string_view("a\0b", 3),
        absl::string_view(too_long)}) {
    EXPECT_THAT(ExpandMailPath(spool, user, "/home/x"),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << absl::CHexEscape(user);
  }
  EXPECT_THAT(ExpandMailPath(spool, std::string(64, 'a'), ""), IsOk());
  EXPECT_THAT(ExpandMailPath(spool, "john.doe-1_x@example.com", ""), IsOk());
}

TEST_F(ConfigTest, MaildirIsAccepted) {
  absl::SetFlag(&FLAGS_mail, "maildir:/srv/mail/%d/%n");
  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->mail,
            (MailLocation{MailFormat::kMaildir, "/srv/mail/%d/%n"}));
}

TEST(MailLocationTest, AcceptsLocalPartAndDomain) {
  EXPECT_EQ(*ParseMailLocation("maildir:/srv/mail/%d/%n"),
            (MailLocation{MailFormat::kMaildir, "/srv/mail/%d/%n"}));
  EXPECT_EQ(*ParseMailLocation("mbox:/var/mail/%n"),
            (MailLocation{MailFormat::kMbox, "/var/mail/%n"}));
  EXPECT_EQ(*ParseMailLocation("maildir:~/Maildir/%d"),
            (MailLocation{MailFormat::kMaildir, "~/Maildir/%d"}));
}

TEST(MailLocationTest, DomainAloneOrUnknownEscapeRejected) {
  // %d alone: every user of a domain would share one mailbox.
  for (const char* text : {"maildir:/srv/mail/%d", "maildir:/srv/%d/%x",
                           "maildir:/srv/%D/%n", "maildir:/srv/%n%"}) {
    EXPECT_THAT(ParseMailLocation(text),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << text;
  }
}

TEST(ExpandMailPathTest, ExpandsLocalPartAndDomain) {
  const MailLocation virt{MailFormat::kMaildir, "/srv/mail/%d/%n"};
  EXPECT_EQ(*ExpandMailPath(virt, "alice@example.org", ""),
            "/srv/mail/example.org/alice");
  // No '@': %d is empty, %n the whole name.
  EXPECT_EQ(*ExpandMailPath(virt, "alice", ""), "/srv/mail//alice");
  // Split at the first '@' (Dovecot's rule).
  EXPECT_EQ(*ExpandMailPath(virt, "a@b@c", ""), "/srv/mail/b@c/a");
  const MailLocation all{MailFormat::kMaildir, "/m/%u/%n/%d"};
  EXPECT_EQ(*ExpandMailPath(all, "a@b.c", ""), "/m/a@b.c/a/b.c");
  // A value is never expanded again.
  const MailLocation user{MailFormat::kMbox, "/var/mail/%u"};
  EXPECT_EQ(*ExpandMailPath(user, "x%dy@z", ""), "/var/mail/x%dy@z");
  const MailLocation home{MailFormat::kMaildir, "~/Maildir/%d"};
  EXPECT_EQ(*ExpandMailPath(home, "bob@ex.org", "/home/bob"),
            "/home/bob/Maildir/ex.org");
}

TEST(ExpandMailPathTest, RejectsUnsafeLocalPartOrDomain) {
  const MailLocation virt{MailFormat::kMaildir, "/srv/mail/%d/%n"};
  // "@x": an empty local part names the domain directory; "alice@" would
  // share alice's mailbox.
  for (const char* user :
       {"@example.org", ".a@example.org", "a@.example.org", "a@..",
        "..@example.org", "a/b@c", "a@b/c", "alice@"}) {
    EXPECT_THAT(ExpandMailPath(virt, user, ""),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << user;
  }
  // The same names are fine where the parts are not used.
  const MailLocation spool{MailFormat::kMbox, "/var/mail/%u"};
  EXPECT_THAT(ExpandMailPath(spool, "a@.example.org", ""), IsOk());
  // Only the part the pattern uses is checked.
  const MailLocation local{MailFormat::kMaildir, "/srv/mail/%n"};
  EXPECT_THAT(ExpandMailPath(local, "a@..", ""), IsOk());
}

TEST_F(ConfigTest, TypedFieldsFromFlags) {
  absl::SetFlag(&FLAGS_listen, "127.0.0.1:1110,[::1]:0");
  absl::SetFlag(&FLAGS_mail, "mbox:~/Mailbox");
  absl::SetFlag(&FLAGS_auth, "passwd-file:/etc/popgate/passwd");
  absl::SetFlag(&FLAGS_pam_service, "popa3d");
  absl::SetFlag(&FLAGS_syslog_ident, "popa3d");
  absl::SetFlag(&FLAGS_D, true);
  absl::SetFlag(&FLAGS_foreground, true);
  absl::SetFlag(&FLAGS_log, "stderr");
  absl::SetFlag(&FLAGS_max_sessions, 1000);
  absl::SetFlag(&FLAGS_max_sessions_per_source, 1000);
  absl::SetFlag(&FLAGS_min_session_slot, absl::ZeroDuration());
  absl::SetFlag(&FLAGS_idle_timeout, absl::Minutes(2));
  absl::SetFlag(&FLAGS_capa, false);
  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk()) << config.status();
  EXPECT_THAT(config->listen,
              ElementsAre(ListenAddress{"127.0.0.1", 1110, AF_INET},
                          ListenAddress{"::1", 0, AF_INET6}));
  EXPECT_EQ(config->mail.pattern, "~/Mailbox");
  EXPECT_EQ(config->auth.kind, AuthKind::kPasswdFile);
  EXPECT_EQ(config->auth.path, "/etc/popgate/passwd");
  EXPECT_EQ(config->pam_service, "popa3d");
  EXPECT_EQ(config->syslog_ident, "popa3d");
  EXPECT_TRUE(config->daemon);
  EXPECT_TRUE(config->foreground);
  EXPECT_EQ(config->log, LogTarget::kStderr);
  EXPECT_EQ(config->max_sessions, 1000);
  EXPECT_EQ(config->min_session_slot, absl::ZeroDuration());
  EXPECT_EQ(config->idle_timeout, absl::Minutes(2));
  EXPECT_FALSE(config->capa);
}

// One bad value per case; the error must name the flag so the operator
// knows which line of the flagfile to fix.
struct BadFlagCase {
  const char* flag;
  void (*set)();
};

TEST_F(ConfigTest, OutOfRangeValuesNameTheFlag) {
  const BadFlagCase cases[] = {
      {"--listen", [] { absl::SetFlag(&FLAGS_listen, "localhost:110"); }},
      {"--auth", [] { absl::SetFlag(&FLAGS_auth, "ldap"); }},
      {"--pam_service", [] { absl::SetFlag(&FLAGS_pam_service, "../etc"); }},
      {"--pam_service", [] { absl::SetFlag(&FLAGS_pam_service, ""); }},
      {"--syslog_ident", [] { absl::SetFlag(&FLAGS_syslog_ident, "a b"); }},
      {"--log", [] { absl::SetFlag(&FLAGS_log, "file"); }},
      {"--max_sessions", [] { absl::SetFlag(&FLAGS_max_sessions, 0); }},
      {"--max_sessions", [] { absl::SetFlag(&FLAGS_max_sessions, -5); }},
      {"--max_sessions_per_source",
       [] { absl::SetFlag(&FLAGS_max_sessions_per_source, 501); }},
      {"--max_sessions_per_source",
       [] { absl::SetFlag(&FLAGS_max_sessions_per_source, 0); }},
      {"--min_session_slot",
       [] { absl::SetFlag(&FLAGS_min_session_slot, absl::Seconds(-1)); }},
      {"--idle_timeout",
       [] { absl::SetFlag(&FLAGS_idle_timeout, absl::ZeroDuration()); }},
      {"--idle_timeout",
       [] { absl::SetFlag(&FLAGS_idle_timeout, absl::InfiniteDuration()); }},
      {"--write_timeout",
       [] { absl::SetFlag(&FLAGS_write_timeout, absl::Seconds(-3)); }},
      {"--state_dir", [] { absl::SetFlag(&FLAGS_state_dir, "var/lib/x"); }},
      {"--max_line_bytes", [] { absl::SetFlag(&FLAGS_max_line_bytes, 10); }},
      {"--max_bad_commands", [] { absl::SetFlag(&FLAGS_max_bad_commands, 0); }},
      {"--max_auth_attempts",
       [] { absl::SetFlag(&FLAGS_max_auth_attempts, 0); }},
      {"--max_mailbox_bytes",
       [] { absl::SetFlag(&FLAGS_max_mailbox_bytes, int64_t{0}); }},
      {"--max_messages",
       [] { absl::SetFlag(&FLAGS_max_messages, int64_t{-1}); }},
      {"--mode", [] { absl::SetFlag(&FLAGS_mode, "threads"); }},
      {"--mode", [] { absl::SetFlag(&FLAGS_mode, ""); }},
      {"--workers", [] { absl::SetFlag(&FLAGS_workers, -1); }},
      {"--workers", [] { absl::SetFlag(&FLAGS_workers, 1025); }},
      {"--pool_user", [] { absl::SetFlag(&FLAGS_pool_user, "a/b"); }},
      {"--pool_group", [] { absl::SetFlag(&FLAGS_pool_group, ".mail"); }},
      {"--auth_threads", [] { absl::SetFlag(&FLAGS_auth_threads, -1); }},
      {"--auth_queue", [] { absl::SetFlag(&FLAGS_auth_queue, 0); }},
      {"--auth_cache_ttl",
       [] { absl::SetFlag(&FLAGS_auth_cache_ttl, absl::Seconds(-1)); }},
      {"--auth_cache_ttl",
       [] { absl::SetFlag(&FLAGS_auth_cache_ttl, absl::InfiniteDuration()); }},
      {"--auth_cache_size", [] { absl::SetFlag(&FLAGS_auth_cache_size, -1); }},
      {"--rate_per_source",
       [] { absl::SetFlag(&FLAGS_rate_per_source, -1.0); }},
      {"--rate_per_source",
       [] { absl::SetFlag(&FLAGS_rate_per_source, std::nan("")); }},
      {"--burst_per_source", [] { absl::SetFlag(&FLAGS_burst_per_source, 0); }},
      {"--source_prefix_v4",
       [] { absl::SetFlag(&FLAGS_source_prefix_v4, 33); }},
      {"--source_prefix_v6",
       [] { absl::SetFlag(&FLAGS_source_prefix_v6, 129); }},
      {"--source_prefix_v6",
       [] { absl::SetFlag(&FLAGS_source_prefix_v6, -1); }},
      {"--max_tracked_sources",
       [] { absl::SetFlag(&FLAGS_max_tracked_sources, 0); }},
      {"--preauth_timeout",
       [] { absl::SetFlag(&FLAGS_preauth_timeout, absl::ZeroDuration()); }},
      {"--auth_fail_delay",
       [] { absl::SetFlag(&FLAGS_auth_fail_delay, absl::Minutes(2)); }},
      {"--auth_fail_max_delay",
       [] {
         absl::SetFlag(&FLAGS_auth_fail_max_delay, absl::Milliseconds(100));
       }},
      {"--auth_lockout_failures",
       [] { absl::SetFlag(&FLAGS_auth_lockout_failures, -1); }},
      {"--auth_lockout",
       [] { absl::SetFlag(&FLAGS_auth_lockout, absl::ZeroDuration()); }},
      {"--drain_timeout",
       [] { absl::SetFlag(&FLAGS_drain_timeout, absl::ZeroDuration()); }},
      {"--drain_timeout",
       [] { absl::SetFlag(&FLAGS_drain_timeout, absl::Hours(25)); }},
      {"--max_sessions_per_worker",
       [] { absl::SetFlag(&FLAGS_max_sessions_per_worker, -1); }},
  };
  for (const BadFlagCase& c : cases) {
    absl::FlagSaver saver;
    c.set();
    absl::StatusOr<Config> config = ConfigFromFlags();
    ASSERT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument)) << c.flag;
    EXPECT_TRUE(absl::StartsWith(config.status().message(),
                                 absl::StrCat(c.flag, ":")))
        << c.flag << " got: " << config.status().message();
  }
}

TEST_F(ConfigTest, FlagfileAndSingleDashFlags) {
  char path[] = "/tmp/popgate_config_test_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "--listen=127.0.0.1:110,[::1]:110\n"
        << "--auth=passwd-file:/etc/popgate/passwd\n"
        << "--mail=mbox:~/Mailbox\n"
        << "--idle_timeout=5m\n"
        << "--min_session_slot=1.5s\n"
        << "--nocapa\n"
        << "--max_sessions_per_source=10\n";
  }
  const std::string flagfile = absl::StrCat("--flagfile=", path);
  std::vector<char*> argv = {const_cast<char*>("popgate"),
                             const_cast<char*>("-D"),
                             const_cast<char*>(flagfile.c_str())};
  std::vector<char*> rest =
      absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ::unlink(path);
  EXPECT_EQ(rest.size(), 1u);  // only argv[0] is left

  absl::StatusOr<Config> config = ConfigFromFlags();
  ASSERT_THAT(config, IsOk()) << config.status();
  EXPECT_TRUE(config->daemon);
  EXPECT_THAT(config->listen,
              ElementsAre(ListenAddress{"127.0.0.1", 110, AF_INET},
                          ListenAddress{"::1", 110, AF_INET6}));
  EXPECT_EQ(config->auth.path, "/etc/popgate/passwd");
  EXPECT_EQ(config->mail.pattern, "~/Mailbox");
  EXPECT_EQ(config->idle_timeout, absl::Minutes(5));
  EXPECT_EQ(config->min_session_slot, absl::Milliseconds(1500));
  EXPECT_FALSE(config->capa);
  EXPECT_EQ(config->max_sessions_per_source, 10);
}

TEST(VersionTest, NamesTheProgram) {
  EXPECT_TRUE(absl::StartsWith(VersionString(), "popgate version "));
}

}  // namespace
}  // namespace popgate::core
