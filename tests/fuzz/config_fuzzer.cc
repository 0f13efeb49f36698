// Fuzz target for the --listen, --mail and --auth parsers and mail path
// expansion (core/config.h). The first byte picks the parser; the rest is
// the flag value (or "user\0home\0pattern" for ExpandMailPath).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/config.h"

namespace {

using popgate::core::ListenAddress;

std::string Format(const ListenAddress& a) {
  return a.family == 10 ? absl::StrCat("[", a.host, "]:", a.port)
                        : absl::StrCat(a.host, ":", a.port);
}

void FuzzListen(absl::string_view text) {
  auto parsed = popgate::core::ParseListenAddresses(text);
  if (!parsed.ok()) return;
  if (parsed->empty()) std::abort();
  std::vector<std::string> parts;
  for (const ListenAddress& a : *parsed) {
    if (a.family != 2 && a.family != 10) std::abort();
    parts.push_back(Format(a));
  }
  // What we accept we can print back, and it parses to the same thing.
  auto again = popgate::core::ParseListenAddresses(absl::StrJoin(parts, ","));
  if (!again.ok() || *again != *parsed) std::abort();
}

void FuzzMail(absl::string_view text) {
  auto parsed = popgate::core::ParseMailLocation(text);
  if (!parsed.ok()) return;
  if (parsed->pattern.empty()) std::abort();
  if (parsed->pattern[0] != '/' && parsed->pattern.rfind("~/", 0) != 0) {
    std::abort();
  }
  auto path = popgate::core::ExpandMailPath(*parsed, "user", "/home/user");
  if (!path.ok() || path->empty() || (*path)[0] != '/') std::abort();
}

void FuzzAuth(absl::string_view text) {
  auto parsed = popgate::core::ParseAuthSpec(text);
  if (!parsed.ok()) return;
  if (parsed->kind == popgate::core::AuthKind::kPasswdFile &&
      (parsed->path.empty() || parsed->path[0] != '/')) {
    std::abort();
  }
}

void FuzzExpand(absl::string_view text) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits('\0', 2));
  if (parts.size() != 3) return;
  auto location = popgate::core::ParseMailLocation(parts[2]);
  if (!location.ok()) return;
  auto path = popgate::core::ExpandMailPath(*location, parts[0], parts[1]);
  if (!path.ok()) return;
  // An accepted user name is safe in a path: it cannot add a directory
  // level, climb out, or smuggle a NUL.
  if (!popgate::core::IsSafeUserName(parts[0])) std::abort();
  if (path->find('\0') != std::string::npos) std::abort();
  if ((*path)[0] != '/') std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  switch (data[0] % 4) {
    case 0:
      FuzzListen(text);
      break;
    case 1:
      FuzzMail(text);
      break;
    case 2:
      FuzzAuth(text);
      break;
    case 3:
      FuzzExpand(text);
      break;
  }
  return 0;
}
