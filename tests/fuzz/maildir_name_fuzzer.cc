// Fuzz target for the Maildir name parser (mailbox/maildir_name.h): file
// names are chosen by whoever delivers or renames mail, so every byte
// sequence must parse without crashing and yield a wire-safe UIDL.
// Seeds: tests/fuzz/corpus/maildir_name/.
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "mailbox/maildir_name.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::mailbox::IsValidUidl;
using popgate::mailbox::MaildirName;
using popgate::mailbox::MaildirUidl;
using popgate::mailbox::ParseMaildirName;

using ::popgate::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const absl::string_view name(reinterpret_cast<const char*>(bytes), size);
  const MaildirName n = ParseMaildirName(name);
  Check(n.base.data() == name.data(), "base is a prefix of the name");
  Check(n.base.size() <= name.size(), "base within the name");
  Check(n.base.find(':') == absl::string_view::npos, "base has no ':'");
  Check(n.base.size() == name.size() || name[n.base.size()] == ':',
        "base ends at the first ':'");
  if (n.seconds.has_value()) {
    Check(*n.seconds >= 0 && *n.seconds < 1000000000000, "seconds bounded");
    Check(absl::StartsWith(n.base, absl::StrCat(*n.seconds)) ||
              n.base[0] == '0',
          "seconds are the leading digits");
  }
  if (n.microseconds.has_value()) {
    Check(n.seconds.has_value(), "microseconds only after seconds");
    Check(*n.microseconds < 1000000, "microseconds < 1 s");
  }
  if (n.raw_size.has_value()) {
    Check(absl::StrContains(n.base, absl::StrCat("S=", *n.raw_size)) ||
              absl::StrContains(n.base, "S=0"),
          "S= value appears in the base");
  }
  if (n.wire_size.has_value()) {
    Check(absl::StrContains(n.base, absl::StrCat("W=", *n.wire_size)) ||
              absl::StrContains(n.base, "W=0"),
          "W= value appears in the base");
  }
  const std::string uidl = MaildirUidl(n.base);
  Check(IsValidUidl(uidl), "UIDL is 1..70 chars of 0x21..0x7e");
  Check(uidl == MaildirUidl(n.base), "UIDL is deterministic");
  if (IsValidUidl(n.base)) {
    Check(uidl == n.base, "a valid base is its own UIDL");
  } else {
    Check(uidl.size() == 32, "fallback is 32 hex digits");
    for (char c : uidl) {
      Check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'),
            "fallback is lowercase hex");
    }
  }
  return 0;
}
