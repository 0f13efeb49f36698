// OpenMbox / MboxMaildrop: open semantics (§4.1), change detection (§4.6)
// and the update (§4.7) on real temp files.
#include "mailbox/mbox_maildrop.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mailbox/mbox.h"
#include "mailbox/mbox_update.h"
#include "tests/mailbox/mbox_test_util.h"
#include "tests/testing/status_matchers.h"

namespace popgate::mailbox {
namespace {

using ::popgate::mailbox::testing::AppendLocked;
using ::popgate::mailbox::testing::Drain;
using ::popgate::mailbox::testing::ReadFile;
using ::popgate::mailbox::testing::RefEncode;
using ::popgate::mailbox::testing::TempDir;
using ::popgate::mailbox::testing::WriteFile;
using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

// A message whose raw extent is exactly the returned text (it ends with
// the separating blank line).
std::string Message(int n, int body_lines = 3) {
  std::string m = absl::StrCat("From sender", n, "@example.org Mon Jan  1 ",
                               "00:00:00 2024\n", "Received: from mx", n,
                               "\nSubject: message ", n, "\n\n");
  for (int i = 0; i < body_lines; ++i) {
    absl::StrAppend(&m, "body ", n, " line ", i, "\n");
  }
  m += "\n";
  return m;
}

std::string Messages(int count) {
  std::string all;
  for (int i = 0; i < count; ++i) all += Message(i);
  return all;
}

class MboxMaildropTest : public ::testing::Test {
 protected:
  std::string Path() const { return dir_.File("mbox"); }
  MboxOptions Options() const {
    MboxOptions options;
    options.redo_dir = dir_.path();
    return options;
  }
  absl::StatusOr<std::unique_ptr<Maildrop>> Open() {
    return OpenMbox(Path(), Options());
  }
  static std::string Retr(Maildrop* md, size_t index) {
    auto stream = md->Retrieve(index, std::nullopt);
    EXPECT_THAT(stream, IsOk());
    if (!stream.ok()) return "";
    auto body = Drain(stream->get(), 4096);
    EXPECT_THAT(body, IsOk());
    return body.ok() ? *body : "";
  }

  TempDir dir_;
};

TEST_F(MboxMaildropTest, MissingIsEmptyAndNeverCreated) {
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 0u);
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
  EXPECT_THAT((*md)->Commit({}), IsOk());
  EXPECT_FALSE(std::filesystem::exists(Path()));
}

TEST_F(MboxMaildropTest, EmptyFileIsEmpty) {
  WriteFile(Path(), "");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 0u);
  EXPECT_EQ((*md)->display_name(), Path());
}

