#include "mailbox/mbox_index_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mailbox/cache_file.h"
#include "mailbox/mapping.h"
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
// Each sample costs a pread of a page-cache page (SampleSource; through the
// mapping it was a page fault), so the stride grows with the message count to
// keep about kTargetSamples: a boundary that moved shows in every sample
// after it and in the last message, which is always sampled. The stride is
// kept in the cache, so an append reuses the sum over the verified prefix;
// it is chosen anew once appends have doubled the samples.
constexpr size_t kMinSampleStride = 8;
constexpr size_t kTargetSamples = 256;
// See ShouldRewrite().
constexpr uint64_t kRewriteTailBytes = 512 * 1024;

size_t StrideFor(size_t count) {
  return std::max(kMinSampleStride,
                  (count + kTargetSamples - 1) / kTargetSamples);
}

// The fingerprint is CacheMix(edge hash, sum of per-message hashes): a sum, so
// that an append can reuse the sum over the cached prefix it verified.
struct MessageSums {
  uint64_t sum = 0;
  bool boundaries_ok = true;
};

// Where the fingerprint's bytes are read from. With the mailbox's fd, by
// pread: a sample read through the mapping faults in pages (and page
// tables) all over a big file, ~256 of them, which the munmap at logout
// then walks again; that was half of a re-login's CPU on a 1 GB mbox.
// Without one (tests, benchmarks), from the mapping under the SIGBUS guard.
class SampleSource {
 public:
  SampleSource(absl::string_view data, int fd) : data_(data), fd_(fd) {}

  // Copies data[at, at + n) to `out`. False if they cannot be read (the
  // file shrank): the cache then does not match.
  // REQUIRES: at + n <= data.size().
  bool Read(uint64_t at, size_t n, char* out) const {
    if (fd_ >= 0) return PreadFull(fd_, out, n, at) == 0;
    return RunWithSigbusGuard(data_.data(), data_.size(), [this, at, n, out] {
      std::memcpy(out, data_.data() + at, n);
    });
  }

 private:
  const absl::string_view data_;
  const int fd_;
};

// Adds the sample of `m` to sums->sum, and clears sums->boundaries_ok if
// `m` does not start at a boundary (a From_ line at the file start or
// after an LF-only blank line). False if its bytes could not be read.
// REQUIRES: `m` lies inside the source's data (ValidEntries).
bool SampleMessage(const SampleSource& source, const MboxMessage& m,
                   MessageSums* sums) {
  const uint64_t at = m.raw_offset;
  const size_t before = static_cast<size_t>(std::min<uint64_t>(at, 2));
  const size_t n = static_cast<size_t>(std::min(m.raw_size, kMessageSampleBytes));
  char bytes[2 + kMessageSampleBytes];
  if (!source.Read(at - before, before + n, bytes)) return false;
  const char* const p = bytes + before;
  sums->sum += CacheHash(CacheMix(0x6d7367, at), p, n);
  const bool boundary =
      m.raw_size >= 5 && std::memcmp(p, "From ", 5) == 0 &&
      (at == 0 || (at >= 2 && p[-1] == '\n' && p[-2] == '\n'));
  if (!boundary) sums->boundaries_ok = false;
  return true;
}

// Adds every stride-th message among [from, to) to `sums` (SampleMessage).
// False if a sample could not be read.
bool AddMessages(const SampleSource& source, const MboxMessage* messages,
                 size_t from, size_t to, size_t stride, MessageSums* sums) {
  for (size_t i = (from + stride - 1) / stride * stride; i < to;
       i += stride) {
    if (!SampleMessage(source, messages[i], sums)) return false;
  }
  return true;
}

