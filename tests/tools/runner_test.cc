// Worker framing for --processes, and a whole forked run against a port
// where nothing listens (refusals are counted and merged across workers).
#include "tools/flood/runner.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

TEST(WorkerFrameTest, RoundTripsAndWaitsForMore) {
  const std::string a = EncodeFrame({'P', 7, "hello"});
  const std::string b = EncodeFrame({'F', 0, ""});
  const std::string stream = a + b;
  // Fed in two pieces cut at every offset, both frames come out intact.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    std::string buffer = stream.substr(0, cut);
    std::vector<WorkerFrame> frames;
    auto drain = [&] {
      WorkerFrame f;
      while (true) {
        absl::StatusOr<bool> r = DecodeFrame(&buffer, &f);
        ASSERT_TRUE(r.ok()) << r.status();
        if (!*r) break;
        frames.push_back(f);
      }
    };
    drain();
    buffer += stream.substr(cut);
    drain();
    ASSERT_EQ(frames.size(), 2u) << cut;
    EXPECT_EQ(frames[0].kind, 'P');
    EXPECT_EQ(frames[0].open, 7u);
    EXPECT_EQ(frames[0].payload, "hello");
    EXPECT_EQ(frames[1].kind, 'F');
    EXPECT_EQ(frames[1].payload, "");
    EXPECT_TRUE(buffer.empty());
  }
}

TEST(WorkerFrameTest, RejectsBadHeaders) {
  WorkerFrame f;
  const std::vector<std::string> bads = {"X 1 2\nab", "P 1\n", "P a 1\nx",
                                         "P 1 99999999999\n",
                                         std::string(100, 'P')};
  for (std::string bad : bads) {
    EXPECT_FALSE(DecodeFrame(&bad, &f).ok()) << bad.substr(0, 20);
  }
}

TEST(RunAllTest, ForkedWorkersMergeTheirCounts) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);  // Nothing listens there now.

  Options o;
  o.scenarios = {{ScenarioKind::kConnectClose, 3}};
  o.threads = 1;
  o.processes = 2;
  o.duration = absl::Milliseconds(200);
  std::atomic<bool> stop{false};
  absl::StatusOr<RunReport> r =
      RunAll(o, *ParseIp("127.0.0.1", ntohs(addr.sin_port)), 1024, false, stop);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->processes, 2);
  ASSERT_EQ(r->scenarios.size(), 1u);
  EXPECT_EQ(r->scenarios[0].clients, 3u);  // 2 + 1 across the workers
  EXPECT_GT(r->scenarios[0].outcome(Outcome::kRefusedAtConnect), 0u);
  EXPECT_EQ(r->scenarios[0].connects, r->scenarios[0].finished());
}

}  // namespace
}  // namespace popgate::flood
