// RAII owners for the kernel resources mailbox/ holds: file descriptors,
// read-only file mappings and fcntl record locks.
//
// Callers: the mbox maildrop and its update path. Threading: none of these
// types is shared between threads; each is owned by one maildrop.
#ifndef POPGATE_MAILBOX_MAPPING_H_
#define POPGATE_MAILBOX_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::mailbox {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A read-only MAP_SHARED mapping of the first `size` bytes of a file;
// munmap on destruction. Move-only. A zero-size mapping owns nothing.
//
// The kernel raises SIGBUS when a mapped page lies wholly beyond the file's
// current end (someone truncated it). Read mapped bytes in user space only
// under RunWithSigbusGuard() (sigbus_guard.h), or after checking the size
// under a lock that every writer honours.
class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  // Maps [0, size) of `fd` read-only. `size` must not exceed the file size
  // (checked by the caller under a lock). Internal on mmap failure.
  static absl::StatusOr<Mapping> Map(int fd, size_t size);

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  absl::string_view view() const { return absl::string_view(data_, size_); }

 private:
  Mapping(const char* data, size_t size) : data_(data), size_(size) {}

  const char* data_ = nullptr;
  size_t size_ = 0;
};

// A whole-file fcntl record lock, compatible with MDAs that lock the spool
// file with fcntl (procmail, Exim, Postfix local). Waits (F_SETLKW) as
// popa3d does; released on destruction. Uses open-file-description locks
// (F_OFD_SETLKW, Linux >= 3.15), which conflict with classic fcntl locks
// across processes exactly as those do, and falls back to classic ones.
class FcntlLock {
 public:
  FcntlLock() = default;
  FcntlLock(FcntlLock&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), ofd_(other.ofd_) {}
  FcntlLock& operator=(FcntlLock&& other) noexcept;
  FcntlLock(const FcntlLock&) = delete;
  FcntlLock& operator=(const FcntlLock&) = delete;
  ~FcntlLock() { Unlock(); }

  // Blocks until the lock is granted. Unavailable on EDEADLK/ENOLCK,
  // Internal otherwise.
  static absl::StatusOr<FcntlLock> Acquire(int fd, bool exclusive);

  void Unlock();

 private:
  FcntlLock(int fd, bool ofd) : fd_(fd), ofd_(ofd) {}
  int fd_ = -1;
  bool ofd_ = true;
};

// Loops over EINTR and short transfers. Return 0 or -errno; a pread that
// hits EOF early returns -ENODATA.
int PreadFull(int fd, char* buf, size_t len, uint64_t offset);
int PwriteFull(int fd, const char* buf, size_t len, uint64_t offset);
int WriteFull(int fd, const char* buf, size_t len);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAPPING_H_
