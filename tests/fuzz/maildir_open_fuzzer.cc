// Fuzz target for opening a Maildir (mailbox/maildir.h): file names and
// contents are chosen by whoever delivers or renames mail, so the input
// builds a scratch Maildir of such files, opens it, and reads, TOPs and
// deletes through the Maildrop. Checks:
//  - every message listed is a regular file of new/ or cur/ that we wrote,
//    none starting with '.', in delivery-time order;
//  - UIDLs are valid RFC 1939 UIDLs and unique;
//  - RETR octets decode to the file (bare LF -> CR LF, dot-stuffed, CR LF
//    ended) and, before dot-stuffing, number the LIST size; TOP is a prefix;
//  - Commit deletes exactly the chosen files; the lock is released on close.
//
// Input layout: one options octet (bit 0-1: max_messages 1/3/all, bit 2: a
// small max_bytes, bit 3: no new/, bits 4-7: which messages to delete),
// then records: kind octet (bit 0: cur/ else new/; bits 1-2: 0 file,
// 1 symlink to the previous file, 2 directory, 3 file in tmp/), name length
// octet, name, 2-octet little-endian content length (mod 4096), content.
// A name the filesystem cannot hold ('/', NUL, ".", "..", empty) is skipped.
// Seeds: tests/fuzz/corpus/maildir_open/.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "mailbox/maildir.h"
#include "mailbox/maildir_maildrop.h"
#include "mailbox/maildir_name.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace fs = std::filesystem;
using popgate::mailbox::IsValidUidl;
using popgate::mailbox::MaildirMaildrop;
using popgate::mailbox::MaildirOptions;
using popgate::mailbox::WireStream;

using ::popgate::fuzz::Check;

// One scratch Maildir per process, emptied before each input.
const std::string& ScratchDir() { return popgate::fuzz::ScratchDir("maildir"); }

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ == end_; }
  uint8_t Byte() { return p_ < end_ ? *p_++ : 0; }
  absl::string_view Bytes(size_t n) {
    n = std::min<size_t>(n, end_ - p_);
    absl::string_view out(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return out;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

bool WriteFile(const std::string& path, absl::string_view content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return false;
  const bool ok = ::write(fd, content.data(), content.size()) ==
                  static_cast<ssize_t>(content.size());
  ::close(fd);
  return ok;
}

std::string ReadAll(WireStream& stream, size_t max_bytes) {
  std::string out;
  for (;;) {
    std::vector<absl::string_view> segs;
    auto more = stream.Next(max_bytes, &segs);
    Check(more.ok(), "reading an unchanged file cannot fail");
    for (absl::string_view s : segs) out.append(s.data(), s.size());
    if (!*more) return out;
  }
}

// The wire form of stored bytes, as wire_stream.h defines it.
std::string WireOf(absl::string_view data) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < data.size(); ++i) {
    if (line_start && data[i] == '.') out += '.';
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) out += '\r';
    out += data[i];
    line_start = data[i] == '\n';
  }
  if (!data.empty() && data.back() != '\n') out += "\r\n";
  return out;
}

