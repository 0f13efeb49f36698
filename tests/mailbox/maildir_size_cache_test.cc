// The Maildir size cache's file format (mailbox/maildir_size_cache.h): what
// it accepts, and that anything damaged or foreign reads as empty. How a
// login uses it is in maildir_test.cc.
#include "mailbox/maildir_size_cache.h"

#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mailbox/cache_file.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::TempDir;
using ::popgate::testing::IsOk;

constexpr uint64_t kDev = 2049;
constexpr uint64_t kIno = 77;
constexpr size_t kHeaderBytes = 40;
constexpr size_t kEntryBytes = 40;

MaildirSizeEntry Entry(uint64_t ino, uint64_t size, uint64_t wire,
                       int64_t ctime_nsec = 5) {
  MaildirSizeEntry e;
  e.ino = ino;
  e.size = size;
  e.ctime_sec = 1700000000;
  e.ctime_nsec = ctime_nsec;
  e.wire_size = wire;
  return e;
}

struct stat StatOf(const MaildirSizeEntry& e) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = e.ino;
  st.st_size = static_cast<off_t>(e.size);
  st.st_ctim.tv_sec = e.ctime_sec;
  st.st_ctim.tv_nsec = e.ctime_nsec;
  return st;
}

// Recomputes the trailing checksum after a test edited the bytes.
void Reseal(std::string* bytes) {
  const size_t body = bytes->size() - 8;
  const uint64_t sum = CacheHash(0, bytes->data(), body);
  std::memcpy(bytes->data() + body, &sum, 8);
}

TEST(MaildirSizeCacheTest, RoundTripFindsOnlyUnchangedFiles) {
  // Unsorted, and one inode twice (a hard link listed in new/ and cur/).
  const std::vector<MaildirSizeEntry> in = {
      Entry(30, 100, 104), Entry(10, 0, 0), Entry(20, 7, 16), Entry(20, 7, 16)};
  const MaildirSizeCache cache = MaildirSizeCache::Parse(
      SerializeMaildirSizeCache(kDev, kIno, in), kDev, kIno, 10);
  ASSERT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.entries()[0].ino, 10u);
  EXPECT_EQ(cache.entries()[2].ino, 30u);
  EXPECT_EQ(cache.Find(StatOf(in[0])), 104u);
  EXPECT_EQ(cache.Find(StatOf(in[1])), 0u);
  EXPECT_EQ(cache.Find(StatOf(in[2])), 16u);

  struct stat st = StatOf(in[0]);
  st.st_size += 1;  // appended to
  EXPECT_FALSE(cache.Find(st).has_value());
  st = StatOf(in[0]);
  st.st_ctim.tv_nsec += 1;  // written, renamed or chmod'ed since
  EXPECT_FALSE(cache.Find(st).has_value());
  st = StatOf(in[0]);
  st.st_ino = 31;  // another file
  EXPECT_FALSE(cache.Find(st).has_value());
}

TEST(MaildirSizeCacheTest, EmptyCacheRoundTrips) {
  const std::string bytes = SerializeMaildirSizeCache(kDev, kIno, {});
  EXPECT_EQ(bytes.size(), kHeaderBytes + 8);
  EXPECT_TRUE(MaildirSizeCache::Parse(bytes, kDev, kIno, 10).empty());
}

TEST(MaildirSizeCacheTest, AnyDamagedByteOrLengthReadsAsEmpty) {
  const std::string good = SerializeMaildirSizeCache(
      kDev, kIno, {Entry(1, 10, 12), Entry(2, 20, 20)});
  ASSERT_EQ(MaildirSizeCache::Parse(good, kDev, kIno, 10).size(), 2u);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x20;
    EXPECT_TRUE(MaildirSizeCache::Parse(bad, kDev, kIno, 10).empty())
        << "flipped byte " << i;
  }
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_TRUE(
        MaildirSizeCache::Parse(good.substr(0, n), kDev, kIno, 10).empty())
        << "truncated to " << n;
  }
  EXPECT_TRUE(MaildirSizeCache::Parse(good + "x", kDev, kIno, 10).empty());
}

TEST(MaildirSizeCacheTest, ForeignOrOversizedCacheReadsAsEmpty) {
  const std::string good = SerializeMaildirSizeCache(
      kDev, kIno, {Entry(1, 10, 12), Entry(2, 20, 20)});
  EXPECT_TRUE(MaildirSizeCache::Parse(good, kDev + 1, kIno, 10).empty());
  EXPECT_TRUE(MaildirSizeCache::Parse(good, kDev, kIno + 1, 10).empty());
  EXPECT_TRUE(MaildirSizeCache::Parse(good, kDev, kIno, 1).empty());
  EXPECT_EQ(MaildirSizeCache::Parse(good, kDev, kIno, 2).size(), 2u);
}

TEST(MaildirSizeCacheTest, WellSealedButImpossibleEntriesAreRefused) {
  // Wire sizes no encoding of the file can have: smaller than the file,
  // or more than every octet an LF plus a final CR LF.
  for (const MaildirSizeEntry& e :
       {Entry(1, 10, 9), Entry(1, 10, 23), Entry(1, 0, 3)}) {
    EXPECT_TRUE(MaildirSizeCache::Parse(
                    SerializeMaildirSizeCache(kDev, kIno, {e}), kDev, kIno, 10)
                    .empty());
  }
  EXPECT_EQ(MaildirSizeCache::Parse(
                SerializeMaildirSizeCache(kDev, kIno, {Entry(1, 10, 22)}),
                kDev, kIno, 10)
                .size(),
            1u);
  // Entries out of inode order (or repeated): Find's search would miss.
  std::string bytes = SerializeMaildirSizeCache(
      kDev, kIno, {Entry(1, 10, 12), Entry(2, 20, 20)});
  std::string swapped = bytes;
  std::memcpy(swapped.data() + kHeaderBytes, bytes.data() + kHeaderBytes +
              kEntryBytes, kEntryBytes);
  std::memcpy(swapped.data() + kHeaderBytes + kEntryBytes,
              bytes.data() + kHeaderBytes, kEntryBytes);
  Reseal(&swapped);
  EXPECT_TRUE(MaildirSizeCache::Parse(swapped, kDev, kIno, 10).empty());
  std::string repeated = bytes;
  std::memcpy(repeated.data() + kHeaderBytes + kEntryBytes,
              bytes.data() + kHeaderBytes, kEntryBytes);
  Reseal(&repeated);
  EXPECT_TRUE(MaildirSizeCache::Parse(repeated, kDev, kIno, 10).empty());
}

TEST(MaildirSizeCacheTest, WriteThenLoad) {
  TempDir dir;
  const std::string path = MaildirSizeCachePath(dir.path(), kDev, kIno);
  EXPECT_TRUE(MaildirSizeCache::Load(path, kDev, kIno, 10).empty());
  ASSERT_THAT(WriteMaildirSizeCache(path, kDev, kIno, {Entry(4, 10, 12)}),
              IsOk());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const MaildirSizeCache cache = MaildirSizeCache::Load(path, kDev, kIno, 10);
  EXPECT_EQ(cache.Find(StatOf(Entry(4, 10, 12))), 12u);
  // A file bigger than max_entries allow is not even read.
  EXPECT_TRUE(MaildirSizeCache::Load(path, kDev, kIno, 0).empty());
}

}  // namespace
}  // namespace popgate::mailbox
