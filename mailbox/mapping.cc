#include "mailbox/mapping.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace popgate::mailbox {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    // close() errors on a descriptor we only read or already fsynced carry
    // no information we could act on; EINTR must not be retried on Linux.
    ::close(fd_);
  }
  fd_ = fd;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Mapping::~Mapping() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

absl::StatusOr<Mapping> Mapping::Map(int fd, size_t size) {
  if (size == 0) return Mapping();
  // No MAP_POPULATE: with the index cache a re-login touches only the
  // appended tail and a few sampled pages, and populating a 1 GB mapping
  // costs ~120 ms per login. A full scan pays one fault per 16 pages
  // (fault-around), which is small next to the scan itself.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mmap ", size, " bytes"));
  }
  return Mapping(static_cast<const char*>(p), size);
}

FcntlLock& FcntlLock::operator=(FcntlLock&& other) noexcept {
  if (this != &other) {
    Unlock();
    fd_ = std::exchange(other.fd_, -1);
    ofd_ = other.ofd_;
  }
  return *this;
}

absl::StatusOr<FcntlLock> FcntlLock::Acquire(int fd, bool exclusive) {
  struct flock fl = {};
  fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // Whole file, including bytes appended later.
  fl.l_pid = 0;  // Required for OFD locks.
  // Open-file-description locks conflict with the classic fcntl locks MDAs
  // take, like those do, but belong to our open file, not to the process:
  // two sessions of one mailbox in one worker exclude each other, and
  // closing some other fd of the file does not silently drop our lock.
  int cmd = F_OFD_SETLKW;
  while (::fcntl(fd, cmd, &fl) != 0) {
    if (errno == EINTR) continue;
    if (errno == EINVAL && cmd == F_OFD_SETLKW) {
      cmd = F_SETLKW;  // Pre-3.15 kernel: classic process-owned locks.
      continue;
    }
    int err = errno;
    absl::Status status =
        absl::ErrnoToStatus(err, exclusive ? "fcntl F_WRLCK" : "fcntl F_RDLCK");
    if (err == EDEADLK || err == ENOLCK) {
      return absl::UnavailableError(status.message());
    }
    return absl::InternalError(status.message());
  }
  return FcntlLock(fd, cmd == F_OFD_SETLKW);
}

void FcntlLock::Unlock() {
  if (fd_ < 0) return;
  struct flock fl = {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_pid = 0;
  // Unlocking a lock we hold cannot fail on a valid fd; if it did, closing
  // the fd (which the owner does next) drops it anyway.
  ::fcntl(fd_, ofd_ ? F_OFD_SETLK : F_SETLK, &fl);
  fd_ = -1;
}

int PreadFull(int fd, char* buf, size_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -ENODATA;
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

int PwriteFull(int fd, const char* buf, size_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

int WriteFull(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    buf += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace popgate::mailbox
