// The one-session-per-Maildir lock: a lock file in the maildir, created
// with O_CREAT|O_EXCL (atomic on local filesystems and on NFSv3+), holding
// "<pid> <hostname> <start unix seconds>\n".
//
// Why a file and not fcntl: Maildir lives on shared storage where fcntl
// locks are unreliable or absent, and the lock must exclude sessions on
// other hosts. Why it cannot outlive a dead session forever: a lock whose
// pid is gone on this host, or whose mtime is older than the stale age (the
// holder refreshes it), is broken and taken over.
//
// Callers: MaildirMaildrop, after the privilege drop (runs as the mailbox
// owner, who must be able to create files in the maildir). Single-threaded.
#ifndef POPGATE_MAILBOX_MAILDIR_LOCK_H_
#define POPGATE_MAILBOX_MAILDIR_LOCK_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox/mapping.h"

namespace popgate::mailbox {

inline constexpr char kMaildirLockName[] = "popgate.lock";

class MaildirLock {
 public:
  MaildirLock() = default;
  MaildirLock(MaildirLock&& other) noexcept;
  MaildirLock& operator=(MaildirLock&& other) noexcept;
  MaildirLock(const MaildirLock&) = delete;
  MaildirLock& operator=(const MaildirLock&) = delete;
  ~MaildirLock() { Release(); }

  // Takes <dir_fd>/popgate.lock (`dir_path` is for messages only).
  // A lock held by a live session: Unavailable. A stale one (see the file
  // comment; `stale_age` is measured against the lock's mtime) is renamed
  // away and removed, then the create is retried. Other failures: the
  // errno's code with context (PermissionDenied if we can't create it).
  static absl::StatusOr<MaildirLock> Acquire(int dir_fd,
                                             const std::string& dir_path,
                                             absl::Duration stale_age);

  // Bumps the lock's mtime so a long session is not taken for a dead one.
  // Cheap; errors are ignored (the worst case is a broken lock later).
  void Refresh();

  // Removes the lock file if it is still ours (same inode). Idempotent.
  void Release();

  bool held() const { return fd_.valid(); }

 private:
  MaildirLock(int dir_fd, UniqueFd fd, dev_t dev, ino_t ino)
      : dir_fd_(dir_fd), fd_(std::move(fd)), dev_(dev), ino_(ino) {}

  int dir_fd_ = -1;  // Not owned: the maildrop's directory fd.
  UniqueFd fd_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  absl::Time last_refresh_ = absl::Now();
};

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDIR_LOCK_H_
