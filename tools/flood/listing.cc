#include "tools/flood/listing.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace popgate::flood {

absl::StatusOr<StatReply> ParseStat(absl::string_view status_text) {
  std::vector<absl::string_view> tokens =
      absl::StrSplit(status_text, ' ', absl::SkipEmpty());
  StatReply r;
  if (tokens.size() < 2 || !absl::SimpleAtoi(tokens[0], &r.messages) ||
      !absl::SimpleAtoi(tokens[1], &r.octets) ||
      !absl::ascii_isdigit(tokens[0][0]) ||
      !absl::ascii_isdigit(tokens[1][0])) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad STAT reply '", status_text, "'"));
  }
  return r;
}

absl::StatusOr<std::vector<ListingEntry>> ParseListing(absl::string_view body) {
  std::vector<ListingEntry> out;
  uint64_t last_msn = 0;
  size_t line_no = 0;
  while (!body.empty()) {
    ++line_no;
    const size_t eol = body.find("\r\n");
    if (eol == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listing line ", line_no, ": no CRLF"));
    }
    absl::string_view line = body.substr(0, eol);
    body.remove_prefix(eol + 2);
    const size_t sp = line.find(' ');
    ListingEntry e;
    if (sp == absl::string_view::npos || sp == 0 ||
        !absl::ascii_isdigit(line[0]) ||
        !absl::SimpleAtoi(line.substr(0, sp), &e.msn) || e.msn <= last_msn ||
        sp + 1 >= line.size() ||
        line.substr(sp + 1).find(' ') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listing line ", line_no, ": bad '", line, "'"));
    }
    last_msn = e.msn;
    e.value = std::string(line.substr(sp + 1));
    out.push_back(std::move(e));
  }
  return out;
}

bool UidlTracker::Consistent(const std::vector<std::string>& before,
                             const std::vector<std::string>& after,
                             bool deletes_expected) {
  // Multisets: popa3d-compatible UIDLs may repeat, and repeats must stay.
  absl::flat_hash_map<absl::string_view, int> in_after;
  for (const std::string& u : after) ++in_after[u];
  std::vector<absl::string_view> kept;
  for (const std::string& u : before) {
    auto it = in_after.find(u);
    if (it != in_after.end() && it->second > 0) {
      --it->second;
      kept.push_back(u);
    }
  }
  if (!deletes_expected) {
    // kept must be a prefix of after: nothing inserted before old mail.
    if (kept.size() > after.size()) return false;
    for (size_t i = 0; i < kept.size(); ++i) {
      if (kept[i] != after[i]) return false;
    }
    return true;
  }
  // Relative order of the common ids must agree.
  absl::flat_hash_map<absl::string_view, int> in_before;
  for (const std::string& u : before) ++in_before[u];
  size_t k = 0;
  for (const std::string& u : after) {
    auto it = in_before.find(u);
    if (it == in_before.end() || it->second == 0) continue;
    --it->second;
    if (k >= kept.size() || kept[k] != u) return false;
    ++k;
  }
  return k == kept.size();
}

bool UidlTracker::Check(const std::string& user,
                        std::vector<std::string> uids) {
  absl::MutexLock lock(&mu_);
  auto it = last_.find(user);
  if (it == last_.end()) {
    if (stored_ + uids.size() > kMaxTrackedIds) return true;
    stored_ += uids.size();
    last_.emplace(user, std::move(uids));
    return true;
  }
  const bool ok = Consistent(it->second, uids, deletes_expected_);
  stored_ = stored_ - it->second.size() + uids.size();
  it->second = std::move(uids);
  return ok;
}

}  // namespace popgate::flood
