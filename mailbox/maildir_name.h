// Maildir file names: what the name says about a message (unique part,
// delivery time, sizes) and the UIDL we derive from it.
//
// A Maildir name is
// "<seconds>.<unique>.<host>[,S=<raw>][,W=<wire>][:2,<flags>]" (qmail's
// maildir(5), with Dovecot's S=/W= size fields). Everything in a name is
// untrusted: it was chosen by whoever delivered or renamed the file. The parser
// never fails; a field it cannot read is simply absent, and callers verify
// every size against the file before using it.
//
// Callers: the Maildir maildrop (maildir_maildrop.cc), tests, the
// maildir_name fuzzer. Pure functions, no syscalls; thread-safe.
#ifndef POPGATE_MAILBOX_MAILDIR_NAME_H_
#define POPGATE_MAILBOX_MAILDIR_NAME_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace popgate::mailbox {

// RFC 1939 §7: a UIDL is 1 to 70 characters in 0x21..0x7E.
inline constexpr size_t kMaxUidlChars = 70;

struct MaildirName {
  // The part before the first ':' (the whole name without one): stable
  // across flag changes ("...:2,S" -> "...:2,RS") and moves new/ -> cur/.
  absl::string_view base;
  // Leading decimal seconds followed by '.', at most 12 digits.
  std::optional<int64_t> seconds;
  // "M<usec>" (1..6 digits) in the second dot-separated component
  // (Dovecot/Courier "1035478339.M508452P1234Q1.host").
  std::optional<uint32_t> microseconds;
  // ",S=<n>": the file's size in bytes, as claimed. First field wins.
  std::optional<uint64_t> raw_size;
  // ",W=<n>": the size with every LF counted as CR LF, as claimed.
  std::optional<uint64_t> wire_size;
};

// Never fails. `name` must outlive the returned views.
MaildirName ParseMaildirName(absl::string_view name);

// Whether `uidl` may go on the wire as is (RFC 1939 §7).
bool IsValidUidl(absl::string_view uidl);

// The UIDL for a message whose name has base part `base`: the base itself
// when IsValidUidl(base), else the 32 lowercase hex digits of MD5(base)
// (stable across sessions; a valid base is never 32 hex digits by accident
// in practice, since real unique names contain dots).
std::string MaildirUidl(absl::string_view base);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDIR_NAME_H_
