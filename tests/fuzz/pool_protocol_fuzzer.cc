// Fuzz target for the --mode=pool wire codec (net/pool_protocol.h): the
// auth process and the master decode datagrams from workers, which may be
// compromised. Any bytes go to all four decoders; none may crash or read
// past the input, and whatever one accepts must be canonical: encoding the
// decoded message gives back exactly the input (decoders are strict, so
// two byte strings never mean the same message).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "net/pool_protocol.h"

namespace {

using popgate::net::kMaxMessageBytes;

template <typename Decoded, typename Encode>
void CheckCanonical(absl::string_view input, const Decoded& decoded,
                    Encode encode) {
  if (!decoded.ok()) return;
  if (input.size() > kMaxMessageBytes) std::abort();
  if (encode(*decoded) != input) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  namespace net = popgate::net;
  CheckCanonical(input, net::DecodeHandoff(input), net::EncodeHandoff);
  CheckCanonical(input, net::DecodeWorkerReport(input),
                 net::EncodeWorkerReport);
  CheckCanonical(input, net::DecodeAuthRequest(input), net::EncodeAuthRequest);
  CheckCanonical(input, net::DecodeAuthReply(input), net::EncodeAuthReply);
  // At most one decoder accepts a given datagram (the type byte).
  const int accepted =
      net::DecodeHandoff(input).ok() + net::DecodeWorkerReport(input).ok() +
      net::DecodeAuthRequest(input).ok() + net::DecodeAuthReply(input).ok();
  if (accepted > 1) std::abort();
  return 0;
}
