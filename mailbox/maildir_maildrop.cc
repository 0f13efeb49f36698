#include "mailbox/maildir_maildrop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "mailbox/maildir_name.h"
#include "mailbox/maildir_size_cache.h"
#include "mailbox/sigbus_guard.h"
#include "mailbox/wire_stream.h"

namespace popgate::mailbox {
namespace {

const char* SubdirName(bool in_cur) { return in_cur ? "cur" : "new"; }

// A RETR/TOP body over one mapped message file. Owns the mapping and
// shares the file's fd, so the segments (and the file ranges a sender may
// sendfile) stay valid for the stream's life and the maildrop itself keeps
// nothing mapped between commands.
class MappedMessageStream : public WireStream {
 public:
  MappedMessageStream(Mapping mapping, size_t length,
                      std::shared_ptr<const UniqueFd> fd)
      : mapping_(std::move(mapping)),
        fd_(std::move(fd)),
        // Never wire_clean: the file is not locked while the bytes go out
        // (see MboxMaildrop::Retrieve), so the encoder always scans.
        stream_(mapping_.view().substr(0, length), /*wire_clean=*/false,
                mapping_.view(),
                FileBacking{fd_->get(), mapping_.data(), mapping_.size()}) {}

  absl::StatusOr<bool> Next(size_t max_bytes,
                            std::vector<absl::string_view>* out) override {
    return stream_.Next(max_bytes, out);
  }
  bool PrefersCopy() override { return stream_.PrefersCopy(); }
  absl::StatusOr<bool> NextInto(char* dest, size_t capacity,
                                size_t* written) override {
    return stream_.NextInto(dest, capacity, written);
  }
  FileBacking file_backing() const override { return stream_.file_backing(); }

 private:
  Mapping mapping_;  // Declared first: stream_ points into it.
  std::shared_ptr<const UniqueFd> fd_;
  EncodingStream stream_;
};

// Opens `name` in `dir_fd` read-only, refusing symlinks (O_NOFOLLOW) and
// FIFOs or devices swapped in after the listing (O_NONBLOCK + S_ISREG).
// Returns an invalid fd with errno set on failure (ELOOP for a symlink,
// EINVAL for a non-regular file).
UniqueFd OpenRegular(int dir_fd, const std::string& name, struct stat* st) {
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(),
               O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd.valid()) return fd;
  if (::fstat(fd.get(), st) != 0) {
    const int err = errno;
    fd.reset();
    errno = err;
    return fd;
  }
  if (!S_ISREG(st->st_mode)) {
    fd.reset();
    errno = EINVAL;
  }
  return fd;
}

// Whether the message's last octet is not an LF (RETR then appends CR LF);
// nullopt if it cannot be read.
std::optional<bool> Unterminated(int fd, uint64_t size) {
  if (size == 0) return false;
  char last = 0;
  if (PreadFull(fd, &last, 1, size - 1) != 0) return std::nullopt;
  return last != '\n';
}

// The wire size the name states, if it can stand in for a scan: its S= is
// the file's size, and its W= (Dovecot's: every LF counted as CR LF,
// nothing added for a missing final newline) is a possible encoding of
// that many octets. A W= that lies within those bounds shows in LIST (RETR
// sends the real octets); that is the price of not reading every message
// at every login, and Dovecot pays it too.
std::optional<uint64_t> NamedWireSize(const MaildirName& parsed, int fd,
                                      uint64_t size) {
  if (!parsed.raw_size.has_value() || !parsed.wire_size.has_value() ||
      *parsed.raw_size != size || *parsed.wire_size < size ||
      *parsed.wire_size - size > size) {
    return std::nullopt;
  }
  const std::optional<bool> unterminated = Unterminated(fd, size);
  if (!unterminated.has_value()) return std::nullopt;
  return *parsed.wire_size + (*unterminated ? 2 : 0);
}

// MaildirOptions::required_owner, on an fstat of the opened fd.
absl::Status CheckOwner(const std::string& what, const struct stat& st,
                        uid_t owner) {
  if (st.st_uid == owner) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": owned by uid ", st.st_uid, ", expected ", owner));
}

