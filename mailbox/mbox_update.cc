#include "mailbox/mbox_update.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "mailbox/mapping.h"

namespace popgate::mailbox {
namespace {

// ---- Test hooks ------------------------------------------------------------

std::function<void(int)>& Hook() {
  static auto* hook = new std::function<void(int)>();
  return *hook;
}
size_t g_chunk_bytes = 0;

void CrashPoint(UpdateStep step) {
  if (Hook()) Hook()(step);
}

// 1 MiB: large enough that per-syscall cost vanishes next to the copy, small
// enough not to matter for a session's memory.
size_t ChunkBytes() { return g_chunk_bytes != 0 ? g_chunk_bytes : 1 << 20; }

// ---- Record format ---------------------------------------------------------
//
// Host byte order: a record never leaves the machine that wrote it.

constexpr char kMagic[8] = {'P', 'G', 'R', 'E', 'D', 'O', '\0', '\1'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kPhasePending = 0;
constexpr uint32_t kPhaseDone = 1;
constexpr size_t kHeaderSize = 160;
constexpr size_t kPhaseOffset = 12;
constexpr size_t kChecksumOffset = 128;
constexpr size_t kWitnessBytes = 16;
constexpr int kMaxWitnesses = 2;

struct Witness {
  uint64_t offset = 0;
  uint32_t length = 0;
  unsigned char bytes[kWitnessBytes] = {};
};

struct RedoHeader {
  uint32_t phase = kPhasePending;
  uint64_t target = 0;
  uint64_t orig_size = 0;
  uint64_t content_length = 0;
  uint32_t witness_count = 0;
  Witness witnesses[kMaxWitnesses];
  uint64_t dev = 0;
  uint64_t ino = 0;
  unsigned char checksum[32] = {};
};

template <typename T>
void Put(unsigned char* buf, size_t offset, T value) {
  std::memcpy(buf + offset, &value, sizeof(T));
}
template <typename T>
T Get(const unsigned char* buf, size_t offset) {
  T value;
  std::memcpy(&value, buf + offset, sizeof(T));
  return value;
}

// Serialises everything but the checksum; phase is written as `phase`.
void Encode(const RedoHeader& h, uint32_t phase, unsigned char* buf) {
  std::memset(buf, 0, kHeaderSize);
  std::memcpy(buf, kMagic, sizeof(kMagic));
  Put<uint32_t>(buf, 8, kVersion);
  Put<uint32_t>(buf, kPhaseOffset, phase);
  Put<uint64_t>(buf, 16, h.target);
  Put<uint64_t>(buf, 24, h.orig_size);
  Put<uint64_t>(buf, 32, h.content_length);
  Put<uint32_t>(buf, 40, h.witness_count);
  for (int i = 0; i < kMaxWitnesses; ++i) {
    const size_t base = 48 + 32 * i;
    Put<uint64_t>(buf, base, h.witnesses[i].offset);
    Put<uint32_t>(buf, base + 8, h.witnesses[i].length);
    std::memcpy(buf + base + 16, h.witnesses[i].bytes, kWitnessBytes);
  }
  Put<uint64_t>(buf, 112, h.dev);
  Put<uint64_t>(buf, 120, h.ino);
}

bool Decode(const unsigned char* buf, RedoHeader* h) {
  if (std::memcmp(buf, kMagic, sizeof(kMagic)) != 0) return false;
  if (Get<uint32_t>(buf, 8) != kVersion) return false;
  h->phase = Get<uint32_t>(buf, kPhaseOffset);
  h->target = Get<uint64_t>(buf, 16);
  h->orig_size = Get<uint64_t>(buf, 24);
  h->content_length = Get<uint64_t>(buf, 32);
  h->witness_count = Get<uint32_t>(buf, 40);
  if (h->witness_count < 1 || h->witness_count > kMaxWitnesses) return false;
  for (int i = 0; i < kMaxWitnesses; ++i) {
    const size_t base = 48 + 32 * i;
    h->witnesses[i].offset = Get<uint64_t>(buf, base);
    h->witnesses[i].length = Get<uint32_t>(buf, base + 8);
    if (h->witnesses[i].length > kWitnessBytes) return false;
    std::memcpy(h->witnesses[i].bytes, buf + base + 16, kWitnessBytes);
  }
  h->dev = Get<uint64_t>(buf, 112);
  h->ino = Get<uint64_t>(buf, 120);
  std::memcpy(h->checksum, buf + kChecksumOffset, sizeof(h->checksum));
  return true;
}

// SHA-256 (hardware-accelerated on current x86 and ARM): the record guards
// against torn and half-written files, not against an attacker.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr ||
        EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      std::abort();  // ENOMEM or a broken libcrypto: log-and-exit class.
    }
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  void Final(unsigned char* out) {
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, out, &len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

absl::Status Errno(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

absl::Status FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, absl::StrCat("open ", dir));
  if (::fsync(fd.get()) != 0) return Errno(errno, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

// A source range for record content: `length` bytes of `fd` at `offset`.
struct Piece {
  int fd;
  uint64_t offset;
  uint64_t length;
};

// Writes header + content to `path`.tmp, fsyncs, renames over `path`,
// fsyncs the directory. The witnesses in `h` must be set; the checksum is
// computed here.
absl::Status WriteRecord(const std::string& dir, const std::string& path,
                         RedoHeader* h, absl::Span<const Piece> pieces) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd.valid()) return Errno(errno, absl::StrCat("create ", tmp));

  Sha256 sha;
  unsigned char header[kHeaderSize];
  Encode(*h, kPhasePending, header);
  sha.Update(header, kChecksumOffset);

  std::vector<char> buf(ChunkBytes());
  uint64_t out_offset = kHeaderSize;
  for (const Piece& piece : pieces) {
    uint64_t done = 0;
    while (done < piece.length) {
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(buf.size(), piece.length - done));
      if (int rc = PreadFull(piece.fd, buf.data(), n, piece.offset + done);
          rc != 0) {
        // -ENODATA: the mailbox shrank under our exclusive lock, i.e. a
        // process that ignores locks truncated it.
        return rc == -ENODATA
                   ? absl::AbortedError("mailbox shrank during update")
                   : Errno(-rc, "read for redo record");
      }
      sha.Update(buf.data(), n);
      if (int rc = PwriteFull(fd.get(), buf.data(), n, out_offset); rc != 0) {
        return Errno(-rc, absl::StrCat("write ", tmp));
      }
      out_offset += n;
      done += n;
      CrashPoint(kStepRedoChunk);
    }
  }
  sha.Final(h->checksum);
  std::memcpy(header + kChecksumOffset, h->checksum, sizeof(h->checksum));
  if (int rc = PwriteFull(fd.get(), reinterpret_cast<const char*>(header),
                          kHeaderSize, 0);
      rc != 0) {
    return Errno(-rc, absl::StrCat("write ", tmp));
  }
  if (::fsync(fd.get()) != 0) return Errno(errno, absl::StrCat("fsync ", tmp));
  CrashPoint(kStepRedoWritten);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Errno(errno, absl::StrCat("rename ", tmp));
  }
  CrashPoint(kStepRedoRenamed);
  RETURN_IF_ERROR(FsyncDir(dir));
  CrashPoint(kStepRedoDurable);
  return absl::OkStatus();
}

