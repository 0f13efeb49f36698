#include "mailbox/mbox_maildrop.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "mailbox/mbox_index_cache.h"
#include "mailbox/mbox_update.h"
#include "mailbox/sigbus_guard.h"
#include "mailbox/wire_stream.h"

namespace popgate::mailbox {
namespace {

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// popa3d sleeps 1 s under the lock when the mtime equals the current second,
// so that any later write moves the (1 s) mtime. Timestamps are now ns, but
// the kernel stamps files from a coarse clock (one tick, a few ms): a write
// in the same tick as the one we indexed would leave mtime unchanged. So,
// still holding the lock, wait until the coarse clock has moved past the
// mtime. Bounded (a future mtime from clock skew must not hang a login).
void WaitPastTimestamp(const struct timespec& mtime) {
  for (int i = 0; i < 1100; ++i) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec > mtime.tv_sec ||
        (now.tv_sec == mtime.tv_sec && now.tv_nsec > mtime.tv_nsec)) {
      return;
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, nullptr);
  }
}

absl::Status OpenError(int err, const std::string& path) {
  switch (err) {
    case ELOOP:
      return absl::FailedPreconditionError(absl::StrCat(path, " is a symlink"));
    default:
      return absl::ErrnoToStatus(err, absl::StrCat("open ", path));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Maildrop>> OpenMbox(const std::string& path,
                                                   const MboxOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<MboxMaildrop> maildrop,
                   MboxMaildrop::Open(path, options));
  return std::unique_ptr<Maildrop>(std::move(maildrop));
}

absl::StatusOr<std::unique_ptr<MboxMaildrop>> MboxMaildrop::Open(
    const std::string& path, const MboxOptions& options) {
  std::unique_ptr<MboxMaildrop> maildrop(new MboxMaildrop(path, options));
  struct stat lst;
  if (::lstat(path.c_str(), &lst) != 0) {
    // Missing: empty, and never created (popa3d).
    if (errno == ENOENT) return maildrop;
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", path));
  }
  if (!S_ISREG(lst.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  RETURN_IF_ERROR(maildrop->Load(lst));
  return maildrop;
}

absl::Status MboxMaildrop::Load(const struct stat& lst) {
  // O_RDWR as popa3d (write access is needed for the update anyway);
  // O_NONBLOCK so a FIFO swapped in after lstat cannot hang the open;
  // O_NOFOLLOW for a symlink swapped in after lstat.
  fd_.reset(::open(path_.c_str(),
                   O_RDWR | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (!fd_.valid()) {
    if (errno == ENOENT) return absl::OkStatus();
    return OpenError(errno, path_);
  }
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path_));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, " is not a regular file"));
  }
  // The fd's owner, not the lstat's: a file swapped in between is judged.
  if (options_.required_owner.has_value() &&
      st.st_uid != *options_.required_owner) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": owned by uid ", st.st_uid, ", expected ",
                     *options_.required_owner));
  }

  if (!options_.redo_dir.empty()) {
    // Only pay for the exclusive lock when a record (or its temp) exists.
    const std::string redo = RedoPath(options_.redo_dir, st.st_dev, st.st_ino);
    struct stat rst;
    if (::stat(redo.c_str(), &rst) == 0 ||
        ::stat((redo + ".tmp").c_str(), &rst) == 0) {
      // Whatever the outcome, the file is consistent afterwards and is
      // indexed below as it now is.
      ASSIGN_OR_RETURN(FcntlLock lock, FcntlLock::Acquire(fd_.get(), true));
      RETURN_IF_ERROR(RepairMbox(fd_.get(), options_.redo_dir).status());
    }
  }

  ASSIGN_OR_RETURN(FcntlLock lock, FcntlLock::Acquire(fd_.get(), false));
  if (::fstat(fd_.get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path_));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return absl::OkStatus();
  if (size > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        path_, ": ", size, " bytes exceed the limit of ", options_.max_bytes));
  }
  ASSIGN_OR_RETURN(mapping_, Mapping::Map(fd_.get(), size));
  // Under the shared lock: no locking writer can be mid-append or
  // mid-rewrite, so the cache sees a consistent file.
  MboxFileKey key;
  key.dev = static_cast<uint64_t>(st.st_dev);
  key.ino = static_cast<uint64_t>(st.st_ino);
  key.size = size;
  key.mtime_sec = static_cast<int64_t>(st.st_mtim.tv_sec);
  key.mtime_nsec = static_cast<int64_t>(st.st_mtim.tv_nsec);
  const std::string cache_dir =
      !options_.index_cache          ? std::string()
      : options_.index_cache_dir.empty() ? options_.redo_dir
                                         : options_.index_cache_dir;
  ASSIGN_OR_RETURN(messages_,
                   IndexWithCache(mapping_.view(), key, cache_dir,
                                  options_.max_messages, nullptr, fd_.get()));
  orig_size_ = size;
  seen_.size = size;
  seen_.mtime = st.st_mtim;
  seen_.dev = st.st_dev;
  seen_.ino = st.st_ino;
  WaitPastTimestamp(st.st_mtim);
  return absl::OkStatus();
}

