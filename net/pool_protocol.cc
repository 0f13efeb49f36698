#include "net/pool_protocol.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace popgate::net {
namespace {

// Wire layout. Every message starts with a one-byte type, so a datagram sent
// to the wrong decoder (or a worker replaying a reply as a request) is
// refused instead of being read as the wrong struct. Then fixed-width
// little-endian integers and u16-length-prefixed strings, in field order:
//
//   Handoff        'H' u64 session_id  u8 family(0|4|6) [addr 4|16] u16 port
//                                      [v6: u32 flowinfo u32 scope_id]
//   WorkerReport   'W' u8 event  u64 session_id
//   AuthRequest    'Q' u64 request_id  str remote_host  str user
//                                      str password
//   AuthReply      'P' u64 request_id  u8 verdict  u8 known_user
//                      u32 uid  u32 gid  str name  str home
//
// A decoder accepts a message only if it is consumed exactly: no byte
// missing, no byte left over.
constexpr char kHandoffType = 'H';
constexpr char kWorkerReportType = 'W';
constexpr char kAuthRequestType = 'Q';
constexpr char kAuthReplyType = 'P';

constexpr uint8_t kFamilyNone = 0;  // AF_UNIX peers in tests, or unknown
constexpr uint8_t kFamilyIpv4 = 4;
constexpr uint8_t kFamilyIpv6 = 6;

// Fds accepted in one control message before we call it a protocol error.
// Only one is ever sent; room for a few more lets us see (and close) extras
// instead of having the kernel truncate the control message.
constexpr size_t kMaxFdsPerMessage = 8;

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Fixed(v, 2); }
  void U32(uint32_t v) { Fixed(v, 4); }
  void U64(uint64_t v) { Fixed(v, 8); }
  void Bytes(const void* data, size_t size) {
    out_.append(static_cast<const char*>(data), size);
  }
  // A string longer than a u16 can say cannot fit in kMaxMessageBytes
  // anyway: its length is saturated, the message ends up oversized, and
  // SendMessage refuses it, so a truncated field never goes out.
  void Str(absl::string_view s) {
    U16(s.size() > 0xffff ? 0xffff : static_cast<uint16_t>(s.size()));
    out_.append(s.data(), s.size());
  }
  std::string Take() { return std::move(out_); }

 private:
  void Fixed(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::string out_;
};

// Reads fields from an untrusted datagram; every read checks the remaining
// length first, and the first failure sticks.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    uint64_t x;
    if (!Fixed(&x, 1)) return false;
    *v = static_cast<uint8_t>(x);
    return true;
  }
  bool U16(uint16_t* v) {
    uint64_t x;
    if (!Fixed(&x, 2)) return false;
    *v = static_cast<uint16_t>(x);
    return true;
  }
  bool U32(uint32_t* v) {
    uint64_t x;
    if (!Fixed(&x, 4)) return false;
    *v = static_cast<uint32_t>(x);
    return true;
  }
  bool U64(uint64_t* v) { return Fixed(v, 8); }
  bool Bytes(void* out, size_t size) {
    if (in_.size() < size) return false;
    std::memcpy(out, in_.data(), size);
    in_.remove_prefix(size);
    return true;
  }
  bool Str(std::string* s) {
    uint16_t size;
    if (!U16(&size) || in_.size() < size) return false;
    s->assign(in_.data(), size);
    in_.remove_prefix(size);
    return true;
  }
  bool Type(char expected) {
    uint8_t t;
    return U8(&t) && t == static_cast<uint8_t>(expected);
  }
  bool AtEnd() const { return in_.empty(); }

 private:
  bool Fixed(uint64_t* v, int bytes) {
    if (in_.size() < static_cast<size_t>(bytes)) return false;
    uint64_t x = 0;
    for (int i = 0; i < bytes; ++i) {
      x |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    }
    in_.remove_prefix(bytes);
    *v = x;
    return true;
  }
  absl::string_view in_;
};

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", what));
}

// Untrusted: from a peer process. Size is checked before any field.
bool SizeOk(absl::string_view bytes) {
  return !bytes.empty() && bytes.size() <= kMaxMessageBytes;
}

}  // namespace

std::string EncodeHandoff(const Handoff& handoff) {
  Writer w;
  w.U8(kHandoffType);
  w.U64(handoff.session_id);
  const SocketAddress& peer = handoff.peer;
  if (peer.family() == AF_INET &&
      peer.length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&peer.storage);
    w.U8(kFamilyIpv4);
    w.Bytes(&sin->sin_addr, 4);
    w.U16(ntohs(sin->sin_port));
  } else if (peer.family() == AF_INET6 &&
             peer.length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&peer.storage);
    w.U8(kFamilyIpv6);
    w.Bytes(&sin6->sin6_addr, 16);
    w.U16(ntohs(sin6->sin6_port));
    w.U32(sin6->sin6_flowinfo);
    w.U32(sin6->sin6_scope_id);
  } else {
    w.U8(kFamilyNone);
  }
  return w.Take();
}

absl::StatusOr<Handoff> DecodeHandoff(absl::string_view bytes) {
  if (!SizeOk(bytes)) return Malformed("handoff");
  Reader r(bytes);
  Handoff handoff;
  uint8_t family;
  if (!r.Type(kHandoffType) || !r.U64(&handoff.session_id) || !r.U8(&family)) {
    return Malformed("handoff");
  }
  SocketAddress& peer = handoff.peer;
  if (family == kFamilyIpv4) {
    sockaddr_in sin{};
    uint16_t port;
    if (!r.Bytes(&sin.sin_addr, 4) || !r.U16(&port)) {
      return Malformed("handoff");
    }
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    std::memcpy(&peer.storage, &sin, sizeof(sin));
    peer.length = sizeof(sin);
  } else if (family == kFamilyIpv6) {
    sockaddr_in6 sin6{};
    uint16_t port;
    if (!r.Bytes(&sin6.sin6_addr, 16) || !r.U16(&port) ||
        !r.U32(&sin6.sin6_flowinfo) || !r.U32(&sin6.sin6_scope_id)) {
      return Malformed("handoff");
    }
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    std::memcpy(&peer.storage, &sin6, sizeof(sin6));
    peer.length = sizeof(sin6);
  } else if (family != kFamilyNone) {
    return Malformed("handoff");
  }
  if (!r.AtEnd()) return Malformed("handoff");
  return handoff;
}

