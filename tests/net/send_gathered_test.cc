// GatheredSender: views from memory and from a file, in order, over a
// non-blocking socket that fills up; a file that shrinks; an fd that
// refuses sendfile.
#include "net/send_gathered.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/core/session_harness.h"

namespace popgate::net {
namespace {

using Extent = core::OutputQueue::FileExtent;
using Stop = GatheredSender::Result::Stop;

// An unlinked temp file holding `content`, opened read-only.
int TempFileWith(const std::string& content) {
  char path[] = "/tmp/popgate-send-gathered-XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::unlink(path);
  EXPECT_EQ(::write(fd, content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  return fd;
}

// Reads `fd` to EOF.
std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  return out;
}

// Sends `views` with `sender` until done, dropping what each call took, as
// the drivers do (Consume, then Gather again). Returns the last stop.
Stop SendAll(GatheredSender& sender, int fd,
             std::vector<absl::string_view> views,
             std::vector<Extent> extents) {
  for (;;) {
    const GatheredSender::Result r = sender.Send(fd, views, extents);
    size_t taken = r.sent;
    while (taken > 0) {
      if (taken >= views.front().size()) {
        taken -= views.front().size();
        views.erase(views.begin());
        if (!extents.empty()) extents.erase(extents.begin());
      } else {
        views.front().remove_prefix(taken);
        if (!extents.empty()) extents.front().offset += taken;
        taken = 0;
      }
    }
    if (r.stop != Stop::kBlocked) return r.stop;
    ::usleep(1000);  // the reader drains meanwhile
  }
}

class GatheredSenderModeTest : public ::testing::TestWithParam<bool> {};

TEST_P(GatheredSenderModeTest, MixedViewsArriveInOrderThroughAFullSocket) {
  std::string file_content;
  for (int i = 0; file_content.size() < (3 << 20); ++i) {
    file_content += "line " + std::to_string(i) + " of a wire-clean body\r\n";
  }
  const int file = TempFileWith(file_content);
  const absl::string_view body(file_content);
  // "+OK", a file run, a short file run (sent from memory), a memory
  // view, the rest of the file.
  const std::vector<absl::string_view> views = {
      "+OK 3 MB\r\n", body.substr(0, 1 << 20), body.substr(1 << 20, 100),
      ".", body.substr((1 << 20) + 100)};
  const std::vector<Extent> extents = {
      {}, {file, 0}, {file, 1 << 20}, {}, {file, (1 << 20) + 100}};

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  int small = 8192;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
  std::string received;
  std::thread reader([&] { received = ReadAll(sv[1]); });

  GatheredSender sender(GatheredSender::Syscall::kSendmsg,
                        /*use_sendfile=*/GetParam());
  EXPECT_EQ(SendAll(sender, sv[0], views, extents), Stop::kAll);
  ::close(sv[0]);
  reader.join();
  ::close(sv[1]);
  ::close(file);

  std::string want;
  for (absl::string_view v : views) want.append(v.data(), v.size());
  ASSERT_EQ(received.size(), want.size());
  EXPECT_TRUE(received == want);
}

INSTANTIATE_TEST_SUITE_P(SendfileOnAndOff, GatheredSenderModeTest,
                         ::testing::Bool());

TEST(GatheredSenderTest, FileThatShrankStopsTheSend) {
  const std::string content(64 * 1024, 'x');
  const int file = TempFileWith(content);
  ASSERT_EQ(::ftruncate(file, 20 * 1024), 0);  // someone truncates it
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
  int big = 1 << 20;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);

  GatheredSender sender(GatheredSender::Syscall::kSendmsg, true);
  const std::vector<absl::string_view> views = {content};
  const std::vector<Extent> extents = {{file, 0}};
  EXPECT_EQ(SendAll(sender, sv[0], views, extents), Stop::kFileShrunk);
  ::close(sv[0]);
  // What went out is the file's real prefix, never past its end.
  EXPECT_EQ(ReadAll(sv[1]), content.substr(0, 20 * 1024));
  ::close(sv[1]);
  ::close(file);
}

TEST(GatheredSenderTest, FdThatRefusesSendfileGetsWrites) {
  const std::string content(40 * 1024, 'y');
  const int file = TempFileWith(content);
  // sendfile into an O_APPEND file fails with EINVAL.
  char path[] = "/tmp/popgate-send-gathered-out-XXXXXX";
  const int out = ::mkstemp(path);
  ASSERT_GE(out, 0);
  ::unlink(path);
  ::fcntl(out, F_SETFL, O_APPEND);

  GatheredSender sender(GatheredSender::Syscall::kWritev, true);
  const std::vector<absl::string_view> views = {"+OK\r\n", content, ".\r\n"};
  const std::vector<Extent> extents = {{}, {file, 0}, {}};
  EXPECT_EQ(SendAll(sender, out, views, extents), Stop::kAll);
  ASSERT_EQ(::lseek(out, 0, SEEK_SET), 0);
  EXPECT_TRUE(ReadAll(out) == "+OK\r\n" + content + ".\r\n");
  ::close(out);
  ::close(file);
}

TEST(GatheredSenderTest, PipeGetsWritevForSendmsg) {
  // inetd may hand over a pipe pair: sendmsg fails there (ENOTSOCK).
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  GatheredSender sender(GatheredSender::Syscall::kSendmsg, true);
  const std::vector<absl::string_view> views = {"+OK\r\n", "body\r\n"};
  EXPECT_EQ(sender.Send(p[1], views, {}).stop, Stop::kAll);
  ::close(p[1]);
  EXPECT_EQ(ReadAll(p[0]), "+OK\r\nbody\r\n");
  ::close(p[0]);
}

TEST(GatheredSenderTest, BrokenConnectionFails) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  GatheredSender sender(GatheredSender::Syscall::kSendmsg, true);
  const std::vector<absl::string_view> views = {"+OK\r\n"};
  EXPECT_EQ(sender.Send(sv[0], views, {}).stop, Stop::kFailed);
  ::close(sv[0]);
}

// Pipelined RETRs: the final "." released by a checkpoint goes out with the
// next reply and body, so each RETR costs one send, not two; the octets
// are exactly what a plain Gather/Consume/Resume driver sends.
TEST(GatherSessionOutputTest, FinalDotSharesASendWithThePipelinedNextReply) {
  const std::string script = "USER u\r\nPASS p\r\nSTAT\r\n";
  const std::string pipelined = "RETR 1\r\nRETR 2\r\nRETR 3\r\nQUIT\r\n";
  core::testing::Harness plain;
  plain.Send(script);
  const std::string want = plain.Send(pipelined);

  core::testing::Harness h;
  h.Send(script);
  core::Session& session = h.session();
  session.Receive(pipelined);
  std::string sent;
  int sends = 0;
  while (!session.output().empty()) {
    std::vector<absl::string_view> views;
    std::vector<Extent> extents;
    ASSERT_TRUE(
        GatherSessionOutput(session, 1 << 20, &views, &extents).ok());
    ASSERT_EQ(views.size(), extents.size());
    size_t n = 0;
    for (absl::string_view v : views) {
      sent.append(v.data(), v.size());
      n += v.size();
    }
    if (n > 0) ++sends;
    session.output().Consume(n);
    session.Resume();
  }
  EXPECT_EQ(sent, want);
  // "+OK" and body 1; ".", "+OK" and body 2; the same for 3; "." and QUIT's.
  EXPECT_EQ(sends, 4);
}

}  // namespace
}  // namespace popgate::net
