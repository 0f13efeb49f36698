#include "core/output_queue.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox/wire_stream.h"
#include "tests/fakes/fake_maildrop.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core {
namespace {

using ::popgate::testing::FakeWireStream;
using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

size_t Total(const std::vector<absl::string_view>& views) {
  size_t n = 0;
  for (absl::string_view v : views) n += v.size();
  return n;
}

std::string Join(const std::vector<absl::string_view>& views) {
  std::string s;
  for (absl::string_view v : views) s.append(v.data(), v.size());
  return s;
}

// Writes everything, `window` octets per Gather and `take` per Consume.
absl::Status DrainAll(OutputQueue& q, size_t window, size_t take,
                      std::string* sent) {
  while (!q.empty()) {
    std::vector<absl::string_view> views;
    absl::Status status = q.Gather(window, &views);
    if (!status.ok()) return status;
    const std::string bytes = Join(views);
    const size_t n = std::min(take, bytes.size());
    sent->append(bytes.substr(0, n));
    q.Consume(n);
  }
  return absl::OkStatus();
}

class OutputQueueTest : public ::testing::Test {
 protected:
  int live_streams_ = 0;
  std::string body_ = "line one\r\nline two\r\n..dot\r\n";
  std::unique_ptr<mailbox::WireStream> Stream(
      absl::Status fail = absl::OkStatus(), size_t fail_after = 0) {
    return std::make_unique<FakeWireStream>(body_, &live_streams_, fail,
                                            fail_after);
  }
};

TEST_F(OutputQueueTest, EmptyAtStart) {
  OutputQueue q;
  EXPECT_TRUE(q.empty());
  std::vector<absl::string_view> views;
  EXPECT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_TRUE(views.empty());
}

TEST_F(OutputQueueTest, BytesInOrderCoalesced) {
  OutputQueue q;
  q.Append("+OK\r\n");
  q.Append("-ERR\r\n");
  EXPECT_EQ(q.buffered_bytes(), 11u);
  std::vector<absl::string_view> views;
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_EQ(views.size(), 1u);
  EXPECT_EQ(Join(views), "+OK\r\n-ERR\r\n");
  q.Consume(3);
  EXPECT_EQ(q.buffered_bytes(), 8u);
  views.clear();
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_EQ(Join(views), "\r\n-ERR\r\n");
  q.Consume(8);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.buffered_bytes(), 0u);
}

TEST_F(OutputQueueTest, GatheredViewsSurviveAppend) {
  OutputQueue q;
  q.Append("+OK\r\n");
  std::vector<absl::string_view> views;
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  const char* data = views[0].data();
  // A reply appended while the send is in flight must not move those bytes.
  for (int i = 0; i < 1000; ++i) q.Append("+OK more bytes to force growth\r\n");
  EXPECT_EQ(views[0].data(), data);
  EXPECT_EQ(views[0], "+OK\r\n");
}

TEST_F(OutputQueueTest, GatherRespectsMaxBytes) {
  OutputQueue q;
  q.Append("0123456789");
  std::vector<absl::string_view> views;
  ASSERT_THAT(q.Gather(4, &views), IsOk());
  EXPECT_EQ(Join(views), "0123");
}

TEST_F(OutputQueueTest, StreamPulledLazilyInWindowChunks) {
  OutputQueue q(/*stream_window=*/4);
  q.Append("+OK\r\n");
  q.AppendStream(Stream());
  q.Append(".\r\n");
  EXPECT_TRUE(q.has_stream_or_checkpoint());
  std::vector<absl::string_view> views;
  ASSERT_THAT(q.Gather(9, &views), IsOk());
  EXPECT_EQ(Join(views), "+OK\r\nline");
  std::string sent;
  ASSERT_THAT(DrainAll(q, 9, 1000, &sent), IsOk());
  EXPECT_EQ(sent, "+OK\r\n" + body_ + ".\r\n");
  EXPECT_EQ(live_streams_, 0);
  EXPECT_FALSE(q.has_stream_or_checkpoint());
}

