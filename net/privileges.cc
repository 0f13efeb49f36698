#include "net/privileges.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "net/unique_fd.h"

namespace popgate::net {
namespace {

// Opens a directory without following a final symlink.
absl::StatusOr<UniqueFd> OpenDirNoFollow(int dir_fd, const std::string& name,
                                         const std::string& display) {
  UniqueFd fd(::openat(dir_fd, name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat(display, ": not a directory (or a symlink)"));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("open ", display));
  }
  return fd;
}

// Creates --state_dir if missing (0711: sessions must traverse it) and
// returns it. InvalidArgument for a relative path.
absl::StatusOr<std::string> EnsureStateBase(absl::string_view state_dir) {
  std::string base(state_dir);
  if (base.empty() || base.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("state dir must be absolute: ", base));
  }
  if (::mkdir(base.c_str(), 0711) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", base));
  }
  return base;
}

// Creates <base>/<name> owned by uid:gid, mode 0700, atomically: an
// existing entry (another session won the race) is success, left as it is.
absl::Status PublishUserDir(int base_fd, const std::string& name, uid_t uid,
                            gid_t gid) {
  const std::string temp = absl::StrCat(".new.", name, ".", ::getpid());
  if (::mkdirat(base_fd, temp.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", temp));
  }
  auto made = OpenDirNoFollow(base_fd, temp, temp);
  absl::Status status = made.status();
  if (status.ok() && ::fchown(made->get(), uid, gid) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("chown ", temp));
  }
  if (status.ok() && ::renameat2(base_fd, temp.c_str(), base_fd, name.c_str(),
                                 RENAME_NOREPLACE) == 0) {
    return absl::OkStatus();
  }
  if (status.ok() && errno != EEXIST) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("rename ", temp));
  }
  ::unlinkat(base_fd, temp.c_str(), AT_REMOVEDIR);
  return status;
}

}  // namespace

absl::StatusOr<std::string> PrepareStateDir(absl::string_view state_dir,
                                            uid_t uid, gid_t gid) {
  absl::StatusOr<std::string> ensured = EnsureStateBase(state_dir);
  if (!ensured.ok()) return ensured.status();
  const std::string& base = *ensured;
  auto base_fd = OpenDirNoFollow(AT_FDCWD, base, base);
  if (!base_fd.ok()) return base_fd.status();
  // The session reaches <state_dir>/<uid> after dropping to the user, so
  // others need search (x) permission on the base; mkdir's mode was cut by
  // our umask 077. Only a directory we own is adjusted.
  struct stat base_st {};
  if (::fstat(base_fd->get(), &base_st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", base));
  }
  if (base_st.st_uid == ::geteuid() && (base_st.st_mode & 0711) != 0711 &&
      ::fchmod(base_fd->get(), (base_st.st_mode & 07777) | 0711) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("chmod ", base));
  }

  const std::string name = absl::StrCat(uid);
  const std::string path = absl::StrCat(base, "/", name);
  // Concurrent first logins of one user race here. The directory is built
  // under a private name, handed to the user and only then published with
  // RENAME_NOREPLACE, so nobody can observe it half-made (root-owned); the
  // loser of the race removes its copy and uses the winner's. The fds and
  // *at() calls leave no window for a path swap to redirect the chown.
  if (::faccessat(base_fd->get(), name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) !=
      0) {
    absl::Status published = PublishUserDir(base_fd->get(), name, uid, gid);
    if (!published.ok()) return published;
  }
  auto dir = OpenDirNoFollow(base_fd->get(), name, path);
  if (!dir.ok()) return dir.status();
  struct stat st {};
  if (::fstat(dir->get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path));
  }
  if (st.st_uid != uid) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": owned by uid ", st.st_uid, ", expected ", uid));
  }
  if ((st.st_mode & 077) != 0 && ::fchmod(dir->get(), 0700) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("chmod ", path));
  }
  return path;
}