absl::Status MakeWitness(uint64_t offset, uint64_t room, Witness* w) {
  w->offset = offset;
  w->length = static_cast<uint32_t>(std::min<uint64_t>(kWitnessBytes, room));
  size_t got = 0;
  while (got < w->length) {
    ssize_t n = ::getrandom(w->bytes + got, w->length - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "getrandom");
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Applies a durable record: witness, content, truncate, done, unlink.
absl::Status Apply(int mailbox_fd, int redo_fd, const std::string& path,
                   const RedoHeader& h) {
  // The newest witness comes last; it lies in [F, orig_size), which nothing
  // else writes, so it stays intact until the truncate removes it.
  const Witness& w = h.witnesses[h.witness_count - 1];
  if (int rc = PwriteFull(mailbox_fd, reinterpret_cast<const char*>(w.bytes),
                          w.length, w.offset);
      rc != 0) {
    return Errno(-rc, "write mailbox");
  }
  CrashPoint(kStepWitnessWritten);
  // Barrier: the witness must be durable before any content lands, or a
  // power loss could leave content half-written with no witness.
  if (::fdatasync(mailbox_fd) != 0) return Errno(errno, "fdatasync mailbox");
  CrashPoint(kStepWitnessSynced);

  // Copy from the record, not from our mapping: source and destination
  // overlap in the mailbox, and the record is what repair would use too.
  std::vector<char> buf(ChunkBytes());
  uint64_t done = 0;
  while (done < h.content_length) {
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(buf.size(), h.content_length - done));
    if (int rc = PreadFull(redo_fd, buf.data(), n, kHeaderSize + done);
        rc != 0) {
      return Errno(rc == -ENODATA ? EIO : -rc, "read redo record");
    }
    if (int rc = PwriteFull(mailbox_fd, buf.data(), n, h.target + done);
        rc != 0) {
      return Errno(-rc, "write mailbox");
    }
    done += n;
    CrashPoint(kStepContentChunk);
  }
  // Barrier: content durable before the truncate (a durable truncate with
  // lost content would drop the witness and make repair skip the record).
  if (::fdatasync(mailbox_fd) != 0) return Errno(errno, "fdatasync mailbox");
  CrashPoint(kStepContentSynced);
  if (::ftruncate(mailbox_fd,
                  static_cast<off_t>(h.target + h.content_length)) != 0) {
    return Errno(errno, "ftruncate mailbox");
  }
  CrashPoint(kStepTruncated);
  if (::fsync(mailbox_fd) != 0) return Errno(errno, "fsync mailbox");
  CrashPoint(kStepMailboxSynced);

  // From here on the record is obsolete; marking it done first means a
  // crash before the unlink cannot even start a witness check.
  const uint32_t done_phase = kPhaseDone;
  if (PwriteFull(redo_fd, reinterpret_cast<const char*>(&done_phase),
                 sizeof(done_phase), kPhaseOffset) == 0) {
    ::fdatasync(redo_fd);
  }
  CrashPoint(kStepMarkedDone);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Errno(errno, absl::StrCat("unlink ", path));
  }
  CrashPoint(kStepUnlinked);
  return absl::OkStatus();
}