// Lists the candidate message names of one subdirectory: no dot-files, only
// regular files. d_type answers that without a path lookup per entry (the
// open at login checks S_ISREG again, and O_NOFOLLOW refuses a symlink
// swapped in since); entries of unknown type get an lstat.
absl::Status ListDir(int dir_fd, const std::string& where,
                     std::vector<std::string>* out) {
  // fdopendir takes ownership of its fd; keep ours for openat.
  const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("dup ", where));
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(dup_fd);
    return absl::ErrnoToStatus(err, absl::StrCat("opendir ", where));
  }
  ::rewinddir(dir);
  absl::Status status;
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(dir);
    if (e == nullptr) {
      if (errno != 0) {
        status = absl::ErrnoToStatus(errno, absl::StrCat("readdir ", where));
      }
      break;
    }
    // Dot-files: ".", "..", and the temporaries or metadata some tools keep.
    if (e->d_name[0] == '.') continue;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode)) {
        continue;
      }
    } else if (e->d_type != DT_REG) {
      continue;
    }
    out->emplace_back(e->d_name);
  }
  ::closedir(dir);
  return status;
}

// Device and inode of `name` in `dir_fd` (a symlink's own, never its
// target's); nullopt if it cannot be stat'ed.
std::optional<std::pair<dev_t, ino_t>> FileIdentity(int dir_fd,
                                                    const std::string& name) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return std::nullopt;
  }
  return std::make_pair(st.st_dev, st.st_ino);
}

// A listed message file: new/ entries first, then cur/.
struct Candidate {
  std::string name;
  bool in_cur;
};

// Which of `found` to drop as a file listed twice: a message another client
// moved new/ -> cur/ between the two listings shows under both names (the
// cur/ one is kept). A move keeps the base name, so only bases listed in
// both folders need a look at the inodes.
std::vector<bool> MovedDuringListing(const std::vector<Candidate>& found,
                                     int new_fd, int cur_fd) {
  std::vector<bool> dropped(found.size(), false);
  std::map<absl::string_view, size_t> new_by_base;
  for (size_t i = 0; i < found.size() && !found[i].in_cur; ++i) {
    new_by_base.emplace(ParseMaildirName(found[i].name).base, i);
  }
  for (size_t i = 0; i < found.size() && !new_by_base.empty(); ++i) {
    if (!found[i].in_cur) continue;
    const auto it = new_by_base.find(ParseMaildirName(found[i].name).base);
    if (it == new_by_base.end()) continue;
    const auto in_new = FileIdentity(new_fd, found[it->second].name);
    if (in_new.has_value() && in_new == FileIdentity(cur_fd, found[i].name)) {
      dropped[it->second] = true;
    }
  }
  return dropped;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Maildrop>> OpenMaildir(
    const std::string& path, const MaildirOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<MaildirMaildrop> maildrop,
                   MaildirMaildrop::Open(path, options));
  return std::unique_ptr<Maildrop>(std::move(maildrop));
}

absl::StatusOr<std::unique_ptr<MaildirMaildrop>> MaildirMaildrop::Open(
    const std::string& path, const MaildirOptions& options) {
  std::unique_ptr<MaildirMaildrop> maildrop(new MaildirMaildrop(path, options));
  // The maildir itself may be a symlink (~/Maildir -> /data/...): we run as
  // the mailbox owner here, so following it reaches nothing the user could
  // not read anyway. Messages inside are never followed.
  maildrop->dir_fd_.reset(
      ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!maildrop->dir_fd_.valid()) {
    // Missing: empty, and never created (as a missing mbox).
    if (errno == ENOENT) return maildrop;
    if (errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is not a directory"));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  if (options.required_owner.has_value()) {
    // Before the lock file is created in it: a directory that belongs to
    // someone else gets nothing written by us.
    struct stat st;
    if (::fstat(maildrop->dir_fd_.get(), &st) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path));
    }
    RETURN_IF_ERROR(CheckOwner(path, st, *options.required_owner));
  }
  ASSIGN_OR_RETURN(maildrop->lock_,
                   MaildirLock::Acquire(maildrop->dir_fd_.get(), path,
                                        options.lock_stale_age));
  RETURN_IF_ERROR(maildrop->Scan());
  return maildrop;
}

