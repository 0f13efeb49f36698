// Helpers for mailbox/ tests: temp dirs, files, locked appends, draining a
// WireStream, and an independent, deliberately naive reference model of the
// popa3d mbox rules (reference §4.9) and of our wire encoding, to compare
// the optimised code against.
#ifndef POPGATE_TESTS_MAILBOX_MBOX_TEST_UTIL_H_
#define POPGATE_TESTS_MAILBOX_MBOX_TEST_UTIL_H_

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "mailbox/maildrop.h"
#include "mailbox/uidl.h"

namespace popgate::mailbox::testing {

// A fresh directory, removed with its contents on destruction. Prefers
// /dev/shm (tmpfs: fsync is free, which keeps the crash tests fast).
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string root = base != nullptr                             ? base
                       : std::filesystem::is_directory("/dev/shm") ? "/dev/shm"
                                                                   : "/tmp";
    std::string tmpl = root + "/popgate-mailbox-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(absl::string_view name) const {
    return path_ + "/" + std::string(name);
  }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// Appends as an MDA does: fcntl write lock on the whole file, O_APPEND.
inline bool AppendLocked(const std::string& path, absl::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  bool ok = ::fcntl(fd, F_SETLKW, &fl) == 0 &&
            ::write(fd, bytes.data(), bytes.size()) ==
                static_cast<ssize_t>(bytes.size());
  ::close(fd);  // Drops the lock.
  return ok;
}

// Drains `stream` with `max_bytes` per call; checks the per-call bound.
inline absl::StatusOr<std::string> Drain(WireStream* stream, size_t max_bytes) {
  std::string out;
  for (int calls = 0;; ++calls) {
    std::vector<absl::string_view> segs;
    absl::StatusOr<bool> more = stream->Next(max_bytes, &segs);
    if (!more.ok()) return more.status();
    size_t n = 0;
    for (absl::string_view s : segs) {
      out.append(s.data(), s.size());
      n += s.size();
    }
    // "at most about max_bytes": a line ending (or a dot) may overshoot.
    if (max_bytes < (size_t{1} << 40)) {
      EXPECT_LE(n, (max_bytes == 0 ? 1 : max_bytes) + 3);
    }
    if (!*more) return out;
    EXPECT_LT(calls, 100000000);
  }
}

// ---- Reference model -------------------------------------------------------

struct RefMessage {
  uint64_t raw_offset = 0;
  uint64_t raw_size = 0;
  uint64_t data_offset = 0;
  uint64_t data_size = 0;
  std::string uidl;
};

inline std::vector<std::string> SplitLines(absl::string_view s) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? s.size() : nl + 1;
    lines.emplace_back(s.substr(pos, end - pos));
    pos = end;
  }
  return lines;
}

// popa3d's selection, written out independently of mailbox/uidl.cc.
inline bool RefSelect(const std::string& line, bool* received, bool* prev) {
  auto starts = [&line](absl::string_view p) {
    return absl::StartsWithIgnoreCase(line, p);
  };
  char c = line[0];
  if (c == ' ' || c == '\t') return *prev;
  bool sel = false;
  if (c == 'R' || c == 'r') {
    sel = !*received && starts("Received:");
    if (sel) *received = true;
  } else if (c == 'D' || c == 'd') {
    sel = starts("Delivered-To:") || (!*received && starts("Date:"));
  } else if (c == 'M' || c == 'm') {
    sel = !*received && starts("Message-ID:");
  } else if (c == 'X') {
    sel = starts("X-Delivery-ID:");
  }
  *prev = sel;
  return sel;
}

// §4.9 transliterated. nullopt = refused (DataLoss).
inline std::optional<std::vector<RefMessage>> RefIndex(absl::string_view file) {
  std::vector<RefMessage> out;
  if (file.empty()) return out;
  bool blank = true, header = false, body = false, received = false,
       prev = false, have_cur = false, have_data = false;
  RefMessage cur;
  std::string selected;
  uint64_t off = 0;
  auto finish = [&](uint64_t end, bool trim) {
    cur.raw_size = end - cur.raw_offset;
    cur.data_size = end - (trim ? 1 : 0) - cur.data_offset;
    char u[kUidlLength];
    ComputeUidl(selected, u);
    cur.uidl.assign(u, kUidlLength);
    out.push_back(cur);
  };
  for (const std::string& line : SplitLines(file)) {
    if (blank && line.rfind("From ", 0) == 0) {
      if (off > 0) {
        if (!have_cur || !have_data) return std::nullopt;
        finish(off, body);
      }
      cur = RefMessage();
      cur.raw_offset = off;
      have_cur = true;
      have_data = false;
      header = true;
      body = false;
      received = prev = false;
      selected.clear();
      off += line.size();
      continue;
    }
    if (header && !have_data) {
      have_data = true;
      cur.data_offset = off;
    }
    blank = line[0] == '\n';
    if (!header) {
      if (have_data) body = true;
      off += line.size();
      continue;
    }
    if (blank) {
      header = false;
      off += line.size();
      continue;
    }
    if (RefSelect(line, &received, &prev)) selected += line;
    off += line.size();
  }
  if (!have_cur || !have_data) return std::nullopt;
  finish(off, blank && body);
  return out;
}

// RETR wire form of `data` (no terminating dot), line by line.
inline std::string RefEncode(absl::string_view data) {
  std::string out;
  for (const std::string& line : SplitLines(data)) {
    if (line[0] == '.') out += '.';
    if (absl::EndsWith(line, "\r\n")) {
      out += line;
    } else if (absl::EndsWith(line, "\n")) {
      out.append(line, 0, line.size() - 1);
      out += "\r\n";
    } else {
      out += line;
      out += "\r\n";
    }
  }
  return out;
}

inline uint64_t RefDotLines(absl::string_view data) {
  uint64_t n = 0;
  for (const std::string& line : SplitLines(data)) n += line[0] == '.';
  return n;
}

// TOP prefix: headers through the first "\n" or "\r\n" line, plus `l` lines.
inline std::string RefTop(absl::string_view data, uint64_t l) {
  std::string out;
  bool armed = false;
  uint64_t credits = 0;
  for (const std::string& line : SplitLines(data)) {
    if (!armed && (line == "\n" || line == "\r\n")) {
      armed = true;
      credits = l + 1;
    }
    out += line;
    if (armed && --credits == 0) break;
  }
  return out;
}

}  // namespace popgate::mailbox::testing

#endif  // POPGATE_TESTS_MAILBOX_MBOX_TEST_UTIL_H_