// Sets *edges to the hash of the first and last kEdgeBytes of
// [0, region) and the sample of the last message (whose boundary an
// append may move); *boundary_ok as SampleMessage. False if unreadable.
bool EdgeHash(const SampleSource& source, uint64_t region,
              const MboxMessage& last, uint64_t* edges, bool* boundary_ok) {
  uint64_t h = CacheMix(0x706f7067617465ull, region);
  const uint64_t edge = std::min(region, kEdgeBytes);
  std::vector<char> bytes(edge);
  if (!source.Read(0, edge, bytes.data())) return false;
  h = CacheHash(h, bytes.data(), edge);
  if (!source.Read(region - edge, edge, bytes.data())) return false;
  h = CacheHash(h, bytes.data(), edge);
  MessageSums sample;
  if (!SampleMessage(source, last, &sample)) return false;
  *boundary_ok = sample.boundaries_ok;
  *edges = CacheMix(h, sample.sum);
  return true;
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

// Over the header's and the entries' bytes.
uint64_t Checksum(const char* header, const char* messages, size_t count) {
  return CacheHash(CacheHash(0, header, sizeof(Header)), messages,
                   count * sizeof(MboxMessage));
}
uint64_t Checksum(const Header& h, const MboxMessage* messages, size_t count) {
  return Checksum(reinterpret_cast<const char*>(&h),
                  reinterpret_cast<const char*>(messages), count);
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
            PreadFull(fd, reinterpret_cast<char*>(&h), sizeof(h), 0) == 0 &&
            std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0 &&
            h.version == kVersion && h.dev == key.dev && h.ino == key.ino &&
            h.count > 0 && h.count <= max_messages && h.stride > 0 &&
            static_cast<uint64_t>(st.st_size) ==
                sizeof(Header) + h.count * sizeof(MboxMessage) + 8;
  if (ok) {
    loaded.messages.resize(h.count);
    ok = PreadFull(fd, reinterpret_cast<char*>(loaded.messages.data()),
                   h.count * sizeof(MboxMessage), sizeof(Header)) == 0 &&
         PreadFull(fd, reinterpret_cast<char*>(&checksum), sizeof(checksum),
                   sizeof(Header) + h.count * sizeof(MboxMessage)) == 0;
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
bool StillMatches(const SampleSource& source, uint64_t data_size,
                  const Loaded& loaded, uint64_t region, MessageSums* prefix) {
  if (region > data_size || !ValidEntries(loaded.messages, region)) {
    return false;
  }
  const MboxMessage* messages = loaded.messages.data();
  const size_t count = loaded.messages.size();
  const size_t stride = loaded.header.stride;
  if (!AddMessages(source, messages, 0, count - 1, stride, prefix)) {
    return false;
  }
  MessageSums all = *prefix;
  uint64_t edges = 0;
  bool last_ok = false;
  if (!AddMessages(source, messages, count - 1, count, stride, &all) ||
      !EdgeHash(source, region, messages[count - 1], &edges, &last_ok)) {
    return false;
  }
  return all.boundaries_ok && last_ok &&
         CacheMix(edges, all.sum) == loaded.header.fingerprint;
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
  // From the mapping: the messages sampled here were just scanned.
  const SampleSource source(data, /*fd=*/-1);
  MessageSums sums = known;
  uint64_t edges = 0;
  bool last_ok = false;
  if (!AddMessages(source, messages.data(), known_count, messages.size(),
                   stride, &sums) ||
      !EdgeHash(source, data.size(), messages.back(), &edges, &last_ok)) {
    return absl::AbortedError("mbox truncated while fingerprinting");
  }
  h.fingerprint = CacheMix(edges, sums.sum);
  uint64_t checksum = Checksum(h, messages.data(), messages.size());

  // Straight from the index (no serialised copy of it).
  iovec iov[3] = {
      {&h, sizeof(h)},
      {const_cast<MboxMessage*>(messages.data()),
       messages.size() * sizeof(MboxMessage)},
      {&checksum, sizeof(checksum)}};
  return ReplaceCacheFile(path, absl::MakeSpan(iov));
}

// Whether an append is worth rewriting the cache for. Until the bytes
// re-scanned since the cached prefix (`tail_bytes`) outgrow both a floor
// and the cache file itself, the next login re-scanning them costs less
// than writing the whole index again (a 10,000-message cache is 640 KB,
// and replacing it by rename makes ext4 allocate its blocks at once).
bool ShouldRewrite(uint64_t tail_bytes, size_t message_count) {
  const uint64_t cache_bytes =
      sizeof(Header) + uint64_t{message_count} * sizeof(MboxMessage) + 8;
  return tail_bytes > std::max(kRewriteTailBytes, cache_bytes);
}

}  // namespace

void SealIndexCacheBytes(std::string* bytes) {
  if (bytes->size() < sizeof(Header) + sizeof(uint64_t)) return;
  const size_t count =
      (bytes->size() - sizeof(Header) - sizeof(uint64_t)) / sizeof(MboxMessage);
  const uint64_t checksum = Checksum(bytes->data(),
                                     bytes->data() + sizeof(Header), count);
  std::memcpy(bytes->data() + bytes->size() - sizeof(checksum), &checksum,
              sizeof(checksum));
}

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
    size_t max_messages, IndexCacheOutcome* outcome, int mailbox_fd) {
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
    const SampleSource source(data, mailbox_fd);
    if (h.size == data.size() && h.mtime_sec == key.mtime_sec &&
        h.mtime_nsec == key.mtime_nsec) {
      MessageSums prefix;
      if (StillMatches(source, data.size(), *loaded, h.size, &prefix)) {
        *outcome = IndexCacheOutcome::kHit;
        return std::move(loaded->messages);
      }
    } else if (MessageSums prefix;
               h.size < data.size() &&
               StillMatches(source, data.size(), *loaded, h.size, &prefix)) {
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
        if (ShouldRewrite(data.size() - base, messages.size())) {
          const size_t kept = messages.size() - tail->size();
          WriteCache(path, key, data, messages, kept, prefix, h.stride)
              .IgnoreError();  // best effort: a failure costs a scan next time
        }
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
