#include "mailbox/cache_file.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace popgate::mailbox {

uint64_t CacheHash(uint64_t h, const char* p, size_t n) {
  h = CacheMix(h, n);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = CacheMix(h, w);
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  if (n > 0) std::memcpy(&w, p, n);  // p may be null when n is 0
  return CacheMix(h, w);
}

absl::Status ReplaceCacheFile(const std::string& path,
                              absl::Span<iovec> parts) {
  const std::string tmp = absl::StrCat(path, ".tmp", ::getpid());
  const int fd = ::open(tmp.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", tmp));
  size_t first = 0;
  int err = 0;
  while (first < parts.size()) {
    const ssize_t n = ::writev(fd, parts.data() + first,
                               static_cast<int>(parts.size() - first));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    size_t left = static_cast<size_t>(n);
    while (first < parts.size() && left >= parts[first].iov_len) {
      left -= parts[first].iov_len;
      ++first;
    }
    if (first < parts.size()) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
      parts[first].iov_len -= left;
    }
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("write ", path));
  }
  return absl::OkStatus();
}

}  // namespace popgate::mailbox
