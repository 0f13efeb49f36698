// The messages of --mode=pool between the master, the workers and the auth
// process. Every channel is an AF_UNIX SOCK_SEQPACKET socketpair (message
// boundaries kept, EOF when the other side dies).
//
//   master -> worker : Handoff + the accepted socket (SCM_RIGHTS, one fd)
//   worker -> master : WorkerReport (session ended, auth outcome)
//   master -> auth   : one worker's auth channel end (SCM_RIGHTS, payload
//                      kAuthChannelTag)
//   worker <-> auth  : AuthWireRequest / AuthWireReply
//
// Trust: workers are unprivileged and parse client bytes, so the master and
// the auth process treat everything a worker sends as hostile: Decode*()
// checks every length and enum and never reads past the datagram. Messages
// are at most kMaxMessageBytes.
#ifndef POPGATE_NET_POOL_PROTOCOL_H_
#define POPGATE_NET_POOL_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "net/address.h"
#include "net/unique_fd.h"

namespace popgate::net {

inline constexpr size_t kMaxMessageBytes = 4096;
inline constexpr char kAuthChannelTag = 'A';

// master -> worker, sent with the accepted socket.
struct Handoff {
  uint64_t session_id = 0;  // the master's id; echoed in WorkerReport
  SocketAddress peer;
};

enum class WorkerEvent : uint8_t {
  kSessionEnded = 1,  // the session's socket is closed
  kAuthFailed = 2,    // a PASS was refused (counted by the master)
  kAuthSucceeded = 3,
};

// worker -> master.
struct WorkerReport {
  WorkerEvent event = WorkerEvent::kSessionEnded;
  uint64_t session_id = 0;
};

// worker -> auth process. Fields are bounded by the session's line cap.
struct AuthWireRequest {
  uint64_t request_id = 0;  // the worker's; echoed in the reply
  std::string remote_host;  // numeric ("127.0.0.1"), for PAM_RHOST + penalties
  std::string user;
  std::string password;
};

enum class AuthWireVerdict : uint8_t {
  kOk = 1,
  kDenied = 2,       // wrong password, unknown user, locked-out source
  kTempFailure = 3,  // backend failure or auth queue full
};

// auth process -> worker.
struct AuthWireReply {
  uint64_t request_id = 0;
  AuthWireVerdict verdict = AuthWireVerdict::kDenied;
  bool known_user = false;  // for popa3d's "UNKNOWN USER" log line only
  uint32_t uid = 0;         // the rest only for kOk
  uint32_t gid = 0;
  std::string name;
  std::string home;
};

// Encodings (little-endian fixed fields, u16 length-prefixed strings).
// Decode: InvalidArgument for any malformed, truncated or oversized input.
// Encode never truncates a field: fields too long for kMaxMessageBytes give
// an oversized encoding, which SendMessage refuses.
std::string EncodeHandoff(const Handoff& handoff);
absl::StatusOr<Handoff> DecodeHandoff(absl::string_view bytes);
std::string EncodeWorkerReport(const WorkerReport& report);
absl::StatusOr<WorkerReport> DecodeWorkerReport(absl::string_view bytes);
std::string EncodeAuthRequest(const AuthWireRequest& request);
absl::StatusOr<AuthWireRequest> DecodeAuthRequest(absl::string_view bytes);
std::string EncodeAuthReply(const AuthWireReply& reply);
absl::StatusOr<AuthWireReply> DecodeAuthReply(absl::string_view bytes);

// One datagram with an optional fd (SCM_RIGHTS), non-blocking
// (MSG_DONTWAIT | MSG_NOSIGNAL). Unavailable on EAGAIN; errno statuses;
// InvalidArgument for an empty (it would read as EOF) or oversized message.
absl::Status SendMessage(int channel, absl::string_view bytes, int fd = -1);
// Receives one datagram into *bytes (at most kMaxMessageBytes) and any
// passed fd into *fd (closed if fd is null or more than one arrived;
// MSG_CMSG_CLOEXEC). Returns false at EOF; Unavailable on EAGAIN;
// InvalidArgument for a truncated datagram or control message.
absl::StatusOr<bool> ReceiveMessage(int channel, std::string* bytes,
                                    UniqueFd* fd);

}  // namespace popgate::net

#endif  // POPGATE_NET_POOL_PROTOCOL_H_
