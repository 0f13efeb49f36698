#include "mailbox/maildir_name.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace popgate::mailbox {
namespace {

// Reads 1..max_digits decimal digits at the start of `s`. Bounding the
// digit count keeps the value far from overflow (12 digits of seconds is
// year 33658; 19 digits of size is below 2^63).
std::optional<uint64_t> LeadingNumber(absl::string_view s, size_t max_digits,
                                      size_t* consumed) {
  size_t n = 0;
  uint64_t v = 0;
  while (n < s.size() &&
         absl::ascii_isdigit(static_cast<unsigned char>(s[n]))) {
    if (n == max_digits) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(s[n] - '0');
    ++n;
  }
  if (n == 0) return std::nullopt;
  *consumed = n;
  return v;
}

// The value of a whole field "<digits>" (nothing after the digits).
std::optional<uint64_t> WholeNumber(absl::string_view s) {
  size_t consumed = 0;
  std::optional<uint64_t> v = LeadingNumber(s, 19, &consumed);
  if (!v.has_value() || consumed != s.size()) return std::nullopt;
  return v;
}

}  // namespace

MaildirName ParseMaildirName(absl::string_view name) {
  MaildirName out;
  const size_t colon = name.find(':');
  out.base = colon == absl::string_view::npos ? name : name.substr(0, colon);
  const absl::string_view base = out.base;

  size_t consumed = 0;
  if (std::optional<uint64_t> secs = LeadingNumber(base, 12, &consumed);
      secs.has_value() && consumed < base.size() && base[consumed] == '.') {
    out.seconds = static_cast<int64_t>(*secs);
    // The second component, up to the next '.' or ',' (the host follows).
    absl::string_view unique = base.substr(consumed + 1);
    unique = unique.substr(0, unique.find_first_of(".,"));
    for (size_t i = 0; i + 1 < unique.size(); ++i) {
      if (unique[i] != 'M') continue;
      size_t n = 0;
      std::optional<uint64_t> usec = LeadingNumber(unique.substr(i + 1), 6, &n);
      if (usec.has_value()) {
        out.microseconds = static_cast<uint32_t>(*usec);
        break;
      }
    }
  }

  // Size fields follow the unique part, comma-separated (Dovecot). A host
  // containing ',' is written as "\054" by conforming MDAs, so a field is
  // only taken when it is exactly "S=<digits>" or "W=<digits>".
  size_t pos = base.find(',');
  while (pos != absl::string_view::npos) {
    const size_t next = base.find(',', pos + 1);
    absl::string_view field = base.substr(
        pos + 1, next == absl::string_view::npos ? absl::string_view::npos
                                                 : next - pos - 1);
    if (absl::StartsWith(field, "S=") && !out.raw_size.has_value()) {
      out.raw_size = WholeNumber(field.substr(2));
    } else if (absl::StartsWith(field, "W=") && !out.wire_size.has_value()) {
      out.wire_size = WholeNumber(field.substr(2));
    }
    pos = next;
  }
  return out;
}

bool IsValidUidl(absl::string_view uidl) {
  if (uidl.empty() || uidl.size() > kMaxUidlChars) return false;
  for (char c : uidl) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return false;
  }
  return true;
}

std::string MaildirUidl(absl::string_view base) {
  if (IsValidUidl(base)) return std::string(base);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(base.data(), base.size(), digest, &len, EVP_md5(), nullptr) !=
      1) {
    // MD5 from the default provider cannot fail short of memory exhaustion
    // (STYLE §3: unlikely post-startup failures end the process).
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace popgate::mailbox
