// The CAPA reply (RFC 2449 §5), which differs before and after login.
//
// Before login: TOP, UIDL, USER, RESP-CODES, PIPELINING, AUTH-RESP-CODE.
// After login: TOP, UIDL, RESP-CODES, PIPELINING, IMPLEMENTATION <text>.
// IMPLEMENTATION is hidden before login (RFC 2449 allows it) so an
// unauthenticated scanner learns nothing about the server. LOGIN-DELAY and
// EXPIRE are not advertised: we enforce neither.
#ifndef POPGATE_CORE_CAPABILITIES_H_
#define POPGATE_CORE_CAPABILITIES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace popgate::core {

// The full multi-line reply, "+OK ..." through the final ".\r\n".
// `implementation` empty = not advertised; CR and LF in it are dropped so a
// configuration value cannot inject lines.
std::string CapabilityReply(bool authenticated,
                            absl::string_view implementation);

}  // namespace popgate::core

#endif  // POPGATE_CORE_CAPABILITIES_H_
