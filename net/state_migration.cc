#include "net/state_migration.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>  // renameat2
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "net/privileges.h"
#include "net/unique_fd.h"

namespace popgate::net {
namespace {

using core::Severity;

UniqueFd OpenDir(int at, const char* name) {
  return UniqueFd(::openat(at, name,
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Calls `fn(name)` for each entry of the directory `dir_fd` (not consumed).
void ForEachEntry(int dir_fd, const std::function<void(const char*)>& fn) {
  UniqueFd copy(::dup(dir_fd));
  if (!copy) return;
  DIR* dir = ::fdopendir(copy.get());
  if (dir == nullptr) return;
  copy.Release();  // closedir closes it
  // The dup shares the file offset with dir_fd: a previous walk left it at
  // the end.
  ::rewinddir(dir);
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
  }
  ::closedir(dir);
  for (const std::string& name : names) fn(name.c_str());
}

bool IsUidName(const char* name, uid_t* uid) {
  uint32_t value = 0;
  if (!absl::SimpleAtoi(name, &value) || absl::StrCat(value) != name) {
    return false;
  }
  *uid = value;
  return true;
}

bool IsRedoRecord(const char* name) {
  return absl::StartsWith(name, "mbox-") && absl::EndsWith(name, ".redo");
}

// Moves every redo record of `from_fd` into `to_fd`, chowned to owner. A
// record already present in the target is left alone (never overwritten).
int MoveRecords(int from_fd, int to_fd, uid_t owner, gid_t group,
                const std::string& from_path, const std::string& to_path) {
  int moved = 0;
  ForEachEntry(from_fd, [&](const char* name) {
    if (!IsRedoRecord(name)) return;
    UniqueFd file(::openat(from_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!file || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    if (::fchown(file.get(), owner, group) != 0 ||
        ::renameat2(from_fd, name, to_fd, name, RENAME_NOREPLACE) != 0) {
      core::Logf(Severity::kCrit, "Cannot move redo record %s/%s to %s: %s",
                 from_path, name, to_path, strerror(errno));
      return;
    }
    ::fsync(to_fd);
    core::Logf(Severity::kNotice,
               "Moved pending redo record %s/%s to %s (mode changed after a "
               "crash; the next login repairs the mailbox)",
               from_path, name, to_path);
    ++moved;
  });
  return moved;
}

gid_t PrimaryGroupOf(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? pw->pw_gid : static_cast<gid_t>(uid);
}

}  // namespace

int AdoptRedoRecords(const std::string& state_dir,
                     std::optional<PoolAccountIds> pool) {
  if (::geteuid() != 0) return 0;
  UniqueFd base = OpenDir(AT_FDCWD, state_dir.c_str());
  if (!base) return 0;  // nothing yet: nothing to adopt
  int moved = 0;
  if (pool) {
    // Fork layout -> <state_dir>/<pool uid>/<uid>/.
    ForEachEntry(base.get(), [&](const char* name) {
      uid_t uid = 0;
      if (!IsUidName(name, &uid) || uid == pool->uid || uid == 0) return;
      UniqueFd from = OpenDir(base.get(), name);
      if (!from) return;
      bool has_record = false;
      ForEachEntry(from.get(), [&](const char* f) { has_record |= IsRedoRecord(f); });
      if (!has_record) return;
      absl::StatusOr<std::string> pool_dir =
          PrepareStateDir(state_dir, pool->uid, pool->gid);
      if (!pool_dir.ok()) return;
      UniqueFd pool_fd = OpenDir(AT_FDCWD, pool_dir->c_str());
      if (!pool_fd) return;
      if (::mkdirat(pool_fd.get(), name, 0700) != 0 && errno != EEXIST) return;
      UniqueFd to = OpenDir(pool_fd.get(), name);
      struct stat st {};
      if (!to || ::fstat(to.get(), &st) != 0 ||
          (st.st_uid != pool->uid &&
           ::fchown(to.get(), pool->uid, pool->gid) != 0)) {
        return;
      }
      moved += MoveRecords(from.get(), to.get(), pool->uid, pool->gid,
                           absl::StrCat(state_dir, "/", name),
                           absl::StrCat(*pool_dir, "/", name));
    });
    return moved;
  }
  // Pool layout <state_dir>/<pool uid>/<uid>/ -> <state_dir>/<uid>/.
  ForEachEntry(base.get(), [&](const char* pool_name) {
    uid_t ignored = 0;
    if (!IsUidName(pool_name, &ignored)) return;
    UniqueFd pool_fd = OpenDir(base.get(), pool_name);
    if (!pool_fd) return;
    ForEachEntry(pool_fd.get(), [&](const char* name) {
      uid_t uid = 0;
      if (!IsUidName(name, &uid) || uid == 0) return;
      UniqueFd from = OpenDir(pool_fd.get(), name);
      if (!from) return;  // a file: the fork layout's own records
      bool has_record = false;
      ForEachEntry(from.get(), [&](const char* f) { has_record |= IsRedoRecord(f); });
      if (!has_record) return;
      const gid_t gid = PrimaryGroupOf(uid);
      absl::StatusOr<std::string> user_dir = PrepareStateDir(state_dir, uid, gid);
      if (!user_dir.ok()) {
        core::Logf(Severity::kCrit, "Redo records for uid %d: %s", uid,
                   user_dir.status().ToString());
        return;
      }
      UniqueFd to = OpenDir(AT_FDCWD, user_dir->c_str());
      if (!to) return;
      moved += MoveRecords(from.get(), to.get(), uid, gid,
                           absl::StrCat(state_dir, "/", pool_name, "/", name),
                           *user_dir);
    });
  });
  return moved;
}

}  // namespace popgate::net
