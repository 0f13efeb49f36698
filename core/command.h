// POP3 command-line parsing with popa3d's exact accept/reject rules
// (popa3d-behaviour.md §3.2: pop_handle_state, pop_get_param, pop_get_int).
//
//  - The keyword is the text before the first single space, matched
//    case-insensitively; tabs are not separators ("USER\tx" is unknown).
//    An empty remainder after that space means "no arguments" ("STAT ").
//  - Arguments split at single spaces. A token over 40 octets is invalid;
//    two spaces make an empty token; one trailing space is tolerated.
//  - Numbers follow strtol(base 10) + range checks, without locale: leading
//    C-locale whitespace (tab, CR, VT, FF), one optional sign and leading
//    zeros are accepted; empty, no digits, trailing junk, a negative value
//    or one beyond INT_MAX are rejected ("-0" is 0, as with strtol).
//
// Pure functions over string_views; callers own the line.
#ifndef POPGATE_CORE_COMMAND_H_
#define POPGATE_CORE_COMMAND_H_

#include <cstddef>
#include <optional>

#include "absl/strings/string_view.h"

namespace popgate::core {

enum class Command {
  kUnknown,
  // AUTHORIZATION
  kUser,
  kPass,
  // Both states
  kQuit,
  kCapa,
  // TRANSACTION
  kStat,
  kList,
  kUidl,
  kRetr,
  kTop,
  kDele,
  kRset,
  kLast,
  kNoop,
};

// RFC 1939 §3: each argument up to 40 characters (popa3d enforces it).
inline constexpr size_t kMaxArgumentBytes = 40;

struct CommandLine {
  Command command = Command::kUnknown;
  absl::string_view keyword;
  // Text after the first space; nullopt when there is none or it is empty
  // (popa3d's `params == NULL`).
  std::optional<absl::string_view> arguments;
};

// Splits a line (CR LF already removed) into keyword and arguments.
CommandLine ParseCommandLine(absl::string_view line);

// popa3d's pop_get_param over a remainder: each call returns the next token
// or nullopt if the token is over 40 octets or nothing is left.
class ArgumentReader {
 public:
  explicit ArgumentReader(std::optional<absl::string_view> arguments)
      : rest_(arguments) {}

  // The next token (possibly empty: "a  b"), or nullopt when exhausted or
  // when the token exceeds kMaxArgumentBytes. Like popa3d, an overlong token
  // is still consumed.
  std::optional<absl::string_view> NextToken();
  // popa3d's pop_get_int: the next token as a non-negative int, or nullopt.
  std::optional<int> NextInt();
  // True once no argument remains (popa3d: `params == NULL`).
  bool done() const { return !rest_.has_value(); }

 private:
  std::optional<absl::string_view> rest_;
};

// strtol(base 10)-compatible number check used by NextInt(): returns the
// value if `token` is an accepted non-negative int, else nullopt.
std::optional<int> ParseNonNegativeInt(absl::string_view token);

}  // namespace popgate::core

#endif  // POPGATE_CORE_COMMAND_H_