int MaildirMaildrop::SubdirFd(bool in_cur) {
  UniqueFd& fd = in_cur ? cur_fd_ : new_fd_;
  if (!fd.valid() && dir_fd_.valid()) {
    fd.reset(::openat(dir_fd_.get(), SubdirName(in_cur),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  return fd.get();
}

absl::StatusOr<bool> MaildirMaildrop::ScanWireSize(int fd, uint64_t size,
                                                   const MaildirName& parsed,
                                                   uint64_t* wire_size) {
  ASSIGN_OR_RETURN(Mapping mapping, Mapping::Map(fd, size));
  if (size > 0 &&
      !RunWithSigbusGuard(mapping.data(), mapping.size(),
                          [wire_size, &mapping] {
                            *wire_size = WireSize(mapping.view());
                          })) {
    return false;
  }
  if (size == 0) *wire_size = 0;
  if (parsed.raw_size.has_value() && *parsed.raw_size != size) {
    ++size_field_mismatches_;
  }
  // Dovecot's W= adds nothing for a missing final newline; ours does (RETR
  // appends CR LF there). Either reading of an honest name is accepted.
  if (parsed.wire_size.has_value() && *parsed.wire_size != *wire_size) {
    const std::optional<bool> unterminated = Unterminated(fd, size);
    if (!unterminated.has_value() || !*unterminated ||
        *parsed.wire_size + 2 != *wire_size) {
      ++size_field_mismatches_;
    }
  }
  return true;
}

absl::Status MaildirMaildrop::Scan() {
  std::vector<Candidate> found;
  // new/ before cur/: a message another client moves new/ -> cur/ between
  // the two listings is then seen twice (MovedDuringListing) rather than
  // not at all.
  for (bool in_cur : {false, true}) {
    const int fd = SubdirFd(in_cur);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // No new/ or cur/: nothing there.
      return absl::ErrnoToStatus(
          errno, absl::StrCat("open ", path_, "/", SubdirName(in_cur)));
    }
    std::vector<std::string> names;
    RETURN_IF_ERROR(
        ListDir(fd, absl::StrCat(path_, "/", SubdirName(in_cur)), &names));
    for (std::string& name : names) {
      found.push_back(Candidate{std::move(name), in_cur});
    }
    if (found.size() > options_.max_messages) {
      return absl::ResourceExhaustedError(absl::StrCat(
          path_, ": more than ", options_.max_messages, " messages"));
    }
  }

  const std::vector<bool> dropped =
      MovedDuringListing(found, SubdirFd(false), SubdirFd(true));

  struct stat dir_st;
  std::string cache_path;
  MaildirSizeCache cache;
  if (!options_.cache_dir.empty() && ::fstat(dir_fd_.get(), &dir_st) == 0) {
    cache_path = MaildirSizeCachePath(options_.cache_dir, dir_st.st_dev,
                                      dir_st.st_ino);
    cache = MaildirSizeCache::Load(cache_path, dir_st.st_dev, dir_st.st_ino,
                                   options_.max_messages);
  }
  std::vector<MaildirSizeEntry> sizes;  // The cache as of this listing.

  uint64_t total = 0;
  messages_.reserve(found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    if (dropped[i]) continue;
    const Candidate& c = found[i];
    struct stat st;
    std::optional<uint64_t> cached;
    UniqueFd fd;
    if (!cache.empty()) {
      // An lstat says whether the cached size still holds; no open then.
      if (::fstatat(SubdirFd(c.in_cur), c.name.c_str(), &st,
                    AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode)) {
        continue;
      }
      cached = cache.Find(st);
    }
    if (!cached.has_value()) {
      fd = OpenRegular(SubdirFd(c.in_cur), c.name, &st);
      // Gone, or swapped for a symlink/FIFO since the listing: skip it now;
      // if it reappears it is served next session.
      if (!fd.valid()) continue;
    }
    if (options_.required_owner.has_value()) {
      RETURN_IF_ERROR(CheckOwner(
          absl::StrCat(path_, "/", SubdirName(c.in_cur), "/", c.name), st,
          *options_.required_owner));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    total += size;
    if (total > options_.max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path_, ": messages exceed the limit of ",
                       options_.max_bytes, " bytes"));
    }
    Message m;
    m.name = c.name;
    m.in_cur = c.in_cur;
    m.raw_size = size;
    m.dev = st.st_dev;
    m.ino = st.st_ino;
    const MaildirName parsed = ParseMaildirName(m.name);
    m.base_size = parsed.base.size();
    if (cached.has_value()) {
      m.wire_size = *cached;
      ++size_cache_hits_;
    } else if (std::optional<uint64_t> named =
                   NamedWireSize(parsed, fd.get(), size);
               named.has_value()) {
      m.wire_size = *named;
    } else {
      ASSIGN_OR_RETURN(const bool read,
                       ScanWireSize(fd.get(), size, parsed, &m.wire_size));
      if (!read) continue;  // Truncated while we read it: not a message now.
    }
    if (parsed.seconds.has_value()) {
      m.sort_seconds = *parsed.seconds;
      m.sort_micros = parsed.microseconds.value_or(0);
    } else {
      m.sort_seconds = st.st_mtim.tv_sec;
      m.sort_micros = st.st_mtim.tv_nsec / 1000;
    }
    m.uidl = MaildirUidl(parsed.base);
    if (!cache_path.empty()) {
      sizes.push_back(MaildirSizeEntry::For(st, m.wire_size));
    }
    messages_.push_back(std::move(m));
  }
  // Rewritten when it no longer matches the folder: a size was computed
  // (new mail, a renamed or changed file) or a cached file is gone.
  if (!cache_path.empty() &&
      (size_cache_hits_ != sizes.size() || cache.size() != sizes.size())) {
    WriteMaildirSizeCache(cache_path, dir_st.st_dev, dir_st.st_ino,
                          std::move(sizes))
        .IgnoreError();  // Best effort: a failure costs the reads next time.
  }

  std::sort(messages_.begin(), messages_.end(),
            [](const Message& a, const Message& b) {
              const absl::string_view base_a = a.base();
              const absl::string_view base_b = b.base();
              return std::tie(a.sort_seconds, a.sort_micros, base_a, a.name,
                              a.in_cur) < std::tie(b.sort_seconds,
                                                   b.sort_micros, base_b,
                                                   b.name, b.in_cur);
            });
  // RFC 1939 needs unique UIDLs within a session. Two files with one base
  // name (a broken delivery, or "x:2,S" next to "x:2,RS") are different
  // messages: the later one gets a name that includes its folder.
  std::set<std::string> seen;
  for (Message& m : messages_) {
    if (!seen.insert(m.uidl).second) {
      m.uidl = MaildirUidl(absl::StrCat(SubdirName(m.in_cur), "/", m.name));
      seen.insert(m.uidl);
    }
  }
  return absl::OkStatus();
}

absl::Status MaildirMaildrop::Stale(absl::string_view why) {
  stale_ = true;
  return absl::AbortedError(absl::StrCat(path_, ": ", why));
}

bool MaildirMaildrop::Relocate(Message& m) {
  const absl::string_view base = ParseMaildirName(m.name).base;
  for (bool in_cur : {true, false}) {
    const int fd = SubdirFd(in_cur);
    if (fd < 0) continue;
    std::vector<std::string> names;
    if (!ListDir(fd, path_, &names).ok()) continue;
    for (const std::string& name : names) {
      if (ParseMaildirName(name).base == base &&
          FileIdentity(fd, name) == std::make_pair(m.dev, m.ino)) {
        m.name = name;
        m.in_cur = in_cur;
        return true;
      }
    }
  }
  return false;
}

absl::StatusOr<UniqueFd> MaildirMaildrop::OpenMessage(size_t index) {
  Message& m = messages_[index];
  struct stat st;
  UniqueFd fd = OpenRegular(SubdirFd(m.in_cur), m.name, &st);
  int err = fd.valid() ? 0 : errno;
  if (err == ENOENT && Relocate(m)) {
    fd = OpenRegular(SubdirFd(m.in_cur), m.name, &st);
    err = fd.valid() ? 0 : errno;
  }
  if (!fd.valid()) {
    // Read errno once: Relocate's readdir loop clobbers it.
    if (err == ENOENT || err == 0) {
      return Stale(absl::StrCat(m.name, " vanished"));
    }
    if (err == ELOOP || err == EINVAL) {
      return Stale(absl::StrCat(m.name, " was replaced by a non-file"));
    }
    return absl::ErrnoToStatus(
        err,
        absl::StrCat("open ", path_, "/", SubdirName(m.in_cur), "/", m.name));
  }
  if (st.st_dev != m.dev || st.st_ino != m.ino ||
      static_cast<uint64_t>(st.st_size) != m.raw_size) {
    return Stale(absl::StrCat(m.name, " was changed by someone else"));
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<WireStream>> MaildirMaildrop::Retrieve(
    size_t index, std::optional<uint64_t> top_lines) {
  if (committed_) return absl::FailedPreconditionError("already committed");
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  if (index >= messages_.size()) {
    return absl::InvalidArgumentError("message index out of range");
  }
  lock_.Refresh();
  retrieved_fd_.reset();
  ASSIGN_OR_RETURN(UniqueFd fd, OpenMessage(index));
  const uint64_t size = messages_[index].raw_size;
  ASSIGN_OR_RETURN(Mapping mapping, Mapping::Map(fd.get(), size));
  uint64_t length = size;
  if (top_lines.has_value() && size > 0) {
    const uint64_t lines = *top_lines;
    const absl::string_view data = mapping.view();
    if (!RunWithSigbusGuard(
            mapping.data(), mapping.size(),
            [&length, data, lines] { length = TopLength(data, lines); })) {
      return Stale("message truncated by someone else");
    }
  }
  retrieved_fd_ = std::make_shared<const UniqueFd>(std::move(fd));
  retrieved_size_ = size;
  return std::unique_ptr<WireStream>(
      new MappedMessageStream(std::move(mapping), length, retrieved_fd_));
}

absl::Status MaildirMaildrop::CheckUnchanged() {
  if (committed_) return absl::FailedPreconditionError("already committed");
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  lock_.Refresh();
  if (retrieved_fd_ != nullptr) {
    struct stat st;
    if (::fstat(retrieved_fd_->get(), &st) != 0) {
      return absl::InternalError(absl::StrCat("fstat in ", path_));
    }
    // A shrink inside the last mapped page reads as zeros, not SIGBUS.
    if (static_cast<uint64_t>(st.st_size) != retrieved_size_) {
      return Stale("a message changed while it was sent");
    }
  }
  return absl::OkStatus();
}

absl::Status MaildirMaildrop::Commit(absl::Span<const size_t> indices) {
  if (stale_) return absl::AbortedError(absl::StrCat(path_, " is stale"));
  if (committed_) return absl::FailedPreconditionError("already committed");
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= messages_.size() ||
        (i > 0 && indices[i] <= indices[i - 1])) {
      return absl::InvalidArgumentError(
          "Commit: indices must be sorted, unique and in range");
    }
  }
  committed_ = true;
  retrieved_fd_.reset();
  absl::Status status;
  bool touched[2] = {false, false};
  for (size_t index : indices) {
    Message& m = messages_[index];
    int rc = ::unlinkat(SubdirFd(m.in_cur), m.name.c_str(), 0);
    int err = rc != 0 ? errno : 0;
    if (err == ENOENT) {
      // Renamed since the open (new/ -> cur/, or new flags): find it by
      // unique name and inode. Gone altogether: someone else deleted it,
      // which is what we wanted too.
      if (!Relocate(m)) continue;
      rc = ::unlinkat(SubdirFd(m.in_cur), m.name.c_str(), 0);
      err = rc != 0 ? errno : 0;
      if (err == ENOENT) continue;
    }
    if (rc != 0) {
      // Keep going: each unlink stands alone, and every message we fail to
      // delete is simply still there next time.
      if (status.ok()) {
        status = absl::ErrnoToStatus(
            err, absl::StrCat("unlink ", path_, "/", SubdirName(m.in_cur), "/",
                              m.name));
      }
      continue;
    }
    touched[m.in_cur ? 1 : 0] = true;
  }
  // Make the unlinks durable before we answer +OK to QUIT.
  for (bool in_cur : {false, true}) {
    if (!touched[in_cur ? 1 : 0]) continue;
    if (::fsync(SubdirFd(in_cur)) != 0 && status.ok()) {
      status = absl::ErrnoToStatus(
          errno, absl::StrCat("fsync ", path_, "/", SubdirName(in_cur)));
    }
  }
  return status;
}

}  // namespace popgate::mailbox