TEST_F(MboxMaildropTest, SymlinkAndNonRegularRefused) {
  WriteFile(dir_.File("real"), Messages(1));
  ASSERT_EQ(::symlink(dir_.File("real").c_str(), Path().c_str()), 0);
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_EQ(::mkfifo(dir_.File("fifo").c_str(), 0600), 0);
  EXPECT_THAT(OpenMbox(dir_.File("fifo"), Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(OpenMbox(dir_.path(), Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MboxMaildropTest, ReadOnlyMailboxIsPermissionDenied) {
  // popa3d needs write access even for read-only use. Root bypasses mode
  // bits, so check as "nobody" in a child.
  WriteFile(Path(), Messages(1));
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(Path().c_str(), 0400), 0);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(Path().c_str(), 65534, 65534), 0);
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      _exit(2);
    }
    auto md = OpenMbox(Path(), MboxOptions());
    _exit(md.status().code() == absl::StatusCode::kPermissionDenied ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(MboxMaildropTest, RefusalsAndLimits) {
  WriteFile(Path(), "\n" + Messages(2));
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kDataLoss));
  WriteFile(Path(), Messages(3));
  MboxOptions options = Options();
  options.max_messages = 2;
  EXPECT_THAT(OpenMbox(Path(), options),
              StatusIs(absl::StatusCode::kResourceExhausted));
  options = Options();
  options.max_bytes = 10;
  EXPECT_THAT(OpenMbox(Path(), options),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(MboxMaildropTest, ListsRetrievesAndTops) {
  const std::string mbox = Messages(3) + "From x\r\nH: crlf\r\n\r\n.dot\r\nend";
  WriteFile(Path(), mbox);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  auto ref = testing::RefIndex(mbox);
  ASSERT_TRUE(ref.has_value());
  ASSERT_EQ((*md)->message_count(), ref->size());
  for (size_t i = 0; i < ref->size(); ++i) {
    const std::string data =
        mbox.substr((*ref)[i].data_offset, (*ref)[i].data_size);
    const std::string wire = RefEncode(data);
    EXPECT_EQ((*md)->uidl(i), (*ref)[i].uidl);
    EXPECT_EQ((*md)->message_size(i), wire.size() - testing::RefDotLines(data));
    EXPECT_EQ(Retr(md->get(), i), wire);
    auto top = (*md)->Retrieve(i, 1);
    ASSERT_THAT(top, IsOk());
    auto top_body = Drain(top->get(), 7);
    ASSERT_THAT(top_body, IsOk());
    EXPECT_EQ(*top_body, RefEncode(testing::RefTop(data, 1)));
  }
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
}

TEST_F(MboxMaildropTest, AppendedMailIsFineAndInvisible) {
  WriteFile(Path(), Messages(2));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_TRUE(AppendLocked(Path(), Message(7)));
  EXPECT_EQ(Retr(md->get(), 1),
            RefEncode(Message(1).substr(
                Message(1).find('\n') + 1,
                Message(1).size() - Message(1).find('\n') - 2)));
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
  EXPECT_EQ((*md)->message_count(), 2u);
}

TEST_F(MboxMaildropTest, TruncationIsAborted) {
  WriteFile(Path(), Messages(3));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_EQ(::truncate(Path().c_str(), 10), 0);
  EXPECT_THAT((*md)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kAborted));
  // Stale for good: every later call fails too, and nothing is written.
  ASSERT_EQ(::truncate(Path().c_str(), 0), 0);
  WriteFile(Path(), Messages(3));
  EXPECT_THAT((*md)->CheckUnchanged(), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT((*md)->Commit({0}), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ReadFile(Path()), Messages(3));
}

TEST_F(MboxMaildropTest, InPlaceEditOfHashedHeaderIsAborted) {
  const std::string mbox = Messages(3);
  WriteFile(Path(), mbox);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  // Same size, different Received: line of message 1.
  const size_t at = mbox.find("Received: from mx1") + 17;
  int fd = ::open(Path().c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "9", 1, at), 1);
  ::close(fd);
  EXPECT_THAT((*md)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MboxMaildropTest, InPlaceEditOfBodyIsServed) {
  // popa3d does not notice same-size edits outside hashed headers, and
  // serves the new bytes; so do we.
  const std::string mbox = Messages(2);
  WriteFile(Path(), mbox);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  const size_t at = mbox.find("body 0 line 0");
  int fd = ::open(Path().c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "B", 1, at), 1);
  ::close(fd);
  std::string got = Retr(md->get(), 0);
  EXPECT_NE(got.find("Body 0 line 0"), std::string::npos);
  EXPECT_THAT((*md)->CheckUnchanged(), IsOk());
}

TEST_F(MboxMaildropTest, TruncatedUnderAStreamIsAbortedNotSigbus) {
  // A 1 MB message, truncated to nothing after Retrieve: the encoder's
  // reads fault (SIGBUS) and must turn into Aborted.
  std::string big = "From a\nH: 1\n\n";
  for (int i = 0; i < 20000; ++i)
    big += "a body line of fifty bytes or so, more or less\n";
  WriteFile(Path(), big);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  auto stream = (*md)->Retrieve(0, std::nullopt);
  ASSERT_THAT(stream, IsOk());
  std::vector<absl::string_view> segs;
  ASSERT_THAT((*stream)->Next(100, &segs), IsOk());
  ASSERT_EQ(::truncate(Path().c_str(), 0), 0);
  absl::Status status;
  for (int i = 0; i < 1000000 && status.ok(); ++i) {
    segs.clear();
    auto more = (*stream)->Next(65536, &segs);
    status = more.status();
    if (more.ok() && !*more) break;
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT((*md)->CheckUnchanged(), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MboxMaildropTest, CommitNothingLeavesFileAndMtimeAlone) {
  WriteFile(Path(), Messages(3));
  struct stat before;
  ASSERT_EQ(::stat(Path().c_str(), &before), 0);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_THAT((*md)->Commit({}), IsOk());
  struct stat after;
  ASSERT_EQ(::stat(Path().c_str(), &after), 0);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  EXPECT_EQ(ReadFile(Path()), Messages(3));
}

struct DeleteCase {
  const char* name;
  std::vector<size_t> deleted;
  bool append_during_session;
};

TEST_F(MboxMaildropTest, CommitDeletes) {
  const DeleteCase kCases[] = {
      {"First", {0}, false},
      {"Middle", {2}, false},
      {"Last", {4}, false},
      {"Several", {0, 2, 3}, false},
      {"All", {0, 1, 2, 3, 4}, false},
      {"FirstWithAppend", {0}, true},
      {"LastWithAppend", {4}, true},
      {"AllWithAppend", {0, 1, 2, 3, 4}, true},
  };
  for (const DeleteCase& c : kCases) {
    SCOPED_TRACE(c.name);
    WriteFile(Path(), Messages(5));
    struct stat before;
    ASSERT_EQ(::stat(Path().c_str(), &before), 0);
    auto md = Open();
    ASSERT_THAT(md, IsOk());
    if (c.append_during_session) {
      ASSERT_TRUE(AppendLocked(Path(), Message(99)));
    }
    ASSERT_THAT((*md)->Commit(c.deleted), IsOk());
    std::string want;
    for (size_t i = 0; i < 5; ++i) {
      if (std::find(c.deleted.begin(), c.deleted.end(), i) == c.deleted.end()) {
        want += Message(static_cast<int>(i));
      }
    }
    if (c.append_during_session) want += Message(99);
    EXPECT_EQ(ReadFile(Path()), want);
    // Same inode and mode (in place); no redo record left behind.
    struct stat after;
    ASSERT_EQ(::stat(Path().c_str(), &after), 0);
    EXPECT_EQ(before.st_ino, after.st_ino);
    EXPECT_EQ(before.st_mode, after.st_mode);
    EXPECT_FALSE(std::filesystem::exists(
        RedoPath(dir_.path(), after.st_dev, after.st_ino)));
    // And the result opens cleanly.
    auto again = Open();
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ((*again)->message_count(),
              5 - c.deleted.size() + (c.append_during_session ? 1 : 0));
  }
}

TEST_F(MboxMaildropTest, DeletingLastKeepsPreviousBlankLine) {
  // popa3d: the previous message's separator stays (it is in its extent).
  const std::string mbox = "From a\nH\n\nb1\n\nFrom b\nH\n\nb2\n";
  WriteFile(Path(), mbox);
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_THAT((*md)->Commit({1}), IsOk());
  EXPECT_EQ(ReadFile(Path()), "From a\nH\n\nb1\n\n");
}

TEST_F(MboxMaildropTest, SecondSessionIsAbortedAfterFirstCommits) {
  WriteFile(Path(), Messages(4));
  auto first = Open();
  auto second = Open();
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT((*first)->Commit({1}), IsOk());
  const std::string after_first = ReadFile(Path());
  EXPECT_THAT((*second)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT((*second)->Commit({0}), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ReadFile(Path()), after_first);

  // Also when the second one's first call after that is the Commit.
  WriteFile(Path(), Messages(4));
  auto third = Open();
  auto fourth = Open();
  ASSERT_THAT(third, IsOk());
  ASSERT_THAT(fourth, IsOk());
  ASSERT_THAT((*third)->Commit({3}), IsOk());
  EXPECT_THAT((*fourth)->Commit({0}), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(MboxMaildropTest, NothingAfterCommit) {
  WriteFile(Path(), Messages(2));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  ASSERT_THAT((*md)->Commit({0}), IsOk());
  EXPECT_THAT((*md)->Retrieve(0, std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT((*md)->Commit({0}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MboxMaildropTest, CommitNeedsRedoDir) {
  WriteFile(Path(), Messages(2));
  auto md = OpenMbox(Path(), MboxOptions());
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT((*md)->Commit({0}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReadFile(Path()), Messages(2));
}

TEST_F(MboxMaildropTest, CommitRejectsBadIndices) {
  WriteFile(Path(), Messages(3));
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_THAT((*md)->Commit({1, 1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*md)->Commit({3}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(ReadFile(Path()), Messages(3));
}

TEST_F(MboxMaildropTest, TornRedoRecordIsDiscarded) {
  WriteFile(Path(), Messages(3));
  struct stat st;
  ASSERT_EQ(::stat(Path().c_str(), &st), 0);
  const std::string redo = RedoPath(dir_.path(), st.st_dev, st.st_ino);
  WriteFile(redo, "PGREDO garbage that is not a record");
  WriteFile(redo + ".tmp", "half a temp record");
  auto md = Open();
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 3u);
  EXPECT_FALSE(std::filesystem::exists(redo));
  EXPECT_FALSE(std::filesystem::exists(redo + ".tmp"));
  EXPECT_EQ(ReadFile(Path()), Messages(3));
}

// --mode=pool opens mailboxes as the pool account: the file must belong to
// the authenticated uid, judged on the opened fd.
TEST_F(MboxMaildropTest, RequiredOwnerIsCheckedOnTheOpenedFile) {
  WriteFile(Path(), Messages(2));
  MboxOptions options = Options();
  options.required_owner = ::geteuid();
  auto md = OpenMbox(Path(), options);
  ASSERT_THAT(md, IsOk());
  EXPECT_EQ((*md)->message_count(), 2u);

  options.required_owner = ::geteuid() + 1;
  auto refused = OpenMbox(Path(), options);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(refused.status().message(),
            absl::StrCat(Path(), ": owned by uid ", ::geteuid(), ", expected ",
                         ::geteuid() + 1));
  // A missing mailbox has no owner to check: empty, as without the option.
  options.required_owner = ::geteuid() + 1;
  auto missing = OpenMbox(dir_.File("nothing"), options);
  ASSERT_THAT(missing, IsOk());
  EXPECT_EQ((*missing)->message_count(), 0u);
}

}  // namespace
}  // namespace popgate::mailbox
