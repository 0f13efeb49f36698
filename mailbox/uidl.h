// popa3d-compatible UIDL: which header lines are hashed, and the digest.
//
// Compatibility-critical (reference §4.5): any change here changes existing
// users' UIDLs and makes their clients re-download mail. The rules, per raw
// header line (exact bytes, CR and LF included, in file order):
//   - SP/HT first (continuation): same decision as the previous header line;
//     a continuation right after the From_ line is not selected.
//   - R/r: the first "Received:" (case-insensitive) only.
//   - D/d: every "Delivered-To:"; "Date:" only before the first Received:.
//   - M/m: "Message-ID:" only before the first Received:.
//   - X (uppercase only): "X-Delivery-ID:" (rest case-insensitive).
// UIDL = MD5 over the selected lines (or over nothing), printed as 16
// lowercase hex digits from digest bytes 3,2,1,0,7,6,5,4.
//
// Threading: a UidlHasher is single-threaded; use one per indexing thread.
#ifndef POPGATE_MAILBOX_UIDL_H_
#define POPGATE_MAILBOX_UIDL_H_

#include <cstddef>

#include "absl/strings/string_view.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace popgate::mailbox {

inline constexpr size_t kUidlLength = 16;

// The UIDL of a message with no selected header line (MD5 of "").
inline constexpr absl::string_view kEmptyUidl = "d98c1dd404b2008f";

// Per-message selection state. Reset() at each From_ line.
class UidlSelector {
 public:
  void Reset() {
    received_ = false;
    previous_ = false;
  }
  // Whether `line` (a complete raw header line, non-empty) is hashed.
  bool Select(absl::string_view line);

 private:
  bool received_ = false;  // a Received: line has been seen
  bool previous_ = false;  // decision for the last non-continuation line
};

// MD5 via OpenSSL EVP, formatted the popa3d way. Move-less, copy-less.
class UidlHasher {
 public:
  UidlHasher();
  ~UidlHasher();
  UidlHasher(const UidlHasher&) = delete;
  UidlHasher& operator=(const UidlHasher&) = delete;

  // Starts a message. Cheap: MD5 is only initialised on the first Update().
  void Begin() { started_ = false; }
  void Update(absl::string_view line);
  // Writes kUidlLength characters to `out`.
  void Finish(char* out);

 private:
  EVP_MD_CTX* ctx_;
  bool started_ = false;
};

// The UIDL of `header_lines` (the concatenation of the selected lines).
// Convenience for tests and tools; the indexer streams through UidlHasher.
void ComputeUidl(absl::string_view selected_bytes, char* out);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_UIDL_H_