namespace {

struct PreauthJail {
  UniqueFd dir;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Everything EnterPreauthJail() needs, checked without entering it.
absl::StatusOr<PreauthJail> OpenPreauthJail(absl::string_view state_dir,
                                            absl::string_view account) {
  // Look the account up before the chroot: /etc/passwd is gone after it.
  // popa3d uses POP_USER ("popa3d"); an explicit --preauth_user must exist.
  const passwd* pw = nullptr;
  if (account.empty()) {
    pw = ::getpwnam("popgate");
    if (pw == nullptr) pw = ::getpwnam("nobody");
    if (pw == nullptr) {
      return absl::NotFoundError("no pre-auth account (popgate or nobody)");
    }
  } else {
    pw = ::getpwnam(std::string(account).c_str());
    if (pw == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("--preauth_user: no such account: ", account));
    }
  }
  PreauthJail jail;
  jail.uid = pw->pw_uid;
  jail.gid = pw->pw_gid;
  if (jail.uid == 0) {
    return absl::FailedPreconditionError("pre-auth account is root");
  }
  absl::StatusOr<std::string> ensured = EnsureStateBase(state_dir);
  if (!ensured.ok()) return ensured.status();
  const std::string& base = *ensured;
  const std::string path = base + "/empty";
  if (::mkdir(path.c_str(), 0711) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", path));
  }
  auto fd = OpenDirNoFollow(AT_FDCWD, path, path);
  if (!fd.ok()) return fd.status();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path));
  }
  if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": must be owned by root and not writable by others"));
  }
  // Empty, as popa3d requires of POP_CHROOT: nothing in the jail to use.
  DIR* dir = ::fdopendir(::dup(fd->get()));
  if (dir == nullptr) return absl::ErrnoToStatus(errno, "fdopendir");
  int entries = 0;
  while (::readdir(dir) != nullptr) {
    if (++entries > 2) break;  // bounded: "." and ".." only
  }
  ::closedir(dir);
  if (entries > 2) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": not empty"));
  }
  jail.dir = std::move(*fd);
  return jail;
}

}  // namespace

absl::Status CheckPreauthJail(absl::string_view state_dir,
                              absl::string_view account) {
  return OpenPreauthJail(state_dir, account).status();
}

absl::Status EnterPreauthJail(absl::string_view state_dir,
                              absl::string_view account) {
  absl::StatusOr<PreauthJail> jail = OpenPreauthJail(state_dir, account);
  if (!jail.ok()) return jail.status();
  ::tzset();  // before the chroot hides /etc/localtime
  if (::fchdir(jail->dir.get()) != 0)
    return absl::ErrnoToStatus(errno, "fchdir");
  if (::chroot(".") != 0) return absl::ErrnoToStatus(errno, "chroot");
  if (::chdir("/") != 0) return absl::ErrnoToStatus(errno, "chdir");
  jail->dir.Reset();  // no directory fd may survive into the jail
  return DropPrivileges(jail->uid, jail->gid);
}

absl::Status DropPrivileges(uid_t uid, gid_t gid) {
  if (uid == 0) {
    return absl::PermissionDeniedError("refusing to serve uid 0");
  }
  if (::geteuid() != 0) {
    // Developer mode: we can only ever be ourselves.
    if (::getuid() == uid && ::geteuid() == uid) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("not root: cannot become uid ", uid, " (running as ",
                     ::geteuid(), ")"));
  }
  // Order matters: groups and gid first, while we still have the right to
  // change them; after setuid() we could not.
  if (::setgroups(1, &gid) != 0) return absl::ErrnoToStatus(errno, "setgroups");
  if (::setgid(gid) != 0) return absl::ErrnoToStatus(errno, "setgid");
  if (::setuid(uid) != 0) return absl::ErrnoToStatus(errno, "setuid");
  // Belt and braces: setuid() as root sets real, effective and saved ids;
  // check that it did and that the way back is closed.
  if (::getuid() != uid || ::geteuid() != uid || ::getgid() != gid ||
      ::getegid() != gid) {
    return absl::InternalError("privilege drop left unexpected ids");
  }
  if (::setuid(0) == 0) {
    return absl::InternalError("setuid(0) succeeded after the drop");
  }
  return absl::OkStatus();
}

}  // namespace popgate::net