absl::Status MboxMaildrop::Stale(absl::string_view why) {
  stale_ = true;
  return absl::AbortedError(absl::StrCat(path_, ": ", why));
}

absl::Status MboxMaildrop::CheckForChanges(bool check_path) {
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  // Nothing indexed, nothing to protect (popa3d keeps no fd then either).
  if (messages_.empty()) return absl::OkStatus();
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat("fstat ", path_));
  }
  if (static_cast<uint64_t>(st.st_size) == seen_.size &&
      SameTime(st.st_mtim, seen_.mtime)) {
    // Unchanged through our fd; also make sure the path still names it (a
    // rewrite by rename would otherwise send our deletions to an orphan).
    struct stat lst;
    if (check_path &&
        (::lstat(path_.c_str(), &lst) != 0 || lst.st_dev != seen_.dev ||
         lst.st_ino != seen_.ino)) {
      return Stale("replaced by another file");
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(FcntlLock lock, FcntlLock::Acquire(fd_.get(), false));
  return VerifyLocked();
}

absl::Status MboxMaildrop::VerifyLocked() {
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  if (messages_.empty()) return absl::OkStatus();
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat("fstat ", path_));
  }
  if (static_cast<uint64_t>(st.st_size) < orig_size_) {
    return Stale("truncated by someone else");
  }
  struct stat lst;
  if (::lstat(path_.c_str(), &lst) != 0 || lst.st_dev != seen_.dev ||
      lst.st_ino != seen_.ino) {
    return Stale("replaced by another file");
  }
  if (static_cast<uint64_t>(st.st_size) == seen_.size &&
      SameTime(st.st_mtim, seen_.mtime)) {
    return absl::OkStatus();
  }
  // Changed: our part must parse exactly as before (popa3d compares raw
  // size, LIST size and UIDL; we compare the whole entry, which also keeps
  // the wire-clean flag honest).
  absl::StatusOr<std::vector<MboxMessage>> again =
      IndexMappedMbox(mapping_.view(), options_.max_messages);
  if (!again.ok() || *again != messages_) {
    return Stale("our part of the mailbox was rewritten by someone else");
  }
  seen_.size = static_cast<uint64_t>(st.st_size);
  seen_.mtime = st.st_mtim;
  WaitPastTimestamp(st.st_mtim);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WireStream>> MboxMaildrop::Retrieve(
    size_t index, std::optional<uint64_t> top_lines) {
  if (committed_) return absl::FailedPreconditionError("already committed");
  if (index >= messages_.size()) {
    return absl::InvalidArgumentError("message index out of range");
  }
  // A replaced mailbox path ends the session here, before any of the body
  // goes out (popa3d's "Another MUA active").
  RETURN_IF_ERROR(CheckForChanges(/*check_path=*/true));
  const MboxMessage& m = messages_[index];
  absl::string_view data(mapping_.data() + m.data_offset, m.data_size);
  if (top_lines.has_value()) {
    uint64_t length = data.size();
    const uint64_t lines = *top_lines;
    if (!RunWithSigbusGuard(
            mapping_.data(), mapping_.size(),
            [&length, data, lines] { length = TopLength(data, lines); })) {
      return Stale("truncated by someone else");
    }
    data = data.substr(0, length);
  }
  // The stream always scans (dot-stuffing as it goes) even for a message
  // indexed as wire-clean: the file is not locked while the bytes go out,
  // and an in-place edit that put a "." line into "clean" bytes would let
  // the client see a false end of message. The scan costs little: CR LF
  // runs still go out as single segments of the mapping.
  //
  // No FileBacking, so no sendfile: an mbox is rewritten in place (by
  // another session's update, or an MUA). writev copies the octets when it
  // is called, so the check after the body vouches for what was sent;
  // sendfile lends the kernel page-cache pages that are read again at
  // transmission (and at every retransmission), after that check, and a
  // concurrent rewrite could slip foreign octets in before the final dot.
  // Maildir files are never rewritten, only unlinked.
  return std::unique_ptr<WireStream>(
      new EncodingStream(data, /*wire_clean=*/false, mapping_.view()));
}

