// Crash-safe in-place rewrite of an mbox (the UPDATE state), and the repair
// of an interrupted rewrite at the next open.
//
// popa3d compacts in place and corrupts the mailbox if killed mid-way. We
// first write a redo record (the final bytes of the changed region) to a
// side file and fsync it, then rewrite in place from it. A crash at any
// instant leaves either the untouched mailbox, or a redo record that the
// next open re-applies, folding in mail the MDA appended meanwhile.
//
// Record: "<redo_dir>/mbox-<dev>-<ino>.redo" = a 160-byte header
// {magic, version, phase, target offset, file size at commit (under the
// lock), content length, witnesses, dev, ino, SHA-256 over header and
// content} followed by the content: the bytes that belong at
// [target, target + length), i.e. the kept raw extents after the first
// deleted message plus everything beyond the original size.
//
// Witnesses (a refinement of "file size >= recorded size" that the brief
// asked for): after the final ftruncate an MDA may append past the recorded
// size again, so size alone cannot tell "not yet truncated" from "truncated,
// then appended". Before touching the content we therefore write 16 random
// bytes (the witness) at the new end F = target + length, which lies inside
// the region the truncate removes, and fdatasync. Repair re-applies iff a
// witness is still in place; otherwise the rewrite either never started
// (only the witness write could have happened, and it did not land) or
// completed its truncate, and the record is just deleted. Repair writes a
// new record that carries the matching old witness plus a new one, so that
// repair itself is crash-safe.
//
// Callers hold the exclusive fcntl lock on the mailbox for every function
// here. No signal is blocked (popa3d blocks all of them while compacting):
// a SIGTERM or SIGKILL at any instant is just another crash that the record
// repairs. Whether a SIGTERM lets a running Commit finish is the caller's
// choice. Residual risk: a power loss that tears the 16-byte witness write
// across a sector boundary (the same sector-atomicity assumption databases
// make), and filesystems that lie about fsync.
#ifndef POPGATE_MAILBOX_MBOX_UPDATE_H_
#define POPGATE_MAILBOX_MBOX_UPDATE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace popgate::mailbox {

// A byte range of the mailbox file.
struct Extent {
  uint64_t offset;
  uint64_t length;
};

enum class RepairOutcome {
  kNothing,    // No record.
  kDiscarded,  // A record that needed no action (torn, done, or no witness).
  kApplied,    // An interrupted rewrite was completed: the file changed.
};

// Completes or discards an interrupted rewrite of `mailbox_fd` recorded in
// `redo_dir`. REQUIRES: the exclusive lock on the mailbox.
// DataLoss if the mailbox was shrunk by someone else while a live record
// exists (both files are left alone for an admin).
absl::StatusOr<RepairOutcome> RepairMbox(int mailbox_fd,
                                         const std::string& redo_dir);

// Rewrites [target, EOF) of `mailbox_fd` to the concatenation of `pieces`
// (mailbox ranges in increasing order, each >= target, covering everything
// kept after target including mail beyond the original size).
// `file_size` is the current size (under the lock).
// REQUIRES: the exclusive lock; the caller verified nobody rewrote the file.
absl::Status RewriteMbox(int mailbox_fd, const std::string& redo_dir,
                         uint64_t target, absl::Span<const Extent> pieces,
                         uint64_t file_size);

// The record's path for a mailbox (dev, ino).
std::string RedoPath(const std::string& redo_dir, uint64_t dev, uint64_t ino);

// Crash points, in order, passed to the test hook. kChunk repeats once per
// copied chunk.
enum UpdateStep : int {
  kStepRedoChunk = 1,   // A chunk of a redo record's content is written.
  kStepRedoWritten,     // Temp record complete and fsynced.
  kStepRedoRenamed,     // Record renamed into place (not yet dir-synced).
  kStepRedoDurable,     // Directory fsynced.
  kStepWitnessWritten,  // Witness bytes written to the mailbox.
  kStepWitnessSynced,   // ... and fdatasynced.
  kStepContentChunk,    // A chunk of content copied into the mailbox.
  kStepContentSynced,   // All content written and fdatasynced.
  kStepTruncated,       // ftruncate done.
  kStepMailboxSynced,   // fsync after the truncate.
  kStepMarkedDone,      // phase=done written and synced.
  kStepUnlinked,        // Record removed.
};

// Test hook: `hook(step)` runs at every crash point (a test may _exit()
// there); `chunk_bytes` (0 = default 1 MiB) sets the copy chunk so that a
// test can crash between small chunks. Process-wide; not thread-safe.
void SetUpdateHooksForTest(std::function<void(int step)> hook,
                           size_t chunk_bytes);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MBOX_UPDATE_H_
