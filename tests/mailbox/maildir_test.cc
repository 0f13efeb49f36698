// Maildir: the name parser (maildir_name.h), the lock file (maildir_lock.h)
// and OpenMaildir / MaildirMaildrop on real temp directories.
#include "mailbox/maildir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox/maildir_lock.h"
#include "mailbox/maildir_maildrop.h"
#include "mailbox/maildir_name.h"
#include "mailbox/maildir_size_cache.h"
#include "mailbox/wire_stream.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::Drain;
using ::popgate::mailbox::testing::ReadFile;
using ::popgate::mailbox::testing::RefEncode;
using ::popgate::mailbox::testing::RefTop;
using ::popgate::mailbox::testing::TempDir;
using ::popgate::mailbox::testing::WriteFile;
using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;
using ::testing::ElementsAre;

// ---- Names ------------------------------------------------------------------

TEST(MaildirNameTest, DovecotNameWithSizesAndFlags) {
  const MaildirName n =
      ParseMaildirName("1035478339.M508452P1234Q1.host,S=1234,W=1260:2,RS");
  EXPECT_EQ(n.base, "1035478339.M508452P1234Q1.host,S=1234,W=1260");
  EXPECT_EQ(n.seconds, 1035478339);
  EXPECT_EQ(n.microseconds, 508452u);
  EXPECT_EQ(n.raw_size, 1234u);
  EXPECT_EQ(n.wire_size, 1260u);
}

TEST(MaildirNameTest, QmailNameHasNoMicrosecondsOrSizes) {
  const MaildirName n = ParseMaildirName("1035478339.12345.host");
  EXPECT_EQ(n.base, "1035478339.12345.host");
  EXPECT_EQ(n.seconds, 1035478339);
  EXPECT_FALSE(n.microseconds.has_value());
  EXPECT_FALSE(n.raw_size.has_value());
  EXPECT_FALSE(n.wire_size.has_value());
}

TEST(MaildirNameTest, Boundaries) {
  struct Case {
    const char* name;
    const char* base;
    std::optional<int64_t> seconds;
    std::optional<uint64_t> raw;
  };
  const Case cases[] = {
      {"", "", std::nullopt, std::nullopt},
      {":2,S", "", std::nullopt, std::nullopt},
      {"nodigits.host", "nodigits.host", std::nullopt, std::nullopt},
      {"123", "123", std::nullopt, std::nullopt},  // no dot after
      {"123.", "123.", 123, std::nullopt},
      {"1234567890123.x", "1234567890123.x", std::nullopt, std::nullopt},  // 13
      {"123456789012.x", "123456789012.x", 123456789012, std::nullopt},
      {"1.x,S=", "1.x,S=", 1, std::nullopt},
      {"1.x,S=12a", "1.x,S=12a", 1, std::nullopt},
      {"1.x,S=99999999999999999999", "1.x,S=99999999999999999999", 1,
       std::nullopt},                        // 20 digits: refused, no overflow
      {"1.x,S=7,S=8", "1.x,S=7,S=8", 1, 7},  // first wins
      {"1.x,s=7", "1.x,s=7", 1, std::nullopt},
      {"1.x:2,S=5", "1.x", 1, std::nullopt},  // after ':' is flags
      {"1.x,S=5:2,", "1.x,S=5", 1, 5},
  };
  for (const Case& c : cases) {
    const MaildirName n = ParseMaildirName(c.name);
    EXPECT_EQ(n.base, c.base) << c.name;
    EXPECT_EQ(n.seconds, c.seconds) << c.name;
    EXPECT_EQ(n.raw_size, c.raw) << c.name;
  }
  EXPECT_EQ(ParseMaildirName("1.M1234567P1.h").microseconds, std::nullopt);
  EXPECT_EQ(ParseMaildirName("1.P5M12.h").microseconds, 12u);
  EXPECT_EQ(ParseMaildirName("1.M.h").microseconds, std::nullopt);
}

