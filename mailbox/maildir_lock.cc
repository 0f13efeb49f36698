#include "mailbox/maildir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace popgate::mailbox {
namespace {

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

// Whether the lock described by `content` (opened as `fd`) may be broken.
bool IsStale(int fd, absl::string_view content, absl::Duration stale_age) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  const absl::Time mtime = absl::TimeFromTimespec(st.st_mtim);
  // Age first: it also covers a holder on another host and a lock left
  // empty by a crash between the create and the write.
  if (absl::Now() - mtime > stale_age) return true;
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(content), ' ');
  int64_t pid = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0 ||
      pid > 0x7fffffff) {
    return false;  // Unreadable but young: maybe being written right now.
  }
  if (parts[1] != HostName()) return false;  // Can't probe another host.
  // ESRCH: no such process. EPERM means it exists (another user's).
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

MaildirLock::MaildirLock(MaildirLock&& other) noexcept
    : dir_fd_(std::exchange(other.dir_fd_, -1)),
      fd_(std::move(other.fd_)),
      dev_(other.dev_),
      ino_(other.ino_),
      last_refresh_(other.last_refresh_) {}

MaildirLock& MaildirLock::operator=(MaildirLock&& other) noexcept {
  if (this != &other) {
    Release();
    dir_fd_ = std::exchange(other.dir_fd_, -1);
    fd_ = std::move(other.fd_);
    dev_ = other.dev_;
    ino_ = other.ino_;
    last_refresh_ = other.last_refresh_;
  }
  return *this;
}

absl::StatusOr<MaildirLock> MaildirLock::Acquire(int dir_fd,
                                                 const std::string& dir_path,
                                                 absl::Duration stale_age) {
  const std::string where = absl::StrCat(dir_path, "/", kMaildirLockName);
  // Two rounds: the first may find a stale lock and break it.
  for (int round = 0; round < 2; ++round) {
    UniqueFd fd(::openat(dir_fd, kMaildirLockName,
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                         0600));
    if (fd.valid()) {
      const std::string content =
          absl::StrCat(::getpid(), " ", HostName(), " ",
                       absl::ToUnixSeconds(absl::Now()), "\n");
      if (int rc = WriteFull(fd.get(), content.data(), content.size());
          rc != 0) {
        ::unlinkat(dir_fd, kMaildirLockName, 0);
        return absl::ErrnoToStatus(-rc, absl::StrCat("write ", where));
      }
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) {
        const int err = errno;
        ::unlinkat(dir_fd, kMaildirLockName, 0);
        return absl::ErrnoToStatus(err, absl::StrCat("fstat ", where));
      }
      return MaildirLock(dir_fd, std::move(fd), st.st_dev, st.st_ino);
    }
    if (errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("create ", where));
    }
    // Someone holds it (or held it). Read what they wrote.
    UniqueFd old(::openat(dir_fd, kMaildirLockName,
                          O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!old.valid()) {
      if (errno == ENOENT) continue;  // Released meanwhile: try again.
      return absl::UnavailableError(
          absl::StrCat(where, " exists and cannot be read"));
    }
    struct stat ost;
    if (::fstat(old.get(), &ost) != 0 || !S_ISREG(ost.st_mode)) {
      return absl::UnavailableError(absl::StrCat(where, " is not a lock file"));
    }
    char buf[512];
    const ssize_t n = ::pread(old.get(), buf, sizeof(buf), 0);
    const absl::string_view content(buf, n > 0 ? static_cast<size_t>(n) : 0);
    if (round > 0 || !IsStale(old.get(), content, stale_age)) {
      return absl::UnavailableError(
          absl::StrCat(where, ": mailbox in use by another session"));
    }
    // Break it without racing another breaker: rename to a name only we
    // use, then check we moved the file we judged. If a fresh lock slipped
    // in between, put it back (link fails if yet another one exists) and
    // give up: never remove a live session's lock.
    const std::string aside =
        absl::StrCat(kMaildirLockName, ".stale.", ::getpid(), ".", ost.st_ino);
    if (::renameat(dir_fd, kMaildirLockName, dir_fd, aside.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("rename ", where));
    }
    struct stat ast;
    if (::fstatat(dir_fd, aside.c_str(), &ast, AT_SYMLINK_NOFOLLOW) == 0 &&
        (ast.st_dev != ost.st_dev || ast.st_ino != ost.st_ino)) {
      ::linkat(dir_fd, aside.c_str(), dir_fd, kMaildirLockName, 0);
      ::unlinkat(dir_fd, aside.c_str(), 0);
      return absl::UnavailableError(
          absl::StrCat(where, ": mailbox in use by another session"));
    }
    ::unlinkat(dir_fd, aside.c_str(), 0);
  }
  return absl::UnavailableError(
      absl::StrCat(where, ": mailbox in use by another session"));
}

void MaildirLock::Refresh() {
  if (!fd_.valid()) return;
  const absl::Time now = absl::Now();
  if (now - last_refresh_ < absl::Minutes(1)) return;
  last_refresh_ = now;
  // Best effort (see the header): futimens with NULL sets both to now.
  ::futimens(fd_.get(), nullptr);
}

void MaildirLock::Release() {
  if (!fd_.valid()) return;
  struct stat st;
  // Only remove the file if it is still ours: a lock broken as stale and
  // re-taken by another session must survive our exit.
  if (::fstatat(dir_fd_, kMaildirLockName, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      st.st_dev == dev_ && st.st_ino == ino_) {
    ::unlinkat(dir_fd_, kMaildirLockName, 0);
  }
  fd_.reset();
}

}  // namespace popgate::mailbox
