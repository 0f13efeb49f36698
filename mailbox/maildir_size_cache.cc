#include "mailbox/maildir_size_cache.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "mailbox/cache_file.h"
#include "mailbox/mapping.h"

namespace popgate::mailbox {
namespace {

// File layout (native byte order: the cache never leaves this host):
//   Header | count x MaildirSizeEntry (40 octets each) | uint64 checksum
// The checksum covers everything before it.
constexpr char kMagic[8] = {'P', 'G', 'M', 'D', 'S', 'I', 'Z', 'E'};
constexpr uint64_t kVersion = 1 | (uint64_t{sizeof(MaildirSizeEntry)} << 32);

struct Header {
  char magic[8];
  uint64_t version;
  uint64_t dir_dev;
  uint64_t dir_ino;
  uint64_t count;
};
static_assert(sizeof(Header) == 40, "no padding in the file header");
static_assert(sizeof(MaildirSizeEntry) == 40, "no padding in an entry");

uint64_t FileBytes(uint64_t count) {
  return sizeof(Header) + count * sizeof(MaildirSizeEntry) + sizeof(uint64_t);
}

// The wire form of `size` octets: every LF may gain a CR (at most doubling
// it) and an unterminated message gains CR LF.
bool PlausibleWireSize(const MaildirSizeEntry& e) {
  return e.wire_size >= e.size && e.wire_size - e.size <= e.size + 2;
}

}  // namespace

MaildirSizeEntry MaildirSizeEntry::For(const struct stat& st,
                                       uint64_t wire_size) {
  MaildirSizeEntry e;
  e.ino = static_cast<uint64_t>(st.st_ino);
  e.size = static_cast<uint64_t>(st.st_size);
  e.ctime_sec = st.st_ctim.tv_sec;
  e.ctime_nsec = st.st_ctim.tv_nsec;
  e.wire_size = wire_size;
  return e;
}

MaildirSizeCache MaildirSizeCache::Parse(absl::string_view bytes,
                                         uint64_t dir_dev, uint64_t dir_ino,
                                         size_t max_entries) {
  MaildirSizeCache cache;
  Header h;
  if (bytes.size() < FileBytes(0)) return cache;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0 ||
      h.version != kVersion || h.dir_dev != dir_dev || h.dir_ino != dir_ino ||
      h.count > max_entries || bytes.size() != FileBytes(h.count)) {
    return cache;
  }
  const size_t body = bytes.size() - sizeof(uint64_t);
  uint64_t checksum;
  std::memcpy(&checksum, bytes.data() + body, sizeof(checksum));
  if (CacheHash(0, bytes.data(), body) != checksum) return cache;
  if (h.count == 0) return cache;
  std::vector<MaildirSizeEntry> entries(h.count);
  std::memcpy(entries.data(), bytes.data() + sizeof(h),
              h.count * sizeof(MaildirSizeEntry));
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!PlausibleWireSize(entries[i]) ||
        (i > 0 && entries[i].ino <= entries[i - 1].ino)) {
      return cache;
    }
  }
  cache.entries_ = std::move(entries);
  return cache;
}

MaildirSizeCache MaildirSizeCache::Load(const std::string& path,
                                        uint64_t dir_dev, uint64_t dir_ino,
                                        size_t max_entries) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return MaildirSizeCache();
  std::string bytes;
  struct stat st;
  // The size bound keeps a huge or growing file from costing more than the
  // largest cache this Maildir can have.
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) <= FileBytes(max_entries)) {
    bytes.resize(static_cast<size_t>(st.st_size));
    if (PreadFull(fd, bytes.data(), bytes.size(), 0) != 0) bytes.clear();
  }
  ::close(fd);
  return Parse(bytes, dir_dev, dir_ino, max_entries);
}

std::optional<uint64_t> MaildirSizeCache::Find(const struct stat& st) const {
  const uint64_t ino = static_cast<uint64_t>(st.st_ino);
  const auto it = std::lower_bound(
      entries_.begin(), entries_.end(), ino,
      [](const MaildirSizeEntry& e, uint64_t i) { return e.ino < i; });
  if (it == entries_.end() || it->ino != ino ||
      it->size != static_cast<uint64_t>(st.st_size) ||
      it->ctime_sec != st.st_ctim.tv_sec ||
      it->ctime_nsec != st.st_ctim.tv_nsec) {
    return std::nullopt;
  }
  return it->wire_size;
}

std::string MaildirSizeCachePath(const std::string& dir, uint64_t dir_dev,
                                 uint64_t dir_ino) {
  return absl::StrCat(dir, "/maildir-", dir_dev, "-", dir_ino, ".sizes");
}

std::string SerializeMaildirSizeCache(uint64_t dir_dev, uint64_t dir_ino,
                                      std::vector<MaildirSizeEntry> entries) {
  // Sorted for Find's binary search; a hard link listed twice is one file.
  std::sort(entries.begin(), entries.end(),
            [](const MaildirSizeEntry& a, const MaildirSizeEntry& b) {
              return a.ino < b.ino;
            });
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const MaildirSizeEntry& a,
                               const MaildirSizeEntry& b) {
                              return a.ino == b.ino;
                            }),
                entries.end());
  Header h;
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.dir_dev = dir_dev;
  h.dir_ino = dir_ino;
  h.count = entries.size();
  std::string bytes(FileBytes(h.count), '\0');
  std::memcpy(bytes.data(), &h, sizeof(h));
  if (!entries.empty()) {  // data() may be null, which memcpy must not get
    std::memcpy(bytes.data() + sizeof(h), entries.data(),
                entries.size() * sizeof(MaildirSizeEntry));
  }
  const size_t body = bytes.size() - sizeof(uint64_t);
  const uint64_t checksum = CacheHash(0, bytes.data(), body);
  std::memcpy(bytes.data() + body, &checksum, sizeof(checksum));
  return bytes;
}

absl::Status WriteMaildirSizeCache(const std::string& path, uint64_t dir_dev,
                                   uint64_t dir_ino,
                                   std::vector<MaildirSizeEntry> entries) {
  std::string bytes =
      SerializeMaildirSizeCache(dir_dev, dir_ino, std::move(entries));
  iovec part = {bytes.data(), bytes.size()};
  return ReplaceCacheFile(path, absl::MakeSpan(&part, 1));
}

}  // namespace popgate::mailbox
