#include "mailbox/uidl.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"

namespace popgate::mailbox {
namespace {

bool HasPrefix(absl::string_view line, absl::string_view prefix) {
  return absl::StartsWithIgnoreCase(line, prefix);
}

// Fetched once: implicit fetching inside EVP_DigestInit_ex costs a lookup
// per message. Never freed (process lifetime).
const EVP_MD* Md5() {
  static const EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "MD5", nullptr);
    // MD5 is in the default provider; without it no UIDL can be computed
    // and the server cannot be popa3d-compatible at all.
    if (fetched == nullptr) std::abort();
    return fetched;
  }();
  return md;
}

void FormatDigest(const unsigned char* d, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  // popa3d prints the first two little-endian 32-bit MD5 words big-endian.
  static constexpr int kOrder[8] = {3, 2, 1, 0, 7, 6, 5, 4};
  for (int i = 0; i < 8; ++i) {
    out[2 * i] = kHex[d[kOrder[i]] >> 4];
    out[2 * i + 1] = kHex[d[kOrder[i]] & 0xf];
  }
}

}  // namespace

bool UidlSelector::Select(absl::string_view line) {
  bool selected;
  switch (line[0]) {
    case ' ':
    case '\t':
      return previous_;
    case 'R':
    case 'r':
      selected = !received_ && HasPrefix(line, "Received:");
      if (selected) received_ = true;
      break;
    case 'D':
    case 'd':
      selected = HasPrefix(line, "Delivered-To:") ||
                 (!received_ && HasPrefix(line, "Date:"));
      break;
    case 'M':
    case 'm':
      selected = !received_ && HasPrefix(line, "Message-ID:");
      break;
    case 'X':  // Uppercase only, as popa3d.
      selected = HasPrefix(line, "X-Delivery-ID:");
      break;
    default:
      selected = false;
      break;
  }
  previous_ = selected;
  return selected;
}

UidlHasher::UidlHasher() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();  // ENOMEM: log-and-exit class.
}

UidlHasher::~UidlHasher() { EVP_MD_CTX_free(ctx_); }

void UidlHasher::Update(absl::string_view line) {
  if (!started_) {
    EVP_DigestInit_ex2(ctx_, Md5(), nullptr);
    started_ = true;
  }
  EVP_DigestUpdate(ctx_, line.data(), line.size());
}

void UidlHasher::Finish(char* out) {
  if (!started_) {
    std::memcpy(out, kEmptyUidl.data(), kUidlLength);
    return;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, digest, &len);
  started_ = false;
  FormatDigest(digest, out);
}

void ComputeUidl(absl::string_view selected_bytes, char* out) {
  UidlHasher hasher;
  hasher.Begin();
  if (!selected_bytes.empty()) hasher.Update(selected_bytes);
  hasher.Finish(out);
}

}  // namespace popgate::mailbox
