// Move-only owner of one file descriptor (seastar `file_desc` minus the
// throwing). The destructor closes; close errors are ignored because there
// is nothing useful to do with them for sockets and pipes (POSIX leaves the
// fd state unspecified after EINTR, and Linux always frees it).
#ifndef POPGATE_NET_UNIQUE_FD_H_
#define POPGATE_NET_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace popgate::net {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the current fd (if any) and owns `fd` instead.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_UNIQUE_FD_H_
