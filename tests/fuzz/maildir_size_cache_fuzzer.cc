// Fuzz target for the Maildir size cache's file parser
// (mailbox/maildir_size_cache.h): the cache file sits in a folder its
// mailbox's owner can write, so any bytes must parse without crashing into
// either nothing or entries a lookup can trust the bounds of.
// Seeds: tests/fuzz/corpus/maildir_size_cache/ (valid caches and damaged
// ones; the header's own directory key is used, so the checksum is the gate).
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "mailbox/maildir_size_cache.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::mailbox::MaildirSizeCache;
using popgate::mailbox::MaildirSizeEntry;
using popgate::mailbox::SerializeMaildirSizeCache;

using ::popgate::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const absl::string_view file(reinterpret_cast<const char*>(bytes), size);
  uint64_t dev = 0, ino = 0;
  if (size >= 32) {
    std::memcpy(&dev, bytes + 16, 8);
    std::memcpy(&ino, bytes + 24, 8);
  }
  const MaildirSizeCache cache = MaildirSizeCache::Parse(file, dev, ino, 4096);
  if (cache.empty()) return 0;
  Check(cache.size() <= 4096, "entry count bounded");
  for (size_t i = 0; i < cache.size(); ++i) {
    const MaildirSizeEntry& e = cache.entries()[i];
    Check(i == 0 || cache.entries()[i - 1].ino < e.ino, "sorted, unique");
    Check(e.wire_size >= e.size && e.wire_size - e.size <= e.size + 2,
          "wire size is a possible encoding");
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = e.ino;
    st.st_size = static_cast<off_t>(e.size);
    st.st_ctim.tv_sec = e.ctime_sec;
    st.st_ctim.tv_nsec = e.ctime_nsec;
    if (static_cast<uint64_t>(st.st_ino) == e.ino &&
        static_cast<uint64_t>(st.st_size) == e.size &&
        st.st_ctim.tv_nsec == e.ctime_nsec) {
      Check(cache.Find(st) == e.wire_size, "each entry is found");
    }
  }
  Check(SerializeMaildirSizeCache(dev, ino, cache.entries()) == file,
        "a valid file is what writing its entries gives");
  return 0;
}