absl::Status MboxMaildrop::CheckUnchanged() {
  if (committed_) return absl::FailedPreconditionError("already committed");
  // No path walk after a body: it came from our fd, which a rename over the
  // path does not change, so its final dot is deserved; the next RETR and
  // Commit (under the lock) still see a replaced mailbox. This saves one of
  // the two path walks per RETR (together ~10% of a download's CPU).
  return CheckForChanges(/*check_path=*/false);
}

absl::Status MboxMaildrop::Commit(absl::Span<const size_t> indices) {
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  if (committed_) return absl::FailedPreconditionError("already committed");
  if (indices.empty()) {
    // Nothing deleted: the file is not touched at all (mtime unchanged).
    committed_ = true;
    return absl::OkStatus();
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= messages_.size() ||
        (i > 0 && indices[i] <= indices[i - 1])) {
      return absl::InvalidArgumentError(
          "Commit: indices must be sorted, unique and in range");
    }
  }
  if (options_.redo_dir.empty()) {
    return absl::FailedPreconditionError("no redo_dir for the mbox update");
  }

  ASSIGN_OR_RETURN(FcntlLock lock, FcntlLock::Acquire(fd_.get(), true));
  // Another session's update may have crashed since we opened: finish it
  // first. It changed the file under us, so we give up as popa3d would.
  ASSIGN_OR_RETURN(RepairOutcome outcome,
                   RepairMbox(fd_.get(), options_.redo_dir));
  if (outcome == RepairOutcome::kApplied) {
    return Stale("an interrupted update by another session was completed");
  }
  RETURN_IF_ERROR(VerifyLocked());
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat("fstat ", path_));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  // Raw extents tile [0, orig_size_), so the final bytes from the first
  // deleted message on are the later kept extents plus the appended tail.
  std::vector<Extent> pieces;
  auto add = [&pieces](uint64_t offset, uint64_t length) {
    if (length == 0) return;
    if (!pieces.empty() &&
        pieces.back().offset + pieces.back().length == offset) {
      pieces.back().length += length;
    } else {
      pieces.push_back(Extent{offset, length});
    }
  };
  size_t next_deleted = 0;
  for (size_t i = indices[0]; i < messages_.size(); ++i) {
    if (next_deleted < indices.size() && indices[next_deleted] == i) {
      ++next_deleted;
      continue;
    }
    add(messages_[i].raw_offset, messages_[i].raw_size);
  }
  add(orig_size_, file_size - orig_size_);

  absl::Status status =
      RewriteMbox(fd_.get(), options_.redo_dir,
                  messages_[indices[0]].raw_offset, pieces, file_size);
  // Success or not, this maildrop's view of the file is over: a failure
  // mid-way leaves a redo record that the next open completes.
  committed_ = true;
  // The rewrite moved messages: drop the index cache rather than rely on its
  // fingerprint to notice (a deletion followed by appends can restore the
  // size). Missing is fine; the next open rebuilds it.
  const std::string cache_dir = options_.index_cache_dir.empty()
                                    ? options_.redo_dir
                                    : options_.index_cache_dir;
  ::unlink(IndexCachePath(cache_dir, seen_.dev, seen_.ino).c_str());
  return status;
}

}  // namespace popgate::mailbox