uint64_t StuffedDots(absl::string_view wire) {
  uint64_t dots = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    dots += wire[i] == '.' && (i == 0 || wire[i - 1] == '\n');
  }
  return dots;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = ScratchDir();
  for (const char* sub : {"new", "cur", "tmp"}) fs::remove_all(dir + "/" + sub);
  Check(!fs::exists(dir + "/popgate.lock"), "lock left behind");

  Reader in(data, size);
  const uint8_t options_byte = in.Byte();
  MaildirOptions options;
  const size_t limits[] = {1, 3, options.max_messages, options.max_messages};
  options.max_messages = limits[options_byte & 3];
  if (options_byte & 4) options.max_bytes = 64;
  const bool no_new = options_byte & 8;
  for (const char* sub : {"new", "cur", "tmp"}) {
    if (no_new && absl::string_view(sub) == "new") continue;
    fs::create_directory(dir + "/" + sub);
  }

  // (in_cur, name) -> content, for the regular files a listing may show.
  std::map<std::pair<bool, std::string>, std::string> files;
  std::string previous;  // path of the last file written, for symlinks
  while (!in.done()) {
    const uint8_t kind = in.Byte();
    const std::string name(in.Bytes(in.Byte()));
    const size_t length = (in.Byte() | (in.Byte() << 8)) % 4096;
    const std::string content(in.Bytes(length));
    if (name.empty() || name == "." || name == ".." ||
        name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      continue;
    }
    const bool in_cur = kind & 1;
    const int type = (kind >> 1) & 3;
    const std::string sub = type == 3 ? "tmp" : in_cur ? "cur" : "new";
    const std::string path = absl::StrCat(dir, "/", sub, "/", name);
    if (type == 0) {
      if (!WriteFile(path, content)) continue;
      files[{in_cur, name}] = content;
      previous = path;
    } else if (type == 1) {
      if (!previous.empty()) (void)::symlink(previous.c_str(), path.c_str());
    } else if (type == 2) {
      (void)::mkdir(path.c_str(), 0700);
    } else {
      WriteFile(path, content);
    }
  }

  auto opened = MaildirMaildrop::Open(dir, options);
  if (!opened.ok()) {
    Check(opened.status().code() == absl::StatusCode::kResourceExhausted,
          "only the limits refuse a well-formed maildir");
    return 0;
  }
  MaildirMaildrop& drop = **opened;
  Check(drop.locked(), "an open maildir holds its lock");
  const auto& messages = drop.messages();
  Check(drop.message_count() == messages.size(), "message_count");
  size_t listed_regular = 0;
  for (const auto& [key, content] : files) {
    listed_regular += key.second[0] != '.';
  }
  Check(messages.size() == listed_regular, "every regular file is listed");

  std::set<std::string> uidls;
  for (size_t i = 0; i < messages.size(); ++i) {
    const MaildirMaildrop::Message& m = messages[i];
    auto it = files.find({m.in_cur, m.name});
    Check(it != files.end(), "listed a file we did not write");
    Check(m.name[0] != '.', "dot file listed");
    Check(m.raw_size == it->second.size(), "raw size");
    if (i > 0) {
      const auto& p = messages[i - 1];
      Check(std::make_pair(p.sort_seconds, p.sort_micros) <=
                std::make_pair(m.sort_seconds, m.sort_micros),
            "delivery-time order");
    }
    const std::string uidl(drop.uidl(i));
    Check(IsValidUidl(uidl), "UIDL is valid");
    Check(uidls.insert(uidl).second, "UIDLs are unique");

    auto stream = drop.Retrieve(i, std::nullopt);
    Check(stream.ok(), "Retrieve of an unchanged file");
    const std::string wire = ReadAll(**stream, 1 + (i * 37) % 500);
    stream->reset();
    Check(wire == WireOf(it->second), "RETR is the wire form of the file");
    Check(wire.size() - StuffedDots(wire) == drop.message_size(i),
          "LIST size == RETR octets before dot-stuffing");
    Check(drop.CheckUnchanged().ok(), "CheckUnchanged after RETR");
    for (uint64_t lines : {0ull, 2ull}) {
      auto top = drop.Retrieve(i, lines);
      Check(top.ok(), "TOP of an unchanged file");
      const std::string head = ReadAll(**top, 64);
      Check(wire.compare(0, head.size(), head) == 0, "TOP is a prefix of RETR");
    }
  }

  std::vector<size_t> doomed;
  for (size_t i = 0; i < messages.size(); ++i) {
    if ((options_byte >> (4 + i % 4)) & 1) doomed.push_back(i);
  }
  std::vector<std::pair<bool, std::string>> names;
  for (const auto& m : messages) names.push_back({m.in_cur, m.name});
  Check(drop.Commit(doomed).ok(), "Commit");
  size_t next = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const bool deleted = next < doomed.size() && doomed[next] == i;
    next += deleted;
    const std::string path = absl::StrCat(
        dir, "/", names[i].first ? "cur" : "new", "/", names[i].second);
    Check(fs::exists(fs::symlink_status(path)) != deleted,
          "Commit deletes exactly the chosen messages");
  }
  opened->reset();
  Check(!fs::exists(dir + "/popgate.lock"), "lock released on close");
  return 0;
}