std::string EncodeWorkerReport(const WorkerReport& report) {
  Writer w;
  w.U8(kWorkerReportType);
  w.U8(static_cast<uint8_t>(report.event));
  w.U64(report.session_id);
  return w.Take();
}

absl::StatusOr<WorkerReport> DecodeWorkerReport(absl::string_view bytes) {
  if (!SizeOk(bytes)) return Malformed("worker report");
  Reader r(bytes);
  WorkerReport report;
  uint8_t event;
  if (!r.Type(kWorkerReportType) || !r.U8(&event) ||
      !r.U64(&report.session_id) || !r.AtEnd()) {
    return Malformed("worker report");
  }
  switch (static_cast<WorkerEvent>(event)) {
    case WorkerEvent::kSessionEnded:
    case WorkerEvent::kAuthFailed:
    case WorkerEvent::kAuthSucceeded:
      report.event = static_cast<WorkerEvent>(event);
      return report;
  }
  return Malformed("worker report");
}

std::string EncodeAuthRequest(const AuthWireRequest& request) {
  Writer w;
  w.U8(kAuthRequestType);
  w.U64(request.request_id);
  w.Str(request.remote_host);
  w.Str(request.user);
  w.Str(request.password);
  return w.Take();
}

absl::StatusOr<AuthWireRequest> DecodeAuthRequest(absl::string_view bytes) {
  if (!SizeOk(bytes)) return Malformed("auth request");
  Reader r(bytes);
  AuthWireRequest request;
  if (!r.Type(kAuthRequestType) || !r.U64(&request.request_id) ||
      !r.Str(&request.remote_host) || !r.Str(&request.user) ||
      !r.Str(&request.password) || !r.AtEnd()) {
    return Malformed("auth request");
  }
  return request;
}

std::string EncodeAuthReply(const AuthWireReply& reply) {
  Writer w;
  w.U8(kAuthReplyType);
  w.U64(reply.request_id);
  w.U8(static_cast<uint8_t>(reply.verdict));
  w.U8(reply.known_user ? 1 : 0);
  w.U32(reply.uid);
  w.U32(reply.gid);
  w.Str(reply.name);
  w.Str(reply.home);
  return w.Take();
}

absl::StatusOr<AuthWireReply> DecodeAuthReply(absl::string_view bytes) {
  if (!SizeOk(bytes)) return Malformed("auth reply");
  Reader r(bytes);
  AuthWireReply reply;
  uint8_t verdict, known;
  if (!r.Type(kAuthReplyType) || !r.U64(&reply.request_id) || !r.U8(&verdict) ||
      !r.U8(&known) || !r.U32(&reply.uid) || !r.U32(&reply.gid) ||
      !r.Str(&reply.name) || !r.Str(&reply.home) || !r.AtEnd() || known > 1) {
    return Malformed("auth reply");
  }
  switch (static_cast<AuthWireVerdict>(verdict)) {
    case AuthWireVerdict::kOk:
    case AuthWireVerdict::kDenied:
    case AuthWireVerdict::kTempFailure:
      reply.verdict = static_cast<AuthWireVerdict>(verdict);
      reply.known_user = known == 1;
      return reply;
  }
  return Malformed("auth reply");
}

absl::Status SendMessage(int channel, absl::string_view bytes, int fd) {
  // An empty SOCK_SEQPACKET datagram reads as EOF on the other side, and an
  // oversized one would be truncated there: refuse both here.
  if (bytes.empty() || bytes.size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", bytes.size(), " bytes"));
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(control, 0, sizeof(control));
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return absl::OkStatus();  // SEQPACKET: all or nothing
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::UnavailableError("channel full");
    }
    return absl::ErrnoToStatus(errno, "sendmsg");
  }
}

absl::StatusOr<bool> ReceiveMessage(int channel, std::string* bytes,
                                    UniqueFd* fd) {
  // One byte more than the cap, so an oversized datagram shows as such
  // (MSG_TRUNC) rather than as a silently shortened one.
  bytes->resize(kMaxMessageBytes + 1);
  iovec iov{bytes->data(), bytes->size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  for (;;) {
    n = ::recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    bytes->clear();
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::UnavailableError("no message");
    }
    return absl::ErrnoToStatus(errno, "recvmsg");
  }

  // Take ownership of every fd that arrived before deciding anything, so
  // none leaks on an error path.
  std::vector<UniqueFd> fds;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr;
       cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      fds.emplace_back(received);
    }
  }
  if (fd != nullptr) fd->Reset();
  if (n == 0) {
    bytes->clear();
    return false;
  }
  bytes->resize(static_cast<size_t>(n));
  if ((msg.msg_flags & MSG_TRUNC) ||
      static_cast<size_t>(n) > kMaxMessageBytes) {
    return absl::InvalidArgumentError("oversized message");
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return absl::InvalidArgumentError("truncated control message");
  }
  // Exactly one fd is the protocol; extras are closed with `fds`.
  if (fd != nullptr && fds.size() == 1) *fd = std::move(fds.front());
  return true;
}

}  // namespace popgate::net
