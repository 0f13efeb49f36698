#include "net/inherited_fds.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace popgate::net {

void CloseInheritedConnections(int keep_fd) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  // Collect first: closing while reading the directory would change it.
  std::vector<int> fds;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = ::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0') fds.push_back(static_cast<int>(fd));
  }
  const int dir_fd = ::dirfd(dir);
  for (int fd : fds) {
    if (fd == keep_fd || fd == dir_fd) continue;
    int domain = 0;
    socklen_t length = sizeof(domain);
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0) {
      continue;  // not a socket (ENOTSOCK) or already gone
    }
    if (domain == AF_INET || domain == AF_INET6) ::close(fd);
  }
  ::closedir(dir);
}

}  // namespace popgate::net
