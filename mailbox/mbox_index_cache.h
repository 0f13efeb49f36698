// The mbox index cache: a re-login with an unchanged mailbox loads its index
// from a file, one with appended mail scans only the bytes appended since.
//
// Callers: MboxMaildrop::Load (under the shared fcntl lock, as the mailbox
// owner after the privilege drop), tests and benchmarks.
// Threading: pure functions plus file I/O; no shared state.
//
// The cache is an accelerator, never a source of truth. Whatever the cache
// file holds (garbage, a truncated write, another mailbox's index, a stale
// index of a file rewritten in place), IndexWithCache returns what
// IndexMappedMbox would, or falls back to exactly that call:
//   - the file carries a magic, a version and a checksum of its contents;
//   - it is keyed by (device, inode) in its name and header, and by the
//     indexed size and mtime;
//   - the entries must tile [0, indexed size) and lie inside it;
//   - a fingerprint of the mailbox bytes the cache describes (the first and
//     last 4 KiB of the indexed region and the first 64 octets, i.e. the
//     From_ line and the start of its headers, of the last cached message
//     and of every stride-th one: at least every 8th, about 256 in all)
//     must still match the mapped bytes, and each sampled message must
//     still start at a message boundary.
// Same size and mtime: the cached index is used as is. A larger file with
// the same (device, inode): the cached prefix is kept up to the LAST cached
// message, which is re-scanned together with the appended bytes (its
// boundary and its separating blank line depend on what follows it).
// Anything else: a full scan. What the fingerprint does not sample (the
// middle of a message body edited in place without changing its size while
// the size grew by an append in the same instant) is not detected; the
// fcntl-locking MDA appends and popgate's own update rewrites the tail, so
// such an edit means a non-locking foreign writer, which the session-time
// change detection (CheckUnchanged) does not fully cover either.
#ifndef POPGATE_MAILBOX_MBOX_INDEX_CACHE_H_
#define POPGATE_MAILBOX_MBOX_INDEX_CACHE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mailbox/mbox_index.h"

namespace popgate::mailbox {

// What identifies the indexed file and its state (from fstat under the lock).
struct MboxFileKey {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;  // == the indexed data's size
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
};

// How IndexWithCache got its answer (for tests, benchmarks and logs).
enum class IndexCacheOutcome {
  kDisabled,   // no cache dir: full scan, nothing written
  kHit,        // unchanged mailbox: no scan
  kAppended,   // cached prefix kept, only the tail scanned
  kMiss,       // no usable cache: full scan
};

// "<dir>/mbox-<dev>-<ino>.index".
std::string IndexCachePath(const std::string& dir, uint64_t dev, uint64_t ino);

// Indexes `data` (the whole mapped mbox, key.size bytes) like
// IndexMappedMbox(data, max_messages), using and refreshing the cache file
// in `cache_dir` (empty: no cache). Errors are IndexMappedMbox's (a cache
// problem is never an error: it costs a full scan). A cache that was missing
// or unusable is rewritten atomically (temp file + rename, mode 0600), and
// so is an extended one once the appended bytes outgrow the cache file (or
// 512 KiB): until then the next login re-scans them, which costs less than
// the rewrite; a failure to write it is ignored. `mailbox_fd` (the file
// `data` maps; -1: none) is where the fingerprint samples are read with
// pread, instead of faulting in pages all over the mapping.
// REQUIRES: data.size() == key.size; `data` lies in a mapping (reads are
// SIGBUS-guarded); the caller holds a lock that excludes rewrites.
absl::StatusOr<std::vector<MboxMessage>> IndexWithCache(
    absl::string_view data, const MboxFileKey& key, const std::string& cache_dir,
    size_t max_messages, IndexCacheOutcome* outcome = nullptr,
    int mailbox_fd = -1);

// Writes the cache file for `messages`, the index of `data`. Exposed for
// tests (which forge caches) and benchmarks.
absl::Status WriteIndexCache(const std::string& path, const MboxFileKey& key,
                             absl::string_view data,
                             const std::vector<MboxMessage>& messages);

// Recomputes the checksum at the end of a cache file's bytes, over the
// header and the whole entries that precede it (bytes too short for a
// header and a checksum are left alone). For the fuzz target, which forges
// caches that pass the checksum to reach the checks behind it.
void SealIndexCacheBytes(std::string* bytes);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MBOX_INDEX_CACHE_H_