TEST_F(OutputQueueTest, PartialConsumesEveryWindowAndTake) {
  for (size_t window : {1, 2, 3, 7, 64}) {
    for (size_t take : {1, 2, 5, 100}) {
      OutputQueue q(/*stream_window=*/3);
      q.Append("+OK\r\n");
      q.AppendStream(Stream());
      q.AppendCheckpoint([] { return absl::OkStatus(); });
      q.Append(".\r\n");
      std::string sent;
      ASSERT_THAT(DrainAll(q, window, take, &sent), IsOk());
      EXPECT_EQ(sent, "+OK\r\n" + body_ + ".\r\n") << window << " " << take;
    }
  }
}

TEST_F(OutputQueueTest, CheckpointRunsOnlyAfterEverythingBeforeIsConsumed) {
  OutputQueue q;
  int runs = 0;
  q.Append("body\r\n");
  q.AppendCheckpoint([&] {
    ++runs;
    return absl::OkStatus();
  });
  q.Append(".\r\n");
  std::vector<absl::string_view> views;
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_EQ(Join(views), "body\r\n");  // stops at the checkpoint
  EXPECT_EQ(runs, 0);
  q.Consume(3);
  views.clear();
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_EQ(runs, 0);
  q.Consume(3);
  views.clear();
  ASSERT_THAT(q.Gather(100, &views), IsOk());
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(Join(views), ".\r\n");
}

