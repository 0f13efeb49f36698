// The session process's privilege change: root -> the authenticated user.
//
// Trust: this is the last code in a session that runs as root (with
// session_process.cc's authentication call). After DropPrivileges() succeeds
// the process can never regain root: everything after it, including the
// mailbox parser, runs as the mailbox owner (popa3d pop_root.c does the
// same: setgroups, setgid, setuid, and never uid 0).
#ifndef POPGATE_NET_PRIVILEGES_H_
#define POPGATE_NET_PRIVILEGES_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::net {

// Makes sure <state_dir>/<uid> exists as a directory owned by uid:gid with
// mode 0700 and returns its path. Creates `state_dir` (0711, so users can
// reach only their own subdirectory) if missing. REQUIRES: still privileged
// enough to chown (root), or uid == geteuid().
// FailedPrecondition if either is a symlink or not a directory, or the
// user's directory belongs to someone else (never chown an existing one:
// that would hand a planted directory to its victim); errno statuses
// otherwise.
absl::StatusOr<std::string> PrepareStateDir(absl::string_view state_dir,
                                            uid_t uid, gid_t gid);

// The pre-auth jail (popa3d's POP_CHROOT + POP_USER): chroots into
// <state_dir>/empty (created root-owned and empty if missing), chdir("/"),
// and drops to the unprivileged pre-auth account: "popgate" if it exists,
// else "nobody". The caller then parses AUTHORIZATION input with no file
// system and no privileges, so a parser bug yields an empty jail, not root.
// REQUIRES: root; syslog already opened with LOG_NDELAY (it can't reach
// /dev/log from inside the jail otherwise).
// FailedPrecondition if the jail dir is a symlink, not a directory, not
// root-owned, or not empty; NotFound without a pre-auth account; errno
// statuses for the syscalls.
// `account` names the unprivileged user; empty = "popgate", else "nobody".
absl::Status EnterPreauthJail(absl::string_view state_dir,
                              absl::string_view account);
// The same checks (and directory creation) without entering the jail: for
// startup, so a broken setup fails loudly once instead of every session.
absl::Status CheckPreauthJail(absl::string_view state_dir,
                              absl::string_view account);

// Root: setgroups({gid}), setgid(gid), setuid(uid), then verifies the real
// and effective ids and that setuid(0) now fails. Not root: OK only if uid
// is already ours (developer runs; nothing to change). uid 0 is always
// refused (PermissionDenied): no session ever runs as root.
// Any failure after a partial change is Internal and the caller must exit
// without touching the mailbox.
absl::Status DropPrivileges(uid_t uid, gid_t gid);

}  // namespace popgate::net

#endif  // POPGATE_NET_PRIVILEGES_H_