TEST(MaildirNameTest, UidlIsBaseOrMd5) {
  EXPECT_EQ(MaildirUidl("1035478339.M508452P1234Q1.host,S=12"),
            "1035478339.M508452P1234Q1.host,S=12");
  EXPECT_TRUE(IsValidUidl(std::string(70, 'x')));
  EXPECT_FALSE(IsValidUidl(std::string(71, 'x')));
  EXPECT_FALSE(IsValidUidl(""));
  EXPECT_FALSE(IsValidUidl("a b"));
  EXPECT_FALSE(IsValidUidl("caf\xc3\xa9"));
  // MD5("") and a long name: 32 lowercase hex digits, stable.
  EXPECT_EQ(MaildirUidl(""), "d41d8cd98f00b204e9800998ecf8427e");
  const std::string long_uidl = MaildirUidl(std::string(71, 'x'));
  EXPECT_EQ(long_uidl.size(), 32u);
  EXPECT_TRUE(IsValidUidl(long_uidl));
  EXPECT_EQ(long_uidl, MaildirUidl(std::string(71, 'x')));
  EXPECT_NE(long_uidl, MaildirUidl(std::string(72, 'x')));
  EXPECT_EQ(MaildirUidl("a b").size(), 32u);
}

// ---- Maildrop -----------------------------------------------------------

class MaildirTest : public ::testing::Test {
 protected:
  MaildirTest() {
    for (const char* sub : {"new", "cur", "tmp"}) {
      std::filesystem::create_directory(Sub(sub));
    }
  }

  std::string Path() const { return dir_.File("Maildir"); }
  std::string Sub(absl::string_view sub) const {
    std::filesystem::create_directories(Path());
    return absl::StrCat(Path(), "/", sub);
  }
  std::string Put(absl::string_view sub, absl::string_view name,
                  absl::string_view bytes) {
    const std::string p = absl::StrCat(Sub(sub), "/", name);
    WriteFile(p, bytes);
    return p;
  }
  absl::StatusOr<std::unique_ptr<MaildirMaildrop>> Open(
      MaildirOptions options = MaildirOptions()) {
    return MaildirMaildrop::Open(Path(), options);
  }
  static std::string Retr(Maildrop* md, size_t index,
                          std::optional<uint64_t> top = std::nullopt) {
    auto stream = md->Retrieve(index, top);
    EXPECT_THAT(stream, IsOk());
    if (!stream.ok()) return "";
    auto body = Drain(stream->get(), 7);
    EXPECT_THAT(body, IsOk());
    return body.ok() ? *body : "";
  }
  static std::vector<std::string> Uidls(const Maildrop& md) {
    std::vector<std::string> out;
    for (size_t i = 0; i < md.message_count(); ++i) {
      out.emplace_back(md.uidl(i));
    }
    return out;
  }
  bool Exists(absl::string_view sub, absl::string_view name) const {
    return std::filesystem::exists(absl::StrCat(Path(), "/", sub, "/", name));
  }

  TempDir dir_;
};

TEST_F(MaildirTest, MissingIsEmptyAndNeverCreated) {
  MaildirOptions options;
  auto md = MaildirMaildrop::Open(dir_.File("nothing"), options);
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 0u);
  EXPECT_FALSE((*md)->locked());
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
  EXPECT_THAT((*md)->Commit({}), IsOk());
  EXPECT_FALSE(std::filesystem::exists(dir_.File("nothing")));
}