TEST_F(OutputQueueTest, FailedCheckpointWithholdsTheRest) {
  OutputQueue q;
  q.Append("body\r\n");
  q.AppendCheckpoint([] { return absl::AbortedError("stale"); });
  q.Append(".\r\n");
  std::string sent;
  EXPECT_THAT(DrainAll(q, 100, 100, &sent),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(sent, "body\r\n");
  EXPECT_TRUE(q.empty());
}

TEST_F(OutputQueueTest, StreamErrorWithholdsTheRest) {
  OutputQueue q(/*stream_window=*/4);
  q.Append("+OK\r\n");
  q.AppendStream(Stream(absl::InternalError("io"), /*fail_after=*/6));
  q.Append(".\r\n");
  std::string sent;
  EXPECT_THAT(DrainAll(q, 100, 100, &sent),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(sent, "+OK\r\nline o");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(live_streams_, 0);
}

TEST_F(OutputQueueTest, RepeatedGatherWithoutConsumeIsStable) {
  OutputQueue q(/*stream_window=*/4);
  q.AppendStream(Stream());
  std::vector<absl::string_view> a, b;
  ASSERT_THAT(q.Gather(6, &a), IsOk());
  ASSERT_THAT(q.Gather(10, &b), IsOk());
  EXPECT_EQ(Join(a), "line o");
  EXPECT_EQ(Join(b).substr(0, 6), "line o");
  EXPECT_EQ(Total(b), 10u);
}

TEST_F(OutputQueueTest, ClearDestroysStreams) {
  OutputQueue q;
  q.AppendStream(Stream());
  EXPECT_EQ(live_streams_, 1);
  q.Clear();
  EXPECT_EQ(live_streams_, 0);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.has_stream_or_checkpoint());
}

// An LF-stored body arrives as two segments per line (the line, then CR LF);
// the queue copies such pulls into one owned segment, so the driver gets a
// few large views, and those stay valid across partial consumes.
TEST_F(OutputQueueTest, ShortStreamSegmentsAreCoalesced) {
  std::string stored, wire;
  for (int i = 0; i < 400; ++i) {
    std::string line = i % 50 == 7 ? "." : "";
    line += "line " + std::to_string(i);
    stored += line + "\n";
    if (i % 50 == 7) wire += ".";  // dot-stuffed
    wire += line + "\r\n";
  }
  {
    OutputQueue q;
    q.AppendStream(std::make_unique<mailbox::EncodingStream>(
        stored, /*wire_clean=*/false, absl::string_view()));
    std::vector<absl::string_view> views;
    ASSERT_THAT(q.Gather(1 << 20, &views), IsOk());
    EXPECT_LE(views.size(), 2u);
    EXPECT_EQ(Join(views), wire);
  }
  for (size_t window : {1u, 7u, 4096u, 65536u}) {
    for (size_t take : {1u, 3u, 1000u, 1u << 20}) {
      SCOPED_TRACE(window * 1000003 + take);
      OutputQueue q(/*stream_window=*/window);
      q.AppendStream(std::make_unique<mailbox::EncodingStream>(
          stored, /*wire_clean=*/false, absl::string_view()));
      std::string sent;
      ASSERT_THAT(DrainAll(q, std::max<size_t>(window * 2, 5), take, &sent),
                  IsOk());
      EXPECT_EQ(sent, wire);
    }
  }
}

// Views into a stream's file-backed data carry where they lie in the file
// (the driver may sendfile them); stuffed dots, CR LF and replies do not,
// and a partly consumed view's offset moves with it.
TEST_F(OutputQueueTest, FileBackedViewsCarryTheirFileOffset) {
  const std::string file = "From x\n" + std::string(3000, 'a') +
                           "\r\n.dot\r\n" + std::string(3000, 'b') + "\r\n";
  const size_t body_at = 7;  // after the From_ line
  const absl::string_view body = absl::string_view(file).substr(body_at);
  constexpr int kFd = 42;  // never used as an fd here
  OutputQueue q;
  q.Append("+OK\r\n");
  q.AppendStream(std::make_unique<mailbox::EncodingStream>(
      body, /*wire_clean=*/false, absl::string_view(),
      mailbox::WireStream::FileBacking{kFd, file.data(), file.size()}));

  std::vector<absl::string_view> views;
  std::vector<OutputQueue::FileExtent> extents;
  ASSERT_THAT(q.Gather(1 << 20, &views, &extents), IsOk());
  ASSERT_EQ(views.size(), extents.size());
  ASSERT_EQ(views.size(), 4u);  // "+OK", run, stuffed ".", run
  EXPECT_EQ(extents[0].fd, -1);
  EXPECT_EQ(extents[1].fd, kFd);
  EXPECT_EQ(extents[1].offset, body_at);
  EXPECT_EQ(views[2], ".");
  EXPECT_EQ(extents[2].fd, -1);
  EXPECT_EQ(extents[3].fd, kFd);
  EXPECT_EQ(extents[3].offset, body_at + 3002);
  for (size_t i = 0; i < views.size(); ++i) {
    if (extents[i].fd < 0) continue;
    EXPECT_EQ(views[i], absl::string_view(file).substr(extents[i].offset,
                                                       views[i].size()));
  }

  q.Consume(5 + 1000);  // "+OK\r\n" and part of the first run
  views.clear();
  extents.clear();
  ASSERT_THAT(q.Gather(1 << 20, &views, &extents), IsOk());
  ASSERT_EQ(views.size(), extents.size());
  EXPECT_EQ(extents[0].fd, kFd);
  EXPECT_EQ(extents[0].offset, body_at + 1000);
  EXPECT_EQ(views[0], absl::string_view(file).substr(body_at + 1000, 2002));
}

// Hands out short views into a mapped file, then truncates the file before
// returning: a foreign `> mailbox` between the stream's (guarded) scan and
// the queue's copy of the short segments.
class TruncatingStream : public mailbox::WireStream {
 public:
  TruncatingStream(int fd, const char* map, size_t size)
      : fd_(fd), map_(map), size_(size) {}
  absl::StatusOr<bool> Next(size_t max_bytes,
                            std::vector<absl::string_view>* out) override {
    for (size_t off = 0; off + 40 <= size_; off += 40) {
      out->push_back(absl::string_view(map_ + off, 38));
      out->push_back("\r\n");
    }
    if (::ftruncate(fd_, 0) != 0) return absl::InternalError("ftruncate");
    return false;
  }

 private:
  int fd_;
  const char* map_;
  size_t size_;
};

TEST_F(OutputQueueTest, TruncatedMappingWhileCoalescingIsAnErrorNotSigbus) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  const int fd = ::fileno(file);
  const size_t size = 4 * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  {
    OutputQueue q;
    q.AppendStream(std::make_unique<TruncatingStream>(
        fd, static_cast<const char*>(map), size));
    std::vector<absl::string_view> views;
    EXPECT_THAT(q.Gather(1 << 20, &views),
                StatusIs(absl::StatusCode::kAborted));
    EXPECT_TRUE(views.empty());
    EXPECT_TRUE(q.empty());
  }
  ::munmap(map, size);
  std::fclose(file);
}

}  // namespace
}  // namespace popgate::core