absl::Status Discard(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Errno(errno, absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

// Whether `w` is in place in the mailbox of size `size`.
absl::StatusOr<bool> WitnessPresent(int mailbox_fd, uint64_t size,
                                    const Witness& w) {
  if (w.length == 0 || w.offset + w.length > size) return false;
  unsigned char bytes[kWitnessBytes];
  int rc =
      PreadFull(mailbox_fd, reinterpret_cast<char*>(bytes), w.length, w.offset);
  if (rc == -ENODATA) return false;
  if (rc != 0) return Errno(-rc, "read mailbox");
  return std::memcmp(bytes, w.bytes, w.length) == 0;
}

}  // namespace

std::string RedoPath(const std::string& redo_dir, uint64_t dev, uint64_t ino) {
  return absl::StrCat(redo_dir, "/mbox-", dev, "-", ino, ".redo");
}

void SetUpdateHooksForTest(std::function<void(int step)> hook,
                           size_t chunk_bytes) {
  Hook() = std::move(hook);
  g_chunk_bytes = chunk_bytes;
}

absl::Status RewriteMbox(int mailbox_fd, const std::string& redo_dir,
                         uint64_t target, absl::Span<const Extent> pieces,
                         uint64_t file_size) {
  if (redo_dir.empty()) {
    return absl::FailedPreconditionError("no redo_dir for the mbox update");
  }
  struct stat st;
  if (::fstat(mailbox_fd, &st) != 0) return Errno(errno, "fstat mailbox");
  RedoHeader h;
  h.target = target;
  h.orig_size = file_size;
  h.dev = st.st_dev;
  h.ino = st.st_ino;
  std::vector<Piece> sources;
  sources.reserve(pieces.size());
  for (const Extent& e : pieces) {
    sources.push_back(Piece{mailbox_fd, e.offset, e.length});
    h.content_length += e.length;
  }
  const uint64_t new_end = target + h.content_length;
  if (new_end >= file_size) {
    return absl::InternalError("mbox update deletes nothing");
  }
  h.witness_count = 1;
  RETURN_IF_ERROR(MakeWitness(new_end, file_size - new_end, &h.witnesses[0]));

  const std::string path = RedoPath(redo_dir, h.dev, h.ino);
  RETURN_IF_ERROR(WriteRecord(redo_dir, path, &h, sources));
  UniqueFd redo(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!redo.valid()) return Errno(errno, absl::StrCat("open ", path));
  return Apply(mailbox_fd, redo.get(), path, h);
}

absl::StatusOr<RepairOutcome> RepairMbox(int mailbox_fd,
                                         const std::string& redo_dir) {
  if (redo_dir.empty()) return RepairOutcome::kNothing;
  struct stat st;
  if (::fstat(mailbox_fd, &st) != 0) return Errno(errno, "fstat mailbox");
  const std::string path = RedoPath(redo_dir, st.st_dev, st.st_ino);
  // A temp record never renamed into place: the crash came before the
  // mailbox was touched.
  RETURN_IF_ERROR(Discard(path + ".tmp"));

  UniqueFd redo(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!redo.valid()) {
    if (errno == ENOENT) return RepairOutcome::kNothing;
    return Errno(errno, absl::StrCat("open ", path));
  }

  unsigned char header[kHeaderSize];
  RedoHeader h;
  int rc =
      PreadFull(redo.get(), reinterpret_cast<char*>(header), kHeaderSize, 0);
  if (rc == -ENODATA || (rc == 0 && !Decode(header, &h))) {
    RETURN_IF_ERROR(Discard(path));
    return RepairOutcome::kDiscarded;
  }
  if (rc != 0) return Errno(-rc, absl::StrCat("read ", path));
  if (h.dev != static_cast<uint64_t>(st.st_dev) ||
      h.ino != static_cast<uint64_t>(st.st_ino) || h.phase == kPhaseDone) {
    RETURN_IF_ERROR(Discard(path));
    return RepairOutcome::kDiscarded;
  }
  // Verify the checksum over header (phase as pending) and content.
  {
    Sha256 sha;
    unsigned char canonical[kHeaderSize];
    Encode(h, kPhasePending, canonical);
    sha.Update(canonical, kChecksumOffset);
    std::vector<char> buf(ChunkBytes());
    uint64_t done = 0;
    bool short_read = false;
    while (done < h.content_length) {
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(buf.size(), h.content_length - done));
      rc = PreadFull(redo.get(), buf.data(), n, kHeaderSize + done);
      if (rc == -ENODATA) {
        short_read = true;
        break;
      }
      if (rc != 0) return Errno(-rc, absl::StrCat("read ", path));
      sha.Update(buf.data(), n);
      done += n;
    }
    unsigned char sum[32];
    sha.Final(sum);
    if (short_read || std::memcmp(sum, h.checksum, sizeof(sum)) != 0) {
      // Torn record: the rename happens only after a full fsync, so this is
      // not a record we ever acted on (or the disk lost it).
      RETURN_IF_ERROR(Discard(path));
      return RepairOutcome::kDiscarded;
    }
  }

  const uint64_t size = static_cast<uint64_t>(st.st_size);
  int matching = -1;
  for (int i = static_cast<int>(h.witness_count) - 1; i >= 0; --i) {
    ASSIGN_OR_RETURN(bool present,
                     WitnessPresent(mailbox_fd, size, h.witnesses[i]));
    if (present) {
      matching = i;
      break;
    }
  }
  if (matching < 0) {
    // Either the rewrite never wrote its witness (the mailbox is as it was)
    // or its truncate already happened (the mailbox is final, plus any
    // later delivery). Both are consistent states.
    RETURN_IF_ERROR(Discard(path));
    return RepairOutcome::kDiscarded;
  }
  if (size < h.orig_size) {
    return absl::DataLossError(absl::StrCat(
        "mailbox shrank below the size recorded in ", path,
        " while an update was pending; left for the administrator"));
  }

  // Interrupted mid-rewrite. Mail appended since the crash sits at
  // [orig_size, size): fold it into a new record, keeping the witness that
  // is in place now, and apply that.
  RedoHeader next;
  next.target = h.target;
  next.orig_size = size;
  next.content_length = h.content_length + (size - h.orig_size);
  next.dev = h.dev;
  next.ino = h.ino;
  next.witness_count = 2;
  next.witnesses[0] = h.witnesses[matching];
  const uint64_t new_end = next.target + next.content_length;
  RETURN_IF_ERROR(MakeWitness(new_end, size - new_end, &next.witnesses[1]));
  const Piece sources[] = {
      Piece{redo.get(), kHeaderSize, h.content_length},
      Piece{mailbox_fd, h.orig_size, size - h.orig_size},
  };
  RETURN_IF_ERROR(WriteRecord(redo_dir, path, &next, sources));
  UniqueFd next_fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!next_fd.valid()) return Errno(errno, absl::StrCat("open ", path));
  RETURN_IF_ERROR(Apply(mailbox_fd, next_fd.get(), path, next));
  return RepairOutcome::kApplied;
}

}  // namespace popgate::mailbox
