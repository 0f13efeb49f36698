// The Maildir size cache: a re-login reads no message file whose size it
// knows, so a login costs a listing, one lstat per message and O(new mail)
// reads. Without it, every login opens every file (for the last octet that
// makes a ,W= size exact) or reads it whole (names without ,S=/,W=, as
// Postfix's local and virtual agents deliver them).
//
// Callers: MaildirMaildrop::Scan (as the mailbox owner, under the Maildir's
// lock file), tests, the fuzz target.
// Threading: pure functions plus file I/O; no shared state.
//
// One file per Maildir, "<cache dir>/maildir-<dev>-<ino>.sizes" after the
// Maildir directory's device and inode, holding per message file its inode,
// size and ctime and the wire size computed from it. An entry is used only
// while the file's inode, size and ctime (nanoseconds; the kernel sets it on
// every write, rename or chmod and no user can set it back) are what they
// were when the size was computed; anything else, or a file that fails its
// magic, version, directory key, checksum or bounds, is a miss that costs
// exactly the read that happens without a cache. The checksum is not a
// MAC: whoever can write the cache folder can make LIST sizes lie (as a
// lying ,W= in a name can), but that is the mailbox owner (fork mode) or
// the pool account, never another user.
#ifndef POPGATE_MAILBOX_MAILDIR_SIZE_CACHE_H_
#define POPGATE_MAILBOX_MAILDIR_SIZE_CACHE_H_

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace popgate::mailbox {

struct MaildirSizeEntry {
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t ctime_sec = 0;
  int64_t ctime_nsec = 0;
  uint64_t wire_size = 0;  // What LIST shows for the file (maildir.h).

  // The entry for a file with this stat and computed wire size.
  static MaildirSizeEntry For(const struct stat& st, uint64_t wire_size);
};

class MaildirSizeCache {
 public:
  MaildirSizeCache() = default;

  // The cache in `bytes` (a whole cache file) for the Maildir directory
  // (dir_dev, dir_ino); empty if the bytes are not a valid cache for it or
  // hold more than max_entries entries.
  static MaildirSizeCache Parse(absl::string_view bytes, uint64_t dir_dev,
                                uint64_t dir_ino, size_t max_entries);
  // Parse() of the file at `path`; empty if missing or unreadable.
  static MaildirSizeCache Load(const std::string& path, uint64_t dir_dev,
                               uint64_t dir_ino, size_t max_entries);

  // The wire size cached for the file `st` describes, if its entry still
  // matches it (inode, size and ctime).
  std::optional<uint64_t> Find(const struct stat& st) const;

  // Sorted by inode, unique, every wire size a possible encoding of its size.
  const std::vector<MaildirSizeEntry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<MaildirSizeEntry> entries_;  // Sorted by inode, unique.
};

// "<dir>/maildir-<dev>-<ino>.sizes".
std::string MaildirSizeCachePath(const std::string& dir, uint64_t dir_dev,
                                 uint64_t dir_ino);

// The bytes of a cache file holding `entries` (any order; one entry per
// inode is kept) for the Maildir directory (dir_dev, dir_ino).
std::string SerializeMaildirSizeCache(uint64_t dir_dev, uint64_t dir_ino,
                                      std::vector<MaildirSizeEntry> entries);

// Replaces the cache file at `path` with SerializeMaildirSizeCache's bytes
// (cache_file.h: temp + rename, mode 0600).
absl::Status WriteMaildirSizeCache(const std::string& path, uint64_t dir_dev,
                                   uint64_t dir_ino,
                                   std::vector<MaildirSizeEntry> entries);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDIR_SIZE_CACHE_H_