TEST_F(MaildirTest, NotADirectoryRefused) {
  WriteFile(dir_.File("file"), "x");
  EXPECT_THAT(MaildirMaildrop::Open(dir_.File("file"), MaildirOptions()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MaildirTest, EmptyMaildirAndMissingSubdirs) {
  std::filesystem::remove(Sub("new"));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 0u);
  EXPECT_TRUE((*md)->locked());
}

TEST_F(MaildirTest, OrderByDeliveryTimeThenNameMergingNewAndCur) {
  Put("cur", "1000000002.M5P1.h:2,S", "c\n");
  Put("new", "1000000002.M4P1.h", "b\n");
  Put("new", "1000000001.M999999P1.h", "a\n");
  Put("cur", "1000000003.P1.h:2,", "e\n");
  Put("new", "1000000003.M0P1.h", "d\n");  // .M0 < no M? equal usec: by name
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT(Uidls(**md), ElementsAre("1000000001.M999999P1.h",
                                       "1000000002.M4P1.h", "1000000002.M5P1.h",
                                       "1000000003.M0P1.h", "1000000003.P1.h"));
}

TEST_F(MaildirTest, NamesWithoutTimeUseMtime) {
  // Names sort the other way round: the mtime must win.
  const std::string early = Put("new", "zzz-early", "1\n");
  const std::string late = Put("new", "aaa-late", "2\n");
  struct timespec t[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, early.c_str(), t, 0), 0);
  t[0].tv_sec = t[1].tv_sec = 2000;
  ASSERT_EQ(::utimensat(AT_FDCWD, late.c_str(), t, 0), 0);
  Put("new", "1500.x.h", "3\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT(Uidls(**md), ElementsAre("zzz-early", "1500.x.h", "aaa-late"));
}

TEST_F(MaildirTest, TmpDotFilesAndNonRegularIgnoredSymlinksRefused) {
  Put("tmp", "1.partial.h", "partial\n");
  Put("new", ".hidden", "x\n");
  Put("cur", ".1.x.h:2,S", "x\n");
  ASSERT_EQ(::mkfifo((Sub("new") + "/2.fifo.h").c_str(), 0600), 0);
  std::filesystem::create_directory(Sub("cur") + "/3.dir.h");
  const std::string target = dir_.File("outside");
  WriteFile(target, "secret\n");
  std::filesystem::create_symlink(target, Sub("new") + "/4.link.h");
  Put("new", "5.real.h", "real\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT(Uidls(**md), ElementsAre("5.real.h"));
}

TEST_F(MaildirTest, UidlIsNameBeforeColonElseMd5) {
  Put("cur", "1.a.h,S=2:2,S", "a\n");
  Put("cur", "2.b.h:2,RS", "b\n");
  const std::string long_name(80, 'x');
  Put("new", "3." + long_name, "c\n");
  Put("new", "4.sp ace.h", "d\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ((*md)->message_count(), 4u);
  EXPECT_EQ((*md)->uidl(0), "1.a.h,S=2");
  EXPECT_EQ((*md)->uidl(1), "2.b.h");
  EXPECT_EQ((*md)->uidl(2), MaildirUidl("3." + long_name));
  EXPECT_EQ((*md)->uidl(2).size(), 32u);
  EXPECT_EQ((*md)->uidl(3), MaildirUidl("4.sp ace.h"));
}

TEST_F(MaildirTest, DuplicateBaseNamesGetDistinctUidls) {
  Put("cur", "1.a.h:2,S", "a\n");
  Put("cur", "1.a.h:2,RS", "b\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ((*md)->message_count(), 2u);
  EXPECT_NE((*md)->uidl(0), (*md)->uidl(1));
  for (absl::string_view u : Uidls(**md)) EXPECT_TRUE(IsValidUidl(u));
}

TEST_F(MaildirTest, MessageListedInNewAndCurIsServedOnceFromCur) {
  // A move new/ -> cur/ between the two listings shows one file under both
  // names (a hard link stands in for the race); a different file with the
  // same base is a second message.
  const std::string moved = Put("new", "1.a.h", "a\n");
  ASSERT_EQ(::link(moved.c_str(), (Sub("cur") + "/1.a.h:2,S").c_str()), 0);
  Put("new", "2.b.h", "b\n");
  Put("cur", "2.b.h:2,S", "other b\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ((*md)->message_count(), 3u);
  EXPECT_EQ((*md)->uidl(0), "1.a.h");
  EXPECT_EQ(Retr(md->get(), 0), "a\r\n");
  ASSERT_THAT((*md)->Commit({0}), IsOk());
  EXPECT_FALSE(Exists("cur", "1.a.h:2,S"));
  EXPECT_TRUE(Exists("new", "1.a.h"));  // Not chosen: the cur/ name was.
}

TEST_F(MaildirTest, SizesAreEncodedOctetsAndNameFieldsAreVerified) {
  const std::string lf = "Subject: a\n\nbody\n.dot\n";
  const std::string crlf = "Subject: b\r\n\r\nbody\r\n";
  const std::string unterminated = "Subject: c\n\nno newline";
  // Honest S=/W= (Dovecot convention), then lying ones.
  Put("new", absl::StrCat("1.a.h,S=", lf.size(), ",W=", lf.size() + 4), lf);
  Put("new", absl::StrCat("2.b.h,S=", crlf.size(), ",W=", crlf.size()), crlf);
  Put("new", "3.c.h,S=5,W=7", unterminated);
  Put("new", "4.d.h,S=999999,W=1", lf);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ((*md)->message_count(), 4u);
  EXPECT_EQ((*md)->message_size(0), lf.size() + 4);
  EXPECT_EQ((*md)->message_size(1), crlf.size());
  EXPECT_EQ((*md)->message_size(2), unterminated.size() + 2 + 2);
  EXPECT_EQ((*md)->message_size(3), lf.size() + 4);
  // 3.c: S and W both wrong; 4.d: both wrong.
  EXPECT_EQ((*md)->size_field_mismatches(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const std::string body = Retr(md->get(), i);
    // LIST size = RETR octets before dot-stuffing.
    size_t dots = 0;
    for (size_t p = 0; p < body.size(); ++p) {
      if ((p == 0 || body[p - 1] == '\n') && body[p] == '.') ++dots;
    }
    EXPECT_EQ(body.size(), (*md)->message_size(i) + dots) << i;
  }
}

TEST_F(MaildirTest, PlausibleNameSizesStandInForAScan) {
  const std::string lf = "Subject: a\n\nbody\n";            // 3 LFs
  const std::string unterminated = "Subject: c\n\nno newline";  // 2 LFs
  // S= right, W= within [S, 2S] but not the truth (S+1, not S+3): trusted
  // as stated, so a login reads no message bytes (Dovecot does the same).
  Put("new", absl::StrCat("1.a.h,S=", lf.size(), ",W=", lf.size() + 1), lf);
  // Honest Dovecot fields on an unterminated file: RETR adds CR LF.
  Put("new",
      absl::StrCat("2.b.h,S=", unterminated.size(), ",W=",
                   unterminated.size() + 2),
      unterminated);
  // W= below S or above 2S, or S= not the file's size: scanned.
  Put("new", absl::StrCat("3.c.h,S=", lf.size(), ",W=", lf.size() - 1), lf);
  Put("new", absl::StrCat("4.d.h,S=", lf.size(), ",W=", 2 * lf.size() + 1),
      lf);
  Put("new", absl::StrCat("5.e.h,S=", lf.size() + 1, ",W=", lf.size() + 3),
      lf);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ((*md)->message_count(), 5u);
  EXPECT_EQ((*md)->message_size(0), lf.size() + 1);
  EXPECT_EQ((*md)->message_size(1), unterminated.size() + 2 + 2);
  for (size_t i : {2u, 3u, 4u}) EXPECT_EQ((*md)->message_size(i), lf.size() + 3);
  // Only the scanned names can be caught lying: 3's W, 4's W, 5's S.
  EXPECT_EQ((*md)->size_field_mismatches(), 3u);
  EXPECT_EQ(Retr(md->get(), 0), RefEncode(lf));  // the real octets
}

// ---- Size cache (maildir_size_cache.h) ----------------------------------

class MaildirSizeCacheLoginTest : public MaildirTest {
 protected:
  MaildirSizeCacheLoginTest() {
    std::filesystem::create_directories(StateDir());
    Put("new", "1.a.h", "Subject: a\n\nbody\n.dot\n");
    Put("new", "2.b.h", "Subject: b\r\n\r\nbody\r\n");
    Put("cur", "3.c.h:2,S", "Subject: c\n\nno newline");
    Put("new", "4.d.h,S=22,W=26", "Subject: d\n\nbody\nend\n");
    Put("new", "5.e.h,S=5,W=7", "Subject: e\n\nlying fields\n");
  }
  std::string StateDir() const { return dir_.File("state"); }
  MaildirOptions WithCache() const {
    MaildirOptions options;
    options.cache_dir = StateDir();
    return options;
  }
  std::string CachePath() const {
    struct stat st;
    EXPECT_EQ(::stat(Path().c_str(), &st), 0);
    return MaildirSizeCachePath(StateDir(), st.st_dev, st.st_ino);
  }
  // Sizes and UIDLs as one login sees them (the lock is gone on return).
  struct Listing {
    std::vector<uint64_t> sizes;
    std::vector<std::string> uidls;
    size_t cache_hits = 0;
    bool operator==(const Listing& o) const {
      return sizes == o.sizes && uidls == o.uidls;
    }
  };
  Listing Login(const MaildirOptions& options) {
    Listing out;
    auto md = Open(options);
    EXPECT_THAT(md, IsOk());
    if (!md.ok()) return out;
    for (size_t i = 0; i < (*md)->message_count(); ++i) {
      out.sizes.push_back((*md)->message_size(i));
    }
    out.uidls = Uidls(**md);
    out.cache_hits = (*md)->size_cache_hits();
    return out;
  }
};

TEST_F(MaildirSizeCacheLoginTest, ReloginTakesEverySizeFromTheCache) {
  const Listing uncached = Login(MaildirOptions());
  EXPECT_FALSE(std::filesystem::exists(CachePath()));
  const Listing first = Login(WithCache());
  EXPECT_EQ(first.cache_hits, 0u);
  EXPECT_TRUE(first == uncached);
  ASSERT_TRUE(std::filesystem::exists(CachePath()));
  const auto written = std::filesystem::last_write_time(CachePath());
  const Listing again = Login(WithCache());
  EXPECT_EQ(again.cache_hits, 5u);
  EXPECT_TRUE(again == uncached);
  // Nothing changed: the cache file is left alone.
  EXPECT_EQ(std::filesystem::last_write_time(CachePath()), written);
}

TEST_F(MaildirSizeCacheLoginTest, ChangedNewRenamedAndGoneFilesMiss) {
  Login(WithCache());
  // Same size and inode, other line ends: only the ctime tells. (The pause
  // lets a coarse ctime clock tick; the kernel's multigrain timestamps
  // make even a same-tick write after our stat visible.)
  ::usleep(20 * 1000);
  const std::string same_size = "Subject: b\n\n\n\nbody\n\n";
  ASSERT_EQ(same_size.size(), std::string("Subject: b\r\n\r\nbody\r\n").size());
  Put("new", "2.b.h", same_size);
  // A flag change renames (ctime moves); new mail; a deleted message.
  ASSERT_EQ(::rename((Sub("new") + "/1.a.h").c_str(),
                     (Sub("cur") + "/1.a.h:2,S").c_str()),
            0);
  Put("new", "6.f.h", "Subject: f\n\nnew\n");
  std::filesystem::remove(Sub("new") + "/5.e.h,S=5,W=7");
  const Listing cached = Login(WithCache());
  // 3 and 4 hit; 1 too where a rename leaves the ctime alone (same bytes).
  EXPECT_GE(cached.cache_hits, 2u);
  EXPECT_LE(cached.cache_hits, 3u);
  EXPECT_TRUE(cached == Login(MaildirOptions()));
  EXPECT_EQ(Login(WithCache()).cache_hits, 5u);  // rewritten last time
}

TEST_F(MaildirSizeCacheLoginTest, DamagedOrForeignCacheCostsOnlyTheReads) {
  const Listing truth = Login(MaildirOptions());
  Login(WithCache());
  const std::string good = ReadFile(CachePath());
  ASSERT_GT(good.size(), 48u);
  std::string flipped = good;
  flipped[good.size() / 2] ^= 1;
  // Another Maildir's cache under this one's name.
  const std::string foreign = SerializeMaildirSizeCache(1, 2, {});
  for (const std::string& bad :
       {flipped, good.substr(0, good.size() - 1), std::string("garbage"),
        std::string(), foreign}) {
    WriteFile(CachePath(), bad);
    const Listing listed = Login(WithCache());
    EXPECT_EQ(listed.cache_hits, 0u);
    EXPECT_TRUE(listed == truth);
    EXPECT_EQ(Login(WithCache()).cache_hits, 5u);  // and it was rewritten
  }
}

TEST_F(MaildirTest, RetrAndTopWireForm) {
  const std::string lf = "Subject: a\nX: y\n\nline 1\n.dot line\n..two\nlast";
  const std::string crlf = "Subject: b\r\n\r\nbody\r\n.dot\r\nend\r\n";
  const std::string empty = "";
  Put("new", "1.a.h", lf);
  Put("new", "2.b.h", crlf);
  Put("new", "3.c.h", empty);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ(Retr(md->get(), 0), RefEncode(lf));
  EXPECT_EQ(Retr(md->get(), 1), RefEncode(crlf));
  EXPECT_EQ(Retr(md->get(), 1),
            "Subject: b\r\n\r\nbody\r\n..dot\r\nend\r\n");  // CRLF unchanged
  EXPECT_EQ(Retr(md->get(), 2), "");
  EXPECT_EQ((*md)->message_size(2), 0u);
  for (uint64_t l : {0, 1, 2, 100}) {
    EXPECT_EQ(Retr(md->get(), 0, l), RefEncode(RefTop(lf, l))) << l;
    EXPECT_EQ(Retr(md->get(), 1, l), RefEncode(RefTop(crlf, l))) << l;
  }
  EXPECT_EQ(Retr(md->get(), 0, 0), "Subject: a\r\nX: y\r\n\r\n");
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
}

TEST_F(MaildirTest, CommitUnlinksExactlyTheChosenOnes) {
  Put("new", "1.a.h", "a\n");
  Put("cur", "2.b.h:2,S", "b\n");
  Put("new", "3.c.h", "c\n");
  Put("cur", "4.d.h:2,", "d\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  const std::vector<size_t> del = {1, 2};
  ASSERT_THAT((*md)->Commit(del), IsOk());
  EXPECT_TRUE(Exists("new", "1.a.h"));
  EXPECT_FALSE(Exists("cur", "2.b.h:2,S"));
  EXPECT_FALSE(Exists("new", "3.c.h"));
  EXPECT_TRUE(Exists("cur", "4.d.h:2,"));
  EXPECT_THAT((*md)->Commit({}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MaildirTest, EmptyCommitTouchesNothing) {
  Put("new", "1.a.h", "a\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_THAT((*md)->Commit({}), IsOk());
  EXPECT_TRUE(Exists("new", "1.a.h"));
}

TEST_F(MaildirTest, CommitFollowsMoveFromNewToCurAndToleratesGoneFiles) {
  Put("new", "1.a.h", "a\n");
  Put("new", "2.b.h", "b\n");
  Put("new", "3.c.h", "c\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  // Another client moves one and flags it, and deletes another.
  std::filesystem::rename(Sub("new") + "/1.a.h", Sub("cur") + "/1.a.h:2,S");
  std::filesystem::remove(Sub("new") + "/2.b.h");
  const std::vector<size_t> del = {0, 1};
  ASSERT_THAT((*md)->Commit(del), IsOk());
  EXPECT_FALSE(Exists("cur", "1.a.h:2,S"));
  EXPECT_TRUE(Exists("new", "3.c.h"));
}

TEST_F(MaildirTest, RetrieveFollowsRenames) {
  Put("new", "1.a.h", "a\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  std::filesystem::rename(Sub("new") + "/1.a.h", Sub("cur") + "/1.a.h:2,RS");
  EXPECT_EQ(Retr(md->get(), 0), "a\r\n");
  EXPECT_EQ((*md)->uidl(0), "1.a.h");
}

TEST_F(MaildirTest, VanishedFileIsAbortedAndNothingIsApplied) {
  Put("new", "1.a.h", "a\n");
  Put("new", "2.b.h", "b\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  std::filesystem::remove(Sub("new") + "/1.a.h");
  EXPECT_THAT((*md)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kAborted));
  const std::vector<size_t> del = {1};
  EXPECT_THAT((*md)->Commit(del), StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(Exists("new", "2.b.h"));
}

TEST_F(MaildirTest, ReplacedFileIsAborted) {
  Put("new", "1.a.h", "a\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  std::filesystem::remove(Sub("new") + "/1.a.h");
  Put("new", "1.a.h", "different\n");
  EXPECT_THAT((*md)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MaildirTest, CheckUnchangedNoticesAMessageChangedWhileSent) {
  const std::string p = Put("new", "1.a.h", "Subject: a\n\nbody\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ(Retr(md->get(), 0), "Subject: a\r\n\r\nbody\r\n");
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
  ASSERT_EQ(::truncate(p.c_str(), 3), 0);
  EXPECT_THAT((*md)->CheckUnchanged(), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT((*md)->Commit({}), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MaildirTest, TruncationUnderTheMappingIsAbortedNotACrash) {
  std::string big = "Subject: big\n\n";
  while (big.size() < 5 * 4096) big += "0123456789abcdef0123456789abcdef\n";
  const std::string p = Put("new", "1.big.h", big);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  auto stream = (*md)->Retrieve(0, std::nullopt);
  ASSERT_THAT(stream, IsOk());
  ASSERT_EQ(::truncate(p.c_str(), 0), 0);
  EXPECT_THAT(Drain(stream->get(), 1 << 20),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MaildirTest, StreamOwnsItsMappingAndOutlivesLaterRetrieves) {
  Put("new", "1.a.h", "first\n");
  Put("new", "2.b.h", "second\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  auto one = (*md)->Retrieve(0, std::nullopt);
  ASSERT_THAT(one, IsOk());
  auto two = (*md)->Retrieve(1, std::nullopt);
  ASSERT_THAT(two, IsOk());
  absl::StatusOr<std::string> first = Drain(one->get(), 100);
  absl::StatusOr<std::string> second = Drain(two->get(), 100);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*first, "first\r\n");
  EXPECT_EQ(*second, "second\r\n");
}

TEST_F(MaildirTest, MailDeliveredMidSessionInvisibleAndKept) {
  Put("new", "1.a.h", "a\n");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  Put("new", "2.b.h", "b\n");
  EXPECT_EQ((*md)->message_count(), 1u);
  const std::vector<size_t> del = {0};
  ASSERT_THAT((*md)->Commit(del), IsOk());
  EXPECT_FALSE(Exists("new", "1.a.h"));
  EXPECT_TRUE(Exists("new", "2.b.h"));
  md->reset();
  auto again = Open();
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(Uidls(**again), ElementsAre("2.b.h"));
}

TEST_F(MaildirTest, LimitsAreResourceExhausted) {
  Put("new", "1.a.h", "aaaa\n");
  Put("new", "2.b.h", "bbbb\n");
  MaildirOptions options;
  options.max_messages = 1;
  EXPECT_THAT(Open(options), StatusIs(absl::StatusCode::kResourceExhausted));
  options = MaildirOptions();
  options.max_bytes = 9;
  EXPECT_THAT(Open(options), StatusIs(absl::StatusCode::kResourceExhausted));
  // A refused open leaves no lock behind.
  EXPECT_THAT(Open(), IsOk());
}

// ---- Lock file --------------------------------------------------------------

TEST_F(MaildirTest, SecondOpenIsUnavailableUntilTheFirstIsGone) {
  auto first = Open();
  ASSERT_THAT(first, IsOk());
  const std::string lock = absl::StrCat(Path(), "/", kMaildirLockName);
  EXPECT_TRUE(std::filesystem::exists(lock));
  const std::string content = testing::ReadFile(lock);
  EXPECT_THAT(content, ::testing::StartsWith(absl::StrCat(::getpid(), " ")));
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kUnavailable));
  first->reset();
  EXPECT_FALSE(std::filesystem::exists(lock));
  EXPECT_THAT(Open(), IsOk());
}

std::string Host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

TEST_F(MaildirTest, StaleLockOfDeadPidIsBroken) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  const std::string lock = absl::StrCat(Path(), "/", kMaildirLockName);
  WriteFile(lock, absl::StrCat(child, " ", Host(), " 1\n"));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT(testing::ReadFile(lock),
              ::testing::StartsWith(absl::StrCat(::getpid(), " ")));
  // Nothing left aside.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(Path())) {
    files += e.is_regular_file();
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(MaildirTest, LiveLockIsRespectedOldLockIsBroken) {
  const std::string lock = absl::StrCat(Path(), "/", kMaildirLockName);
  // Our own pid is alive; another host's pid cannot be probed.
  WriteFile(lock, absl::StrCat(::getpid(), " ", Host(), " 1\n"));
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kUnavailable));
  WriteFile(lock, "1 some-other-host 1\n");
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kUnavailable));
  // Empty (a crash between create and write) but young: respected.
  WriteFile(lock, "");
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kUnavailable));
  // Older than the stale age: broken, whoever wrote it.
  struct timespec t[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, lock.c_str(), t, 0), 0);
  EXPECT_THAT(Open(), IsOk());
}

TEST_F(MaildirTest, LockIsNotRemovedIfSomeoneElseTookItOver) {
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  const std::string lock = absl::StrCat(Path(), "/", kMaildirLockName);
  std::filesystem::remove(lock);
  WriteFile(lock, "other\n");
  md->reset();
  EXPECT_EQ(testing::ReadFile(lock), "other\n");
}

// --mode=pool: the maildir and every message must belong to the
// authenticated uid; a foreign directory gets no lock file from us.
TEST_F(MaildirTest, RequiredOwnerIsCheckedOnDirectoryAndMessages) {
  Put("new", "1000.M1P1.host", "Subject: a\n\nbody\n");
  MaildirOptions options;
  options.required_owner = ::geteuid();
  auto md = Open(options);
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 1u);
  md->reset();

  options.required_owner = ::geteuid() + 1;
  auto refused = Open(options);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(refused.status().message(),
            absl::StrCat(Path(), ": owned by uid ", ::geteuid(), ", expected ",
                         ::geteuid() + 1));
  EXPECT_FALSE(
      std::filesystem::exists(absl::StrCat(Path(), "/", kMaildirLockName)));
}

TEST_F(MaildirTest, RequiredOwnerRefusesAForeignMessage) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  Put("cur", "1000.M1P1.host:2,S", "Subject: a\n\nbody\n");
  const std::string foreign = Put("new", "1001.M1P1.host", "Subject: b\n\n");
  ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
  MaildirOptions options;
  options.required_owner = 0;
  auto refused = Open(options);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("new/1001.M1P1.host: owned by uid 65534"));
  // Without the option the file is just another message.
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 2u);
}

}  // namespace
}  // namespace popgate::mailbox
