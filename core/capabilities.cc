#include "core/capabilities.h"

#include "absl/strings/str_cat.h"
#include "core/replies.h"

namespace popgate::core {

std::string CapabilityReply(bool authenticated,
                            absl::string_view implementation) {
  std::string reply(replies::kCapaHeader);
  absl::StrAppend(&reply, "TOP\r\nUIDL\r\n");
  if (!authenticated) absl::StrAppend(&reply, "USER\r\n");
  absl::StrAppend(&reply, "RESP-CODES\r\nPIPELINING\r\n");
  if (!authenticated) {
    // RFC 3206 §3: every credential failure carries [AUTH].
    absl::StrAppend(&reply, "AUTH-RESP-CODE\r\n");
  } else if (!implementation.empty()) {
    std::string clean;
    for (char c : implementation) {
      if (c != '\r' && c != '\n' && c != '\0') clean.push_back(c);
    }
    if (!clean.empty()) {
      absl::StrAppend(&reply, "IMPLEMENTATION ", clean, "\r\n");
    }
  }
  absl::StrAppend(&reply, replies::kEndOfMultiline);
  return reply;
}

}  // namespace popgate::core
