// Flag parsing: defaults, scenarios, users, bounds and refusals.
#include "tools/flood/options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  return ParseOptions(args);
}

TEST(OptionsTest, DefaultsAreBounded) {
  auto o = Parse({"--scenario=connect-close:5"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target.host, "127.0.0.1");
  EXPECT_EQ(o->target.port, 110);
  EXPECT_EQ(o->duration, absl::Seconds(10));
  EXPECT_EQ(o->max_connections, 1000);
  EXPECT_GE(o->threads, 1);
  EXPECT_EQ(o->processes, 1);
}

TEST(OptionsTest, CombinedScenariosBothSyntaxes) {
  auto o = Parse({"--scenario=poll:8,hold-idle:100", "--scenario", "guess:2",
                  "--user=alice", "--pass=secret"});
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->scenarios.size(), 3u);
  EXPECT_EQ(o->scenarios[0].kind, ScenarioKind::kPoll);
  EXPECT_EQ(o->scenarios[0].clients, 8);
  EXPECT_EQ(o->scenarios[1].kind, ScenarioKind::kHoldIdle);
  EXPECT_EQ(o->scenarios[2].clients, 2);
  EXPECT_EQ(o->TotalClients(), 110);
}

TEST(OptionsTest, AllFlags) {
  auto o = Parse({"--target=[::1]:1110",
                  "--source=::1",
                  "--threads=3",
                  "--processes=2",
                  "--duration=2s",
                  "--max-connections=50",
                  "--timeout=1s",
                  "--connect-timeout=500ms",
                  "--think=10ms",
                  "--retr=3",
                  "--dele",
                  "--pipeline",
                  "--slowloris-interval=1s",
                  "--overlong-bytes=1000",
                  "--junk-bytes=100",
                  "--bomb-commands=7",
                  "--no-read-retrs=9",
                  "--json",
                  "--progress=off",
                  "--scenario=download:4",
                  "--user-pattern=u%d",
                  "--user-range=1-3",
                  "--pass=pw"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target.port, 1110);
  EXPECT_EQ(o->sources.size(), 1u);
  EXPECT_EQ(o->threads, 3);
  EXPECT_EQ(o->processes, 2);
  EXPECT_EQ(o->duration, absl::Seconds(2));
  EXPECT_EQ(o->connect_timeout, absl::Milliseconds(500));
  EXPECT_EQ(o->retr, 3);
  EXPECT_TRUE(o->dele);
  EXPECT_TRUE(o->pipeline);
  EXPECT_TRUE(o->json_stdout);
  EXPECT_EQ(o->progress, Options::Progress::kOff);
  ASSERT_EQ(o->users.size(), 3u);
  EXPECT_EQ(o->users[2].user, "u3");
  EXPECT_EQ(o->users[2].pass, "pw");
}

TEST(OptionsTest, JsonPath) {
  auto o = Parse({"--scenario=junk:1", "--json=/tmp/x.json"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->json_stdout);
  EXPECT_EQ(o->json_path, "/tmp/x.json");
}

TEST(OptionsTest, Refusals) {
  EXPECT_FALSE(Parse({}).ok());                     // no scenario
  EXPECT_FALSE(Parse({"--scenario=poll:1"}).ok());  // no users
  EXPECT_FALSE(Parse({"--scenario=nope:1"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:0"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:x"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--bogus=1"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--duration=soon"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--duration=0s"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--threads"}).ok());  // no value
  EXPECT_FALSE(Parse({"--scenario=junk:1", "stray"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--user=a"}).ok());  // no --pass
  EXPECT_FALSE(
      Parse({"--scenario=junk:1", "--user=a", "--pass=b", "--users=/x"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--user-pattern=u%d"}).ok());
  EXPECT_FALSE(Parse({"--scenario=junk:1", "--source=::1"}).ok());  // family
}

TEST(OptionsTest, MaxConnectionsBoundsTheSumOfClients) {
  auto o = Parse({"--scenario=hold-idle:600,slowloris:600"});
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("--max-connections"), std::string::npos);
  EXPECT_TRUE(Parse({"--scenario=hold-idle:600,slowloris:600",
                     "--max-connections=1200"})
                  .ok());
}

TEST(OptionsTest, HelpIsCancelledWithUsage) {
  auto o = Parse({"--help"});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kCancelled);
  EXPECT_NE(o.status().message().find("--scenario"), std::string::npos);
}

TEST(UsersTest, FileFormat) {
  auto u = ParseUsersFile("# comment\nalice:secret1\n\nbob:pa:ss\n");
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_EQ(u->size(), 2u);
  EXPECT_EQ((*u)[1].user, "bob");
  EXPECT_EQ((*u)[1].pass, "pa:ss");  // only the first ':' splits
  EXPECT_FALSE(ParseUsersFile("nopass\n").ok());
  EXPECT_FALSE(ParseUsersFile(":pw\n").ok());
}

TEST(UsersTest, Pattern) {
  auto u = ExpandUserPattern("user%d@example", "8-10", "pw");
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_EQ(u->size(), 3u);
  EXPECT_EQ((*u)[0].user, "user8@example");
  EXPECT_FALSE(ExpandUserPattern("user", "1-2", "").ok());
  EXPECT_FALSE(ExpandUserPattern("u%s", "1-2", "").ok());
  EXPECT_FALSE(ExpandUserPattern("u%d%d", "1-2", "").ok());
  EXPECT_FALSE(ExpandUserPattern("u%d", "2-1", "").ok());
  EXPECT_FALSE(ExpandUserPattern("u%d", "1", "").ok());
}

}  // namespace
}  // namespace popgate::flood
