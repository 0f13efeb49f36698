// Every fixed reply line the POP3 state machine sends, CR LF included, in one
// place so compatibility reviews (popa3d-behaviour.md §3, §7.5) read one file.
//
// popa3d sends bare "+OK" for the greeting and most replies; we keep those
// octets exactly. Text after "-ERR" is free (RFC 1939 §3) and clients do not
// parse it, so our -ERR lines carry a short reason; the auth failure text is
// popa3d's (fail2ban and users know it), prefixed by the RFC 3206 code.
// Response codes follow RFC 2449 §8 / RFC 3206 and are advertised in CAPA.
#ifndef POPGATE_CORE_REPLIES_H_
#define POPGATE_CORE_REPLIES_H_

#include "absl/strings/string_view.h"

namespace popgate::core::replies {

inline constexpr absl::string_view kGreeting = "+OK\r\n";
inline constexpr absl::string_view kOk = "+OK\r\n";
inline constexpr absl::string_view kEndOfMultiline = ".\r\n";
inline constexpr absl::string_view kCapaHeader =
    "+OK Capability list follows\r\n";

// Protocol errors (counted as bad commands).
inline constexpr absl::string_view kUnknownCommand = "-ERR Unknown command\r\n";
inline constexpr absl::string_view kWrongState =
    "-ERR Command not valid in this state\r\n";
inline constexpr absl::string_view kSyntaxError = "-ERR Invalid arguments\r\n";
inline constexpr absl::string_view kLineTooLong = "-ERR Line too long\r\n";
inline constexpr absl::string_view kNulInLine = "-ERR NUL byte in command\r\n";
inline constexpr absl::string_view kUserAlreadyGiven =
    "-ERR USER already given\r\n";
inline constexpr absl::string_view kUserFirst = "-ERR USER first\r\n";
inline constexpr absl::string_view kTooManyBadCommands =
    "-ERR Too many bad commands\r\n";

// Not counted: a well-formed request for a message that is not there.
inline constexpr absl::string_view kNoSuchMessage = "-ERR No such message\r\n";

// Authentication outcomes (AuthVerdict).
inline constexpr absl::string_view kAuthFailed =
    "-ERR [AUTH] Authentication failed (bad password?)\r\n";
inline constexpr absl::string_view kAuthTempFailure =
    "-ERR [SYS/TEMP] Temporary failure, try again later\r\n";
inline constexpr absl::string_view kMailboxInUse =
    "-ERR [IN-USE] Mailbox is locked by another session\r\n";
inline constexpr absl::string_view kMailboxLoadFailed =
    "-ERR [SYS/PERM] Unable to open mailbox\r\n";

// UPDATE failed for a reason other than a foreign rewrite.
inline constexpr absl::string_view kUpdateFailed =
    "-ERR [SYS/TEMP] Failed to update mailbox\r\n";

}  // namespace popgate::core::replies

#endif  // POPGATE_CORE_REPLIES_H_
