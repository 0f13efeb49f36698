// Parsers for the payloads of STAT, LIST and UIDL replies (RFC 1939 §5, §7),
// strict where a real client would be confused, and the cross-session UIDL
// stability check.
//
// Untrusted: input is server output. UidlTracker is thread-safe.
#ifndef POPGATE_TOOLS_FLOOD_LISTING_H_
#define POPGATE_TOOLS_FLOOD_LISTING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace popgate::flood {

struct StatReply {
  uint64_t messages = 0;
  uint64_t octets = 0;
};
// Parses the text after "+OK " of a STAT reply: "nn mm" (more text after is
// tolerated). InvalidArgument otherwise.
absl::StatusOr<StatReply> ParseStat(absl::string_view status_text);

struct ListingEntry {
  uint64_t msn = 0;
  std::string value;  // size (LIST) or unique-id (UIDL)
};
// Parses an unstuffed multi-line body of "msn value\r\n" lines. Message
// numbers must strictly increase (deleted ones are skipped, never reordered).
// InvalidArgument naming the first bad line.
absl::StatusOr<std::vector<ListingEntry>> ParseListing(absl::string_view body);

// Remembers the last UIDL list per user and checks each new one against it.
class UidlTracker {
 public:
  // Past this many stored ids new users are not tracked: memory stays
  // bounded whatever the mailboxes hold (about 100 MB at 40-byte ids).
  static constexpr size_t kMaxTrackedIds = 2'000'000;

  // `deletes_expected`: some scenario in the run sends DELE.
  explicit UidlTracker(bool deletes_expected)
      : deletes_expected_(deletes_expected) {}

  // Returns false if `uids` (in msn order) contradicts the previous list of
  // `user`. Without deletes a mailbox only grows at the end, so the previous
  // list, minus ids no longer present, must be a prefix of the new one
  // whatever order concurrent sessions were recorded in. With deletes by
  // overlapping sessions only the relative order of common ids is checked.
  bool Check(const std::string& user, std::vector<std::string> uids);

  // The pure comparison, for tests.
  static bool Consistent(const std::vector<std::string>& before,
                         const std::vector<std::string>& after,
                         bool deletes_expected);

 private:
  const bool deletes_expected_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::vector<std::string>> last_
      ABSL_GUARDED_BY(mu_);
  size_t stored_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_LISTING_H_
