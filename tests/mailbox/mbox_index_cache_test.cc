// The index cache is an accelerator, never a source of truth: whatever the
// cache file holds, IndexWithCache must return exactly what a fresh scan
// (IndexMbox) returns.
#include "mailbox/mbox_index_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mailbox/mbox_index.h"
#include "tests/mailbox/mbox_test_util.h"

namespace popgate::mailbox {
namespace {

using testing::TempDir;

constexpr size_t kMax = 1000;

std::string Message(int n, absl::string_view body = "") {
  std::string m = absl::StrCat("From sender", n,
                               "@example.org Thu Nov 26 10:00:00 2026\n"
                               "Subject: message ",
                               n, "\nMessage-ID: <", n, "@example.org>\n\n");
  if (body.empty()) {
    for (int i = 0; i < 5; ++i) absl::StrAppend(&m, "line ", i, " of ", n, "\n");
  } else {
    m.append(body.data(), body.size());
  }
  return m;
}

std::string Mailbox(int count) {
  std::string s;
  for (int i = 1; i <= count; ++i) {
    s += Message(i);
    s += "\n";  // the separating blank line
  }
  return s;
}

MboxFileKey Key(absl::string_view data, int64_t mtime = 1000) {
  MboxFileKey key;
  key.dev = 7;
  key.ino = 42;
  key.size = data.size();
  key.mtime_sec = mtime;
  key.mtime_nsec = 5;
  return key;
}

std::vector<MboxMessage> Fresh(absl::string_view data) {
  absl::StatusOr<std::vector<MboxMessage>> m = IndexMbox(data, kMax);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : std::vector<MboxMessage>();
}

std::string ReadAll(const std::string& path) {
  return testing::ReadFile(path);
}

class MboxIndexCacheTest : public ::testing::Test {
 protected:
  std::string CachePath() const { return IndexCachePath(dir_.path(), 7, 42); }

  // Indexes through the cache; checks the answer against a fresh scan.
  IndexCacheOutcome Check(absl::string_view data, const MboxFileKey& key) {
    IndexCacheOutcome outcome = IndexCacheOutcome::kDisabled;
    absl::StatusOr<std::vector<MboxMessage>> got =
        IndexWithCache(data, key, dir_.path(), kMax, &outcome);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) {
      EXPECT_TRUE(*got == Fresh(data));
    }
    return outcome;
  }

