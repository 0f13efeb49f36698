#include "core/command.h"

#include <climits>
#include <cstdint>

#include "absl/strings/match.h"

namespace popgate::core {
namespace {

struct KeywordEntry {
  absl::string_view keyword;
  Command command;
};

constexpr KeywordEntry kKeywords[] = {
    {"USER", Command::kUser}, {"PASS", Command::kPass},
    {"QUIT", Command::kQuit}, {"CAPA", Command::kCapa},
    {"STAT", Command::kStat}, {"LIST", Command::kList},
    {"UIDL", Command::kUidl}, {"RETR", Command::kRetr},
    {"TOP", Command::kTop},   {"DELE", Command::kDele},
    {"RSET", Command::kRset}, {"LAST", Command::kLast},
    {"NOOP", Command::kNoop},
};

// isspace() in the C locale; strtol skips these before the number.
bool IsCSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

}  // namespace

CommandLine ParseCommandLine(absl::string_view line) {
  CommandLine result;
  const size_t space = line.find(' ');
  result.keyword = line.substr(0, space);
  if (space != absl::string_view::npos && space + 1 < line.size()) {
    result.arguments = line.substr(space + 1);
  }
  // Keywords are 3 or 4 octets; skip the table for anything else.
  if (result.keyword.size() == 3 || result.keyword.size() == 4) {
    for (const KeywordEntry& entry : kKeywords) {
      if (absl::EqualsIgnoreCase(entry.keyword, result.keyword)) {
        result.command = entry.command;
        break;
      }
    }
  }
  return result;
}

std::optional<absl::string_view> ArgumentReader::NextToken() {
  if (!rest_.has_value()) return std::nullopt;
  absl::string_view current = *rest_;
  const size_t space = current.find(' ');
  if (space == absl::string_view::npos) {
    rest_.reset();
  } else {
    // popa3d: an empty remainder after the separator is "no more
    // parameters", which is what tolerates one trailing space.
    absl::string_view next = current.substr(space + 1);
    current = current.substr(0, space);
    if (next.empty()) {
      rest_.reset();
    } else {
      rest_ = next;
    }
  }
  if (current.size() > kMaxArgumentBytes) return std::nullopt;
  return current;
}

std::optional<int> ArgumentReader::NextInt() {
  std::optional<absl::string_view> token = NextToken();
  if (!token.has_value()) return std::nullopt;
  return ParseNonNegativeInt(*token);
}

std::optional<int> ParseNonNegativeInt(absl::string_view token) {
  size_t i = 0;
  while (i < token.size() && IsCSpace(token[i])) ++i;
  bool negative = false;
  if (i < token.size() && (token[i] == '+' || token[i] == '-')) {
    negative = token[i] == '-';
    ++i;
  }
  if (i == token.size()) return std::nullopt;  // no digits
  // Accumulate with saturation: any value past INT_MAX is rejected whatever
  // its length (strtol would report ERANGE or a value not fitting int).
  int64_t value = 0;
  for (; i < token.size(); ++i) {
    const char c = token[i];
    if (c < '0' || c > '9') return std::nullopt;  // trailing junk
    if (value <= INT_MAX) value = value * 10 + (c - '0');
  }
  if (value > INT_MAX) return std::nullopt;
  if (negative && value != 0) return std::nullopt;
  return static_cast<int>(value);
}

}  // namespace popgate::core
