// Fuzz target for the mbox index cache (mailbox/mbox_index_cache.h): the
// cache file lies in a folder the mailbox owner can write and survives
// crashes and rewrites of the mailbox, so whatever it holds, a login must
// index the mailbox as a scan would. Checks:
//  - a cache file of arbitrary bytes: IndexWithCache == IndexMappedMbox
//    (same status code, same index);
//  - a real cache of a prefix of the mailbox (appended mail: the cached
//    prefix plus a re-scan of the tail) or of all of it (a hit): the same;
//  - a real cache with edited bytes and a recomputed checksum (a forgery,
//    outside the threat model: the checksum is not a MAC): no crash, and an
//    accepted index tiles the mailbox with every range inside it.
//
// Input layout: one options octet (bit 0: a real cache, else the rest is
// the cache file; bit 1: the mailbox keeps the cached mtime; bit 2: edit
// and reseal the real cache), a 2-octet little-endian mailbox length, the
// mailbox, then for a real cache the cached prefix's length (2 octets, little
// endian; none: the whole mailbox) and edits: 2-octet offset, XOR octet.
// Seeds: tests/fuzz/corpus/mbox_index_cache/.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mailbox/mapping.h"
#include "mailbox/mbox_index.h"
#include "mailbox/mbox_index_cache.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::mailbox::IndexCacheOutcome;
using popgate::mailbox::IndexCachePath;
using popgate::mailbox::IndexMappedMbox;
using popgate::mailbox::IndexMbox;
using popgate::mailbox::IndexWithCache;
using popgate::mailbox::MboxFileKey;
using popgate::mailbox::MboxMessage;
using popgate::mailbox::SealIndexCacheBytes;
using popgate::mailbox::WriteFull;
using popgate::mailbox::WriteIndexCache;

using ::popgate::fuzz::Check;

constexpr size_t kMaxMessages = 4096;
constexpr uint64_t kDev = 1, kIno = 2;

const std::string& ScratchDir() {
  return popgate::fuzz::ScratchDir("index_cache");
}

std::string ReadAll(const std::string& path) {
  std::string bytes;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return bytes;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) bytes.append(buf, n);
  ::close(fd);
  return bytes;
}

void WriteAll(const std::string& path, absl::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0600);
  Check(fd >= 0, "open cache for writing");
  Check(WriteFull(fd, bytes.data(), bytes.size()) == 0, "write cache");
  ::close(fd);
}

// Every entry in order, back to back, inside [0, size).
bool Tiles(const std::vector<MboxMessage>& index, uint64_t size) {
  uint64_t at = 0;
  for (const MboxMessage& m : index) {
    if (m.raw_offset != at || m.raw_size == 0 || m.raw_size > size - at ||
        m.data_offset < m.raw_offset ||
        m.data_offset - m.raw_offset > m.raw_size ||
        m.data_size > m.raw_offset + m.raw_size - m.data_offset) {
      return false;
    }
    at += m.raw_size;
  }
  return at == size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 3) return 0;
  const uint8_t options = bytes[0];
  size_t length = bytes[1] | (size_t{bytes[2]} << 8);
  length = std::min(length, size - 3);
  const std::string data(reinterpret_cast<const char*>(bytes) + 3, length);
  const uint8_t* rest = bytes + 3 + length;
  const size_t rest_size = size - 3 - length;

  const std::string cache = IndexCachePath(ScratchDir(), kDev, kIno);
  const bool real = options & 1;
  const bool forged = real && (options & 4);
  const MboxFileKey key{kDev, kIno, data.size(), (options & 2) ? 100 : 200, 0};
  if (!real) {
    WriteAll(cache, absl::string_view(reinterpret_cast<const char*>(rest),
                                      rest_size));
  } else {
    const size_t cut =
        rest_size < 2 ? data.size()
                      : std::min(data.size(), rest[0] | (size_t{rest[1]} << 8));
    const absl::string_view prefix(data.data(), cut);
    auto index = IndexMbox(prefix, kMaxMessages);
    if (!index.ok() || index->empty()) return 0;
    const MboxFileKey cached{kDev, kIno, cut, 100, 0};
    Check(WriteIndexCache(cache, cached, prefix, *index).ok(), "write cache");
    if (forged) {
      std::string file = ReadAll(cache);
      for (size_t i = 2; i + 3 <= rest_size && !file.empty(); i += 3) {
        const size_t at = (rest[i] | (size_t{rest[i + 1]} << 8)) % file.size();
        file[at] = static_cast<char>(file[at] ^ rest[i + 2]);
      }
      SealIndexCacheBytes(&file);
      WriteAll(cache, file);
    }
  }

  IndexCacheOutcome outcome;
  const auto got =
      IndexWithCache(data, key, ScratchDir(), kMaxMessages, &outcome);
  if (forged) {
    if (got.ok()) Check(Tiles(*got, data.size()), "an accepted index tiles");
  } else {
    const auto want = IndexMappedMbox(data, kMaxMessages);
    Check(got.status().code() == want.status().code(), "same status");
    if (got.ok()) Check(*got == *want, "same index as a scan");
  }
  ::unlink(cache.c_str());
  return 0;
}
