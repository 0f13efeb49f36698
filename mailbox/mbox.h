// Opening an mbox spool file as a Maildrop (popa3d semantics, reference
// §4.1, §4.6, §4.7, plus a crash-safe update).
//
// Callers: net/'s wiring file, after privileges are dropped to the mailbox
// owner (the open and every write run as that user). Tests and tools.
#ifndef POPGATE_MAILBOX_MBOX_H_
#define POPGATE_MAILBOX_MBOX_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "mailbox/maildrop.h"

namespace popgate::mailbox {

struct MboxOptions {
  // Per-user state folder for redo records ("mbox-<dev>-<ino>.redo"),
  // writable by the session user; created by the privileged caller. Must be
  // on a filesystem that honours fsync and rename. Empty: no repair check
  // at open, and a Commit that deletes anything fails (FailedPrecondition).
  std::string redo_dir;
  // Folder for the index cache ("mbox-<dev>-<ino>.index", see
  // mbox_index_cache.h), writable by the session user. Empty: redo_dir.
  // A re-login then costs O(mail appended since), not O(mailbox).
  std::string index_cache_dir;
  // False: every open scans the whole mailbox (and writes no cache).
  bool index_cache = true;
  // popa3d's MAX_MAILBOX_OPEN_BYTES: a larger file is refused at open
  // (ResourceExhausted). Raising it raises the index-build time and the
  // address space one session maps.
  uint64_t max_bytes = 2147483647;
  // popa3d's MAX_MAILBOX_MESSAGES: more messages are refused
  // (ResourceExhausted). The index costs 64 bytes per message.
  size_t max_messages = 2097152;
  // Set when the opener is not the mailbox owner (--mode=pool: the pool
  // account opens every user's mailbox): the opened file's owner must be
  // this uid, else FailedPrecondition. Checked on the open fd (fstat), so a
  // file swapped in after the lstat is judged, not the one we looked at.
  // Without it a hard link in a user's own mail path to another user's
  // mailbox (which the pool account can open) would serve that mailbox.
  // Unset: no check (the session runs as the user: the kernel decides).
  std::optional<uid_t> required_owner;
};

// Opens the mbox at `path`:
//   - missing (ENOENT) or 0 bytes: an empty maildrop; the file is never
//     created;
//   - a symlink or not a regular file: FailedPrecondition;
//   - not readable and writable by us: PermissionDenied (popa3d needs write
//     access even for read-only use, and so do we);
//   - not owned by options.required_owner (if set): FailedPrecondition;
//   - a pending redo record in options.redo_dir (a crashed update): repaired
//     first, under an exclusive lock;
//   - then indexed under a shared fcntl lock that is released before return
//     (no lock is held between commands, so delivery goes on);
//   - refused mbox contents: DataLoss; limits: ResourceExhausted.
absl::StatusOr<std::unique_ptr<Maildrop>> OpenMbox(const std::string& path,
                                                   const MboxOptions& options);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MBOX_H_
