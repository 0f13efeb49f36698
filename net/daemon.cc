#include "net/daemon.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace popgate::net {

void ProcessStartup() {
  ::umask(077);
  ::signal(SIGPIPE, SIG_IGN);
}

absl::Status Daemonize() {
  if (::chdir("/") != 0) return absl::ErrnoToStatus(errno, "chdir");
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid > 0) ::_exit(0);  // the parent: the shell gets its prompt back
  if (::setsid() < 0) return absl::ErrnoToStatus(errno, "setsid");
  return absl::OkStatus();
}

absl::Time MonotonicNow() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::TimeFromTimespec(ts);
}

}  // namespace popgate::net
