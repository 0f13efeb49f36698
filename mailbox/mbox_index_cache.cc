#include "mailbox/mbox_index_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "mailbox/sigbus_guard.h"

namespace popgate::mailbox {
namespace {

// File layout (native byte order: the cache never leaves this host):
//   Header | count x MboxMessage (64 octets each) | uint64 checksum
// The checksum covers everything before it.
constexpr char kMagic[8] = {'P', 'G', 'M', 'B', 'X', 'I', 'D', 'X'};
constexpr uint64_t kVersion = 2 | (uint64_t{sizeof(MboxMessage)} << 32);

struct Header {
  char magic[8];
  uint64_t version;
  uint64_t dev;
  uint64_t ino;
  uint64_t size;  // the indexed size
  int64_t mtime_sec;
  int64_t mtime_nsec;
  uint64_t count;
  uint64_t fingerprint;
  uint64_t stride;  // of the message samples
};
static_assert(sizeof(Header) == 80, "no padding in the file header");

// Fingerprint samples (see the header comment). One cache line per
// message: the From_ line (which names the sender and date) and what
// follows it; with hundreds of thousands of small messages the per-message
// part is what a cache hit costs.
constexpr uint64_t kEdgeBytes = 4096;
constexpr uint64_t kMessageSampleBytes = 64;
// Every stride-th message (by index) is sampled, plus the last cached one.
// Each sample costs a page fault in the mapping (several microseconds once
// messages are pages apart), so the stride grows with the message count to
// keep about kTargetSamples: a boundary that moved shows in every sample
// after it and in the last message, which is always sampled. The stride is
// kept in the cache, so an append reuses the sum over the verified prefix;
// it is chosen anew once appends have doubled the samples.
constexpr size_t kMinSampleStride = 8;
constexpr size_t kTargetSamples = 256;

size_t StrideFor(size_t count) {
  return std::max(kMinSampleStride,
                  (count + kTargetSamples - 1) / kTargetSamples);
}

// A fast, stable 64-bit hash (not absl::Hash: that is salted per process).
// It detects corruption and mismatches; it is not a MAC, and needs not be:
// the cache lives in the mailbox owner's own state folder.
inline uint64_t Mix(uint64_t h, uint64_t w) {
  h ^= w;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

uint64_t HashBytes(uint64_t h, const char* p, size_t n) {
  h = Mix(h, n);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = Mix(h, w);
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  return Mix(h, w);
}

// The fingerprint is Mix(edge hash, sum of per-message hashes): a sum, so
// that an append can reuse the sum over the cached prefix it verified.
struct MessageSums {
  uint64_t sum = 0;
  bool boundaries_ok = true;
};

// Adds the sample of `m` to `*sum`; false if `m` does not start at a
// boundary (a From_ line at the file start or after an LF-only blank line).
// Trivial locals only: runs under RunWithSigbusGuard.
bool SampleMessage(const char* data, const MboxMessage& m, uint64_t* sum) {
  const uint64_t at = m.raw_offset;
  *sum += HashBytes(Mix(0x6d7367, at), data + at,
                    std::min(m.raw_size, kMessageSampleBytes));
  return m.raw_size >= 5 && std::memcmp(data + at, "From ", 5) == 0 &&
         (at == 0 || (at >= 2 && data[at - 1] == '\n' && data[at - 2] == '\n'));
}

// Adds every stride-th message among [from, to) to `sums`, each hashed with its offset, and
// checks each boundary (a From_ line at the file start or after an LF-only
// blank line). REQUIRES: the entries lie inside `data` (ValidEntries).
// Trivial locals only: runs under RunWithSigbusGuard.
void AddMessages(const char* data, const MboxMessage* messages, size_t from,
                 size_t to, size_t stride, MessageSums* sums) {
  for (size_t i = (from + stride - 1) / stride * stride; i < to;
       i += stride) {
    if (!SampleMessage(data, messages[i], &sums->sum)) {
      sums->boundaries_ok = false;
    }
  }
}

// The first and last kEdgeBytes of data[0, region) and the sample of the
// last message (whose boundary an append may move). Trivial locals only.
uint64_t EdgeHash(const char* data, uint64_t region, const MboxMessage& last,
                  bool* boundary_ok) {
  uint64_t h = Mix(0x706f7067617465ull, region);
  const uint64_t edge = std::min(region, kEdgeBytes);
  h = HashBytes(h, data, edge);
  h = HashBytes(h, data + (region - edge), edge);
  uint64_t sample = 0;
  *boundary_ok = SampleMessage(data, last, &sample);
  return Mix(h, sample);
}

// Structural checks that make every later read of the mapping in bounds.
bool ValidEntries(const std::vector<MboxMessage>& messages, uint64_t region) {
  uint64_t expect = 0;
  for (const MboxMessage& m : messages) {
    if (m.raw_offset != expect || m.raw_size == 0 ||
        m.raw_size > region - expect || m.data_offset < m.raw_offset ||
        m.data_offset - m.raw_offset > m.raw_size ||
        m.data_size > m.raw_offset + m.raw_size - m.data_offset) {
      return false;
    }
    expect += m.raw_size;
  }
  return expect == region;
}

struct Loaded {
  Header header;
  std::vector<MboxMessage> messages;
};

uint64_t Checksum(const Header& h, const MboxMessage* messages, size_t count) {
  return HashBytes(HashBytes(0, reinterpret_cast<const char*>(&h), sizeof(h)),
                   reinterpret_cast<const char*>(messages),
                   count * sizeof(MboxMessage));
}

bool PreadFull(int fd, void* buf, size_t size, uint64_t offset) {
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, static_cast<char*>(buf) + got, size - got,
                              static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// Reads and checks the cache file; nullopt if missing or unusable.
std::optional<Loaded> ReadCache(const std::string& path, const MboxFileKey& key,
                                size_t max_messages) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  Loaded loaded;
  Header& h = loaded.header;
  uint64_t checksum = 0;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            PreadFull(fd, &h, sizeof(h), 0) &&
            std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0 &&
            h.version == kVersion && h.dev == key.dev && h.ino == key.ino &&
            h.count > 0 && h.count <= max_messages && h.stride > 0 &&
            static_cast<uint64_t>(st.st_size) ==
                sizeof(Header) + h.count * sizeof(MboxMessage) + 8;
  if (ok) {
    loaded.messages.resize(h.count);
    ok = PreadFull(fd, loaded.messages.data(), h.count * sizeof(MboxMessage),
                   sizeof(Header)) &&
         PreadFull(fd, &checksum, sizeof(checksum),
                   sizeof(Header) + h.count * sizeof(MboxMessage));
  }
  ::close(fd);
  if (!ok || Checksum(h, loaded.messages.data(), h.count) != checksum) {
    return std::nullopt;
  }
  return loaded;
}

// True if the cached entries describe data[0, region) as it is now. Sets
// `prefix` to the sums over all cached messages but the last (what an
// append keeps).
bool StillMatches(absl::string_view data, const Loaded& loaded,
                  uint64_t region, MessageSums* prefix) {
  if (region > data.size() || !ValidEntries(loaded.messages, region)) {
    return false;
  }
  const MboxMessage* messages = loaded.messages.data();
  const size_t count = loaded.messages.size();
  const size_t stride = loaded.header.stride;
  MessageSums all;
  uint64_t edges = 0;
  bool last_ok = false;
  if (!RunWithSigbusGuard(data.data(), data.size(), [&] {
        AddMessages(data.data(), messages, 0, count - 1, stride, prefix);
        all = *prefix;
        AddMessages(data.data(), messages, count - 1, count, stride, &all);
        edges = EdgeHash(data.data(), region, messages[count - 1], &last_ok);
      })) {
    return false;
  }
  return all.boundaries_ok && last_ok &&
         Mix(edges, all.sum) == loaded.header.fingerprint;
}

// WriteIndexCache, reusing `known` = the sums over messages[0, known_count)
// sampled with `known_stride` (0: nothing known).
absl::Status WriteCache(const std::string& path, const MboxFileKey& key,
                        absl::string_view data,
                        const std::vector<MboxMessage>& messages,
                        size_t known_count, MessageSums known,
                        size_t known_stride) {
  if (messages.empty() || known_count > messages.size() ||
      !ValidEntries(messages, data.size())) {
    return absl::InvalidArgumentError("index does not tile the data");
  }
  size_t stride = known_stride;
  if (stride == 0 || messages.size() / stride > 2 * kTargetSamples) {
    stride = StrideFor(messages.size());
  }
  if (stride != known_stride) {
    known_count = 0;
    known = MessageSums();
  }
  Header h;
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.dev = key.dev;
  h.ino = key.ino;
  h.size = data.size();
  h.mtime_sec = key.mtime_sec;
  h.mtime_nsec = key.mtime_nsec;
  h.count = messages.size();
  h.fingerprint = 0;
  h.stride = stride;
  MessageSums sums = known;
  uint64_t edges = 0;
  bool last_ok = false;
  if (!RunWithSigbusGuard(data.data(), data.size(), [&] {
        AddMessages(data.data(), messages.data(), known_count,
                    messages.size(), stride, &sums);
        edges = EdgeHash(data.data(), data.size(), messages.back(), &last_ok);
      })) {
    return absl::AbortedError("mbox truncated while fingerprinting");
  }
  h.fingerprint = Mix(edges, sums.sum);
  uint64_t checksum = Checksum(h, messages.data(), messages.size());

  // Temp + rename: a reader sees the old file or the new one, never a torn
  // one (and a torn one after a crash fails the checksum). No fsync: losing
  // the cache costs one full scan.
  const std::string tmp = absl::StrCat(path, ".tmp", ::getpid());
  const int fd = ::open(tmp.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", tmp));
  // Straight from the index (no serialised copy of it).
  iovec iov[3] = {
      {&h, sizeof(h)},
      {const_cast<MboxMessage*>(messages.data()),
       messages.size() * sizeof(MboxMessage)},
      {&checksum, sizeof(checksum)}};
  int first = 0;
  int err = 0;
  while (first < 3) {
    const ssize_t n = ::writev(fd, iov + first, 3 - first);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    size_t left = static_cast<size_t>(n);
    while (first < 3 && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (first < 3) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

std::string IndexCachePath(const std::string& dir, uint64_t dev, uint64_t ino) {
  return absl::StrCat(dir, "/mbox-", dev, "-", ino, ".index");
}

absl::Status WriteIndexCache(const std::string& path, const MboxFileKey& key,
                             absl::string_view data,
                             const std::vector<MboxMessage>& messages) {
  return WriteCache(path, key, data, messages, 0, MessageSums(), 0);
}

absl::StatusOr<std::vector<MboxMessage>> IndexWithCache(
    absl::string_view data, const MboxFileKey& key, const std::string& cache_dir,
    size_t max_messages, IndexCacheOutcome* outcome) {
  IndexCacheOutcome ignored;
  if (outcome == nullptr) outcome = &ignored;
  if (cache_dir.empty() || data.empty()) {
    *outcome = IndexCacheOutcome::kDisabled;
    return IndexMappedMbox(data, max_messages);
  }
  const std::string path = IndexCachePath(cache_dir, key.dev, key.ino);
  std::optional<Loaded> loaded = ReadCache(path, key, max_messages);
  if (loaded.has_value()) {
    const Header& h = loaded->header;
    if (h.size == data.size() && h.mtime_sec == key.mtime_sec &&
        h.mtime_nsec == key.mtime_nsec) {
      MessageSums prefix;
      if (StillMatches(data, *loaded, h.size, &prefix)) {
        *outcome = IndexCacheOutcome::kHit;
        return std::move(loaded->messages);
      }
    } else if (MessageSums prefix;
               h.size < data.size() &&
               StillMatches(data, *loaded, h.size, &prefix)) {
      // Appended mail: re-scan from the start of the last cached message.
      std::vector<MboxMessage> messages = std::move(loaded->messages);
      const uint64_t base = messages.back().raw_offset;
      messages.pop_back();
      absl::StatusOr<std::vector<MboxMessage>> tail = IndexMappedMbox(
          data.substr(base), max_messages - messages.size());
      if (tail.ok()) {
        for (MboxMessage& m : *tail) {
          m.raw_offset += base;
          m.data_offset += base;
        }
        messages.insert(messages.end(), tail->begin(), tail->end());
        *outcome = IndexCacheOutcome::kAppended;
        const size_t kept = messages.size() - tail->size();
        WriteCache(path, key, data, messages, kept, prefix, h.stride)
            .IgnoreError();  // best effort: a failure costs a scan next time
        return messages;
      }
      // A refusal or limit in the tail: the full scan below reports it
      // exactly as it would without a cache.
    }
  }
  *outcome = IndexCacheOutcome::kMiss;
  absl::StatusOr<std::vector<MboxMessage>> messages =
      IndexMappedMbox(data, max_messages);
  if (messages.ok() && !messages->empty()) {
    WriteIndexCache(path, key, data, *messages).IgnoreError();  // best effort
  }
  return messages;
}

}  // namespace popgate::mailbox