  TempDir dir_;
};

TEST_F(MboxIndexCacheTest, MissThenHit) {
  const std::string data = Mailbox(5);
  EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
  EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kHit);
  struct stat st;
  ASSERT_EQ(::stat(CachePath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(MboxIndexCacheTest, NoDirIsAFullScanAndWritesNothing) {
  const std::string data = Mailbox(3);
  IndexCacheOutcome outcome = IndexCacheOutcome::kHit;
  auto got = IndexWithCache(data, Key(data), "", kMax, &outcome);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(outcome, IndexCacheOutcome::kDisabled);
  EXPECT_TRUE(*got == Fresh(data));
}

TEST_F(MboxIndexCacheTest, AppendScansOnlyTheTail) {
  std::string data = Mailbox(5);
  Check(data, Key(data));
  const std::string cache = ReadAll(CachePath());
  // Small appends are re-scanned at each login; the cache stays as it was.
  for (int n = 6; n < 9; ++n) {
    data += Message(n) + "\n";
    EXPECT_EQ(Check(data, Key(data, 1000 + n)), IndexCacheOutcome::kAppended);
    EXPECT_EQ(ReadAll(CachePath()), cache);
  }
  EXPECT_EQ(Check(data, Key(data, 1008)), IndexCacheOutcome::kAppended);
  // Once the re-scanned tail outgrows 512 KiB, the cache is rewritten.
  data += Message(9, std::string(600 * 1024, 'x') + "\n") + "\n";
  EXPECT_EQ(Check(data, Key(data, 1009)), IndexCacheOutcome::kAppended);
  EXPECT_NE(ReadAll(CachePath()), cache);
  EXPECT_EQ(Check(data, Key(data, 1009)), IndexCacheOutcome::kHit);
}

// With the mailbox's fd, the fingerprint is read from the file (pread),
// not from the mapping: a file that disagrees with the cache is a miss.
TEST_F(MboxIndexCacheTest, SamplesAreReadFromTheMailboxFd) {
  std::string data;
  for (int n = 1; n <= 40; ++n) data += Message(n) + "\n";
  Check(data, Key(data));
  const std::string file = absl::StrCat(dir_.path(), "/mbox");
  auto index_with_file = [&](const std::string& on_disk) {
    testing::WriteFile(file, on_disk);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    IndexCacheOutcome outcome = IndexCacheOutcome::kDisabled;
    auto got = IndexWithCache(data, Key(data), dir_.path(), kMax, &outcome, fd);
    ::close(fd);
    EXPECT_TRUE(got.ok() && *got == Fresh(data));
    return outcome;
  };
  EXPECT_EQ(index_with_file(data), IndexCacheOutcome::kHit);
  // Message 9 (index 8, sampled at stride 8) has another sender on disk.
  std::string edited = data;
  const size_t at = edited.find("From sender9@");
  ASSERT_NE(at, std::string::npos);
  edited[at + 11] = 'X';
  EXPECT_EQ(index_with_file(edited), IndexCacheOutcome::kMiss);
  // A file shorter than the mapping: unreadable samples are a miss too.
  EXPECT_EQ(index_with_file(data.substr(0, data.size() / 2)),
            IndexCacheOutcome::kMiss);
}

// The last cached message's extent, data size and trim depend on what
// follows it; every variant must equal a fresh scan.
TEST_F(MboxIndexCacheTest, AppendMovesTheLastBoundary) {
  const std::string prefix = Mailbox(2);
  const std::vector<std::string> lasts = {
      Message(3) + "\n",               // separated as usual
      Message(3),                      // no separating blank line yet
      Message(3, "no final newline"),  // unterminated last line
      "From x Thu Nov 26 10:00:00 2026\nSubject: body-less\n",
      "From x Thu Nov 26 10:00:00 2026\nSubject: blank\n\n",
      "From x Thu Nov 26 10:00:00 2026\r\nSubject: crlf\r\n\r\nbody\r\n\n",
  };
  const std::vector<std::string> appends = {
      Message(4) + "\n",
      "\n" + Message(4),
      "From not-a-boundary\n",
      "more body\n",
      "\n",
      "tail without newline",
      ".dotted\n\nFrom y Thu Nov 26 10:00:00 2026\nSubject: y\n\nbody\n",
  };
  for (size_t l = 0; l < lasts.size(); ++l) {
    for (size_t a = 0; a < appends.size(); ++a) {
      SCOPED_TRACE(absl::StrCat("last ", l, " append ", a));
      ::unlink(CachePath().c_str());
      const std::string before = prefix + lasts[l];
      ASSERT_EQ(Check(before, Key(before)), IndexCacheOutcome::kMiss);
      const std::string after = before + appends[a];
      absl::StatusOr<std::vector<MboxMessage>> fresh = IndexMbox(after, kMax);
      IndexCacheOutcome outcome;
      absl::StatusOr<std::vector<MboxMessage>> got =
          IndexWithCache(after, Key(after, 2000), dir_.path(), kMax, &outcome);
      ASSERT_EQ(got.ok(), fresh.ok());
      if (fresh.ok()) {
        EXPECT_TRUE(*got == *fresh);
      } else {
        EXPECT_EQ(got.status(), fresh.status());
      }
    }
  }
}

TEST_F(MboxIndexCacheTest, CorruptByteByByte) {
  std::string data = Mailbox(4);
  Check(data, Key(data));
  const std::string good = ReadAll(CachePath());
  std::string appended = data + Message(5) + "\n";
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      SCOPED_TRACE(absl::StrCat("byte ", i, " ^ ", flip));
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      testing::WriteFile(CachePath(), bad);
      EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
      testing::WriteFile(CachePath(), bad);
      Check(appended, Key(appended, 3000));
    }
  }
}

TEST_F(MboxIndexCacheTest, TruncatedAtEveryLength) {
  const std::string data = Mailbox(3);
  Check(data, Key(data));
  const std::string good = ReadAll(CachePath());
  for (size_t n = 0; n < good.size(); ++n) {
    SCOPED_TRACE(n);
    testing::WriteFile(CachePath(), good.substr(0, n));
    EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
  }
  testing::WriteFile(CachePath(), good + "x");
  EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
}

// Another mailbox's index under our key (same dev, ino, size and mtime, a
// forged but well-formed file): the fingerprint tells them apart.
TEST_F(MboxIndexCacheTest, AnotherMailboxesCacheIsIgnored) {
  const std::string data = Mailbox(4);
  std::string other = data;
  // Same size, different headers (UIDL and boundaries differ).
  other[other.find("message 2")] = 'M';
  other[other.find("From sender3")] = 'X';
  ASSERT_EQ(other.size(), data.size());
  const auto other_index = IndexMbox(other, kMax);
  ASSERT_TRUE(other_index.ok());
  ASSERT_TRUE(WriteIndexCache(CachePath(), Key(data), other, *other_index).ok());
  EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
  // ... also when the mailbox grew.
  ASSERT_TRUE(WriteIndexCache(CachePath(), Key(data), other, *other_index).ok());
  const std::string grown = data + Message(9) + "\n";
  EXPECT_EQ(Check(grown, Key(grown, 5)), IndexCacheOutcome::kMiss);
  // A cache of another file (other dev/ino) under our name.
  MboxFileKey foreign = Key(data);
  foreign.ino = 43;
  ASSERT_TRUE(WriteIndexCache(CachePath(), foreign, data, Fresh(data)).ok());
  EXPECT_EQ(Check(data, Key(data)), IndexCacheOutcome::kMiss);
}

TEST_F(MboxIndexCacheTest, RewrittenOrShrunkIsAFullScan) {
  const std::string data = Mailbox(4);
  Check(data, Key(data));
  // Same size, new mtime (an in-place rewrite): never trusted.
  std::string edited = data;
  edited[edited.find("line 3 of 2")] = 'L';
  EXPECT_EQ(Check(edited, Key(edited, 1001)), IndexCacheOutcome::kMiss);
  // Shrunk (a deletion by another session).
  const std::string shrunk = Mailbox(2);
  EXPECT_EQ(Check(shrunk, Key(shrunk, 1002)), IndexCacheOutcome::kMiss);
}

// Big mailboxes: the fingerprint samples every stride-th message, the
// stride growing with the count (about 256 samples).
class MboxIndexCacheBigTest : public MboxIndexCacheTest {
 protected:
  static constexpr size_t kBigMax = 100000;
  IndexCacheOutcome CheckBig(absl::string_view data, const MboxFileKey& key) {
    IndexCacheOutcome outcome = IndexCacheOutcome::kDisabled;
    auto got = IndexWithCache(data, key, dir_.path(), kBigMax, &outcome);
    auto fresh = IndexMbox(data, kBigMax);
    EXPECT_TRUE(got.ok() && fresh.ok());
    if (got.ok() && fresh.ok()) {
      EXPECT_TRUE(*got == *fresh);
    }
    return outcome;
  }
};

TEST_F(MboxIndexCacheBigTest, ThinSamplingStillSeesAMovedBoundary) {
  // 5,000 messages: every 20th is sampled. Deleting any one message and
  // appending enough to grow the file moves every later boundary.
  for (int gone : {1, 2, 2501, 4999}) {
    SCOPED_TRACE(gone);
    std::string data;
    for (int i = 1; i <= 5000; ++i) absl::StrAppend(&data, Message(i), "\n");
    ASSERT_EQ(CheckBig(data, Key(data)), IndexCacheOutcome::kMiss);
    std::string rewritten;
    for (int i = 1; i <= 5003; ++i) {
      if (i != gone) absl::StrAppend(&rewritten, Message(i), "\n");
    }
    ASSERT_GT(rewritten.size(), data.size());
    EXPECT_EQ(CheckBig(rewritten, Key(rewritten, 2000 + gone)),
              IndexCacheOutcome::kMiss);
    ::unlink(CachePath().c_str());
  }
}

TEST_F(MboxIndexCacheBigTest, AppendsPastTwiceTheSamplesChooseANewStride) {
  // 300 messages (stride 8) grow to 6,300 (past 512 samples at stride 8):
  // every step is an append that agrees with a fresh scan.
  // Bodies of ~1.1 KB, so that each step's append is past 512 KiB and
  // rewrites the cache (smaller ones are re-scanned instead).
  std::string data;
  int n = 0;
  for (; n < 300; ++n) absl::StrAppend(&data, Message(n + 1), "\n");
  ASSERT_EQ(CheckBig(data, Key(data)), IndexCacheOutcome::kMiss);
  const std::string body(1100, 'b');
  for (int step = 0; step < 12; ++step) {
    for (int k = 0; k < 500; ++k, ++n) {
      absl::StrAppend(&data, Message(n + 1, body + "\n"), "\n");
    }
    ASSERT_EQ(CheckBig(data, Key(data, 3000 + step)),
              IndexCacheOutcome::kAppended)
        << step;
  }
  EXPECT_EQ(CheckBig(data, Key(data, 3011)), IndexCacheOutcome::kHit);
}

TEST_F(MboxIndexCacheTest, RefusalsAreReportedAsWithoutACache) {
  std::string data = Mailbox(2);
  Check(data, Key(data));
  // A From_ line directly after a From_ line at the tail: refused.
  const std::string bad = data + "From a\nFrom b\n";
  const auto fresh = IndexMbox(bad, kMax);
  ASSERT_FALSE(fresh.ok());
  auto got = IndexWithCache(bad, Key(bad, 7), dir_.path(), kMax);
  EXPECT_EQ(got.status(), fresh.status());
  // Too many messages for the limit, on the appended part only.
  Check(data, Key(data));
  const std::string more = data + Message(3) + "\n";
  auto limited = IndexWithCache(more, Key(more, 8), dir_.path(), 2);
  EXPECT_EQ(limited.status(), IndexMbox(more, 2).status());
}

}  // namespace
}  // namespace popgate::mailbox
