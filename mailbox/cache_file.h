// What the on-disk caches (mbox index, Maildir sizes) share: a stable hash
// for their checksums and the atomic replacement of a cache file.
//
// Callers: mailbox/mbox_index_cache.cc, mailbox/maildir_size_cache.cc.
// Threading: pure functions plus file I/O; no shared state.
#ifndef POPGATE_MAILBOX_CACHE_FILE_H_
#define POPGATE_MAILBOX_CACHE_FILE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace popgate::mailbox {

// A fast, stable 64-bit hash (not absl::Hash: that is salted per process).
// It detects corruption and mismatches; it is not a MAC, and needs not be:
// the caches live in the mailbox owner's own state folder (or the pool
// account's), where only someone who could edit the mailbox can write.
inline uint64_t CacheMix(uint64_t h, uint64_t w) {
  h ^= w;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}
uint64_t CacheHash(uint64_t h, const char* p, size_t n);

// Replaces `path` with the concatenation of `parts`: written to a temp file
// beside it (mode 0600, never through a symlink) and renamed over it, so a
// reader sees the old file or the new one, never a torn one (and a torn one
// after a crash fails the reader's checksum). No fsync: losing a cache
// costs one slow login. `parts` is consumed (advanced past what was
// written).
absl::Status ReplaceCacheFile(const std::string& path, absl::Span<iovec> parts);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_CACHE_FILE_H_
