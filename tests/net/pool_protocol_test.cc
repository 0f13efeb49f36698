#include "net/pool_protocol.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/address.h"
#include "tests/testing/status_matchers.h"

namespace popgate::net {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

AuthWireRequest SampleRequest() {
  AuthWireRequest request;
  request.request_id = 0x0102030405060708ull;
  request.remote_host = "2001:db8::1";
  request.user = "alice";
  request.password = std::string("p\0ss:word", 9);
  return request;
}

AuthWireReply SampleReply() {
  AuthWireReply reply;
  reply.request_id = 42;
  reply.verdict = AuthWireVerdict::kOk;
  reply.known_user = true;
  reply.uid = 0xfffffffeu;
  reply.gid = 100;
  reply.name = "alice";
  reply.home = "/home/alice";
  return reply;
}

// Every prefix of a valid message is truncated, and one more byte is
// trailing garbage: all must be refused.
template <typename Decode>
void ExpectStrict(const std::string& valid, Decode decode) {
  ASSERT_THAT(decode(valid), IsOk());
  for (size_t size = 0; size < valid.size(); ++size) {
    EXPECT_THAT(decode(valid.substr(0, size)),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << "prefix of " << size << " bytes";
  }
  EXPECT_THAT(decode(valid + "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolProtocolTest, HandoffRoundTripsIpv4) {
  absl::StatusOr<SocketAddress> peer = MakeSocketAddress("192.0.2.7", 40110);
  ASSERT_THAT(peer, IsOk());
  absl::StatusOr<Handoff> decoded =
      DecodeHandoff(EncodeHandoff(Handoff{77, *peer}));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->session_id, 77u);
  EXPECT_EQ(FormatHostPort(decoded->peer), "192.0.2.7:40110");
  EXPECT_EQ(decoded->peer.length, sizeof(sockaddr_in));
  EXPECT_EQ(SourceKeyOf(decoded->peer), SourceKeyOf(*peer));
}

TEST(PoolProtocolTest, HandoffRoundTripsIpv6WithScope) {
  absl::StatusOr<SocketAddress> peer = MakeSocketAddress("fe80::1", 995);
  ASSERT_THAT(peer, IsOk());
  reinterpret_cast<sockaddr_in6*>(&peer->storage)->sin6_scope_id = 3;
  absl::StatusOr<Handoff> decoded =
      DecodeHandoff(EncodeHandoff(Handoff{~0ull, *peer}));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->session_id, ~0ull);
  EXPECT_EQ(FormatHostPort(decoded->peer), "[fe80::1]:995");
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(&decoded->peer.storage)
                ->sin6_scope_id,
            3u);
}

TEST(PoolProtocolTest, HandoffWithoutInetPeerRoundTrips) {
  Handoff handoff;
  handoff.session_id = 5;
  handoff.peer.storage.ss_family = AF_UNIX;
  absl::StatusOr<Handoff> decoded = DecodeHandoff(EncodeHandoff(handoff));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->session_id, 5u);
  EXPECT_EQ(decoded->peer.length, 0u);
}

TEST(PoolProtocolTest, HandoffIsStrict) {
  absl::StatusOr<SocketAddress> v4 = MakeSocketAddress("192.0.2.7", 1);
  absl::StatusOr<SocketAddress> v6 = MakeSocketAddress("2001:db8::7", 1);
  ASSERT_THAT(v4, IsOk());
  ASSERT_THAT(v6, IsOk());
  ExpectStrict(EncodeHandoff(Handoff{1, *v4}), DecodeHandoff);
  ExpectStrict(EncodeHandoff(Handoff{1, *v6}), DecodeHandoff);
  ExpectStrict(EncodeHandoff(Handoff{1, {}}), DecodeHandoff);
}

TEST(PoolProtocolTest, HandoffRejectsUnknownFamily) {
  std::string bytes = EncodeHandoff(Handoff{1, {}});
  bytes.back() = 5;  // the family byte
  EXPECT_THAT(DecodeHandoff(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolProtocolTest, WorkerReportRoundTripsEveryEvent) {
  for (WorkerEvent event :
       {WorkerEvent::kSessionEnded, WorkerEvent::kAuthFailed,
        WorkerEvent::kAuthSucceeded}) {
    const std::string bytes = EncodeWorkerReport(WorkerReport{event, 99});
    absl::StatusOr<WorkerReport> decoded = DecodeWorkerReport(bytes);
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(decoded->event, event);
    EXPECT_EQ(decoded->session_id, 99u);
    ExpectStrict(bytes, DecodeWorkerReport);
  }
}

TEST(PoolProtocolTest, WorkerReportRejectsBadEvent) {
  for (int event : {0, 4, 0x7f, 0xff}) {
    std::string bytes =
        EncodeWorkerReport(WorkerReport{WorkerEvent::kSessionEnded, 1});
    bytes[1] = static_cast<char>(event);
    EXPECT_THAT(DecodeWorkerReport(bytes),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << event;
  }
}

TEST(PoolProtocolTest, AuthRequestRoundTripsBinaryFields) {
  const AuthWireRequest request = SampleRequest();
  absl::StatusOr<AuthWireRequest> decoded =
      DecodeAuthRequest(EncodeAuthRequest(request));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->request_id, request.request_id);
  EXPECT_EQ(decoded->remote_host, request.remote_host);
  EXPECT_EQ(decoded->user, request.user);
  EXPECT_EQ(decoded->password, request.password);  // NUL kept, not cut
}

TEST(PoolProtocolTest, AuthRequestWithEmptyFieldsRoundTrips) {
  absl::StatusOr<AuthWireRequest> decoded =
      DecodeAuthRequest(EncodeAuthRequest(AuthWireRequest{}));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->user, "");
  EXPECT_EQ(decoded->password, "");
}

TEST(PoolProtocolTest, AuthRequestIsStrict) {
  ExpectStrict(EncodeAuthRequest(SampleRequest()), DecodeAuthRequest);
}

// A length prefix pointing past the end must not read beyond the datagram.
TEST(PoolProtocolTest, AuthRequestRejectsOverlongLengthPrefix) {
  std::string bytes = EncodeAuthRequest(AuthWireRequest{});
  // Layout: type, u64 id, then three u16 lengths (all zero here).
  ASSERT_EQ(bytes.size(), 1u + 8 + 2 * 3);
  bytes[bytes.size() - 2] = 1;  // password length 1, no byte follows
  EXPECT_THAT(DecodeAuthRequest(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bytes[bytes.size() - 2] = '\xff';
  bytes[bytes.size() - 1] = '\xff';
  EXPECT_THAT(DecodeAuthRequest(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolProtocolTest, OversizedInputIsRejected) {
  AuthWireRequest request;
  request.password = std::string(kMaxMessageBytes, 'p');
  const std::string bytes = EncodeAuthRequest(request);
  EXPECT_GT(bytes.size(), kMaxMessageBytes);
  EXPECT_THAT(DecodeAuthRequest(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Exactly at the cap is fine.
  request.password.resize(kMaxMessageBytes - (1 + 8 + 2 * 3));
  EXPECT_THAT(DecodeAuthRequest(EncodeAuthRequest(request)), IsOk());
}

// A field longer than a u16 can express must never be sent truncated.
TEST(PoolProtocolTest, HugeFieldIsNeverSentTruncated) {
  AuthWireRequest request;
  request.password = std::string(70000, 'p');
  const std::string bytes = EncodeAuthRequest(request);
  EXPECT_GT(bytes.size(), kMaxMessageBytes);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  EXPECT_THAT(SendMessage(a.get(), bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolProtocolTest, AuthReplyRoundTripsEveryVerdict) {
  for (AuthWireVerdict verdict :
       {AuthWireVerdict::kOk, AuthWireVerdict::kDenied,
        AuthWireVerdict::kTempFailure}) {
    AuthWireReply reply = SampleReply();
    reply.verdict = verdict;
    reply.known_user = verdict != AuthWireVerdict::kDenied;
    const std::string bytes = EncodeAuthReply(reply);
    absl::StatusOr<AuthWireReply> decoded = DecodeAuthReply(bytes);
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(decoded->request_id, 42u);
    EXPECT_EQ(decoded->verdict, verdict);
    EXPECT_EQ(decoded->known_user, reply.known_user);
    EXPECT_EQ(decoded->uid, 0xfffffffeu);
    EXPECT_EQ(decoded->gid, 100u);
    EXPECT_EQ(decoded->name, "alice");
    EXPECT_EQ(decoded->home, "/home/alice");
    ExpectStrict(bytes, DecodeAuthReply);
  }
}

TEST(PoolProtocolTest, AuthReplyRejectsBadVerdictAndBool) {
  const std::string valid = EncodeAuthReply(SampleReply());
  constexpr size_t kVerdictOffset = 1 + 8;
  constexpr size_t kKnownOffset = kVerdictOffset + 1;
  for (int verdict : {0, 4, 0xff}) {
    std::string bytes = valid;
    bytes[kVerdictOffset] = static_cast<char>(verdict);
    EXPECT_THAT(DecodeAuthReply(bytes),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << verdict;
  }
  std::string bytes = valid;
  bytes[kKnownOffset] = 2;
  EXPECT_THAT(DecodeAuthReply(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Each decoder refuses the others' messages (the type byte), so a worker
// cannot replay a reply as a request or the like.
TEST(PoolProtocolTest, DecodersRejectOtherMessageTypes) {
  const std::vector<std::string> messages = {
      EncodeHandoff(Handoff{}), EncodeWorkerReport(WorkerReport{}),
      EncodeAuthRequest(AuthWireRequest{}), EncodeAuthReply(AuthWireReply{})};
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(DecodeHandoff(messages[i]).ok(), i == 0) << i;
    EXPECT_EQ(DecodeWorkerReport(messages[i]).ok(), i == 1) << i;
    EXPECT_EQ(DecodeAuthRequest(messages[i]).ok(), i == 2) << i;
    EXPECT_EQ(DecodeAuthReply(messages[i]).ok(), i == 3) << i;
  }
  EXPECT_FALSE(DecodeAuthRequest(std::string(1, kAuthChannelTag)).ok());
}

// --- SendMessage / ReceiveMessage over a SOCK_SEQPACKET socketpair.

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a_.Reset(sv[0]);
    b_.Reset(sv[1]);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    pipe_read_.Reset(p[0]);
    pipe_write_.Reset(p[1]);
  }

  // Whether the pipe's write end is closed everywhere (read gives EOF).
  bool PipeWriterClosed() {
    pollfd p{pipe_read_.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return false;
    char c;
    return ::read(pipe_read_.get(), &c, 1) == 0;
  }

  UniqueFd a_, b_, pipe_read_, pipe_write_;
};

TEST_F(ChannelTest, PassesBytesAndOneFd) {
  ASSERT_THAT(SendMessage(a_.get(), "hello", pipe_write_.get()), IsOk());
  pipe_write_.Reset();  // only the copy in flight is left
  std::string bytes;
  UniqueFd fd;
  absl::StatusOr<bool> received = ReceiveMessage(b_.get(), &bytes, &fd);
  ASSERT_THAT(received, IsOk());
  EXPECT_TRUE(*received);
  EXPECT_EQ(bytes, "hello");
  ASSERT_TRUE(fd.valid());
  EXPECT_EQ(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(::write(fd.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe_read_.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST_F(ChannelTest, MessageWithoutFdLeavesFdEmpty) {
  ASSERT_THAT(SendMessage(a_.get(), "plain"), IsOk());
  std::string bytes;
  UniqueFd fd(::dup(pipe_write_.get()));  // replaced (closed) by Receive
  ASSERT_THAT(ReceiveMessage(b_.get(), &bytes, &fd), IsOk());
  EXPECT_EQ(bytes, "plain");
  EXPECT_FALSE(fd.valid());
}

TEST_F(ChannelTest, FdIsClosedWhenNotWanted) {
  ASSERT_THAT(SendMessage(a_.get(), "req", pipe_write_.get()), IsOk());
  pipe_write_.Reset();
  std::string bytes;
  absl::StatusOr<bool> received = ReceiveMessage(b_.get(), &bytes, nullptr);
  ASSERT_THAT(received, IsOk());
  EXPECT_EQ(bytes, "req");
  EXPECT_TRUE(PipeWriterClosed());
}

TEST_F(ChannelTest, MoreThanOneFdIsRefusedAndClosed) {
  // Hand-built: two fds in one SCM_RIGHTS message (SendMessage sends one).
  const int fds[2] = {pipe_write_.get(), pipe_write_.get()};
  char payload[] = "two";
  iovec iov{payload, 3};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
  ASSERT_EQ(::sendmsg(a_.get(), &msg, 0), 3);
  pipe_write_.Reset();

  std::string bytes;
  UniqueFd fd;
  absl::StatusOr<bool> received = ReceiveMessage(b_.get(), &bytes, &fd);
  ASSERT_THAT(received, IsOk());
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(PipeWriterClosed());
}

TEST_F(ChannelTest, EmptyChannelIsUnavailable) {
  std::string bytes;
  EXPECT_THAT(ReceiveMessage(b_.get(), &bytes, nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ChannelTest, PeerCloseIsEof) {
  ASSERT_THAT(SendMessage(a_.get(), "last"), IsOk());
  a_.Reset();
  std::string bytes;
  absl::StatusOr<bool> received = ReceiveMessage(b_.get(), &bytes, nullptr);
  ASSERT_THAT(received, IsOk());
  EXPECT_TRUE(*received);  // queued data first
  EXPECT_EQ(bytes, "last");
  received = ReceiveMessage(b_.get(), &bytes, nullptr);
  ASSERT_THAT(received, IsOk());
  EXPECT_FALSE(*received);
}

TEST_F(ChannelTest, SendToClosedPeerIsAnError) {
  b_.Reset();
  const absl::Status sent = SendMessage(a_.get(), "x");
  EXPECT_FALSE(sent.ok());
  EXPECT_FALSE(absl::IsUnavailable(sent));  // not "try again": gone
}

TEST_F(ChannelTest, EmptyMessageIsRefused) {
  EXPECT_THAT(SendMessage(a_.get(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ChannelTest, MaximumSizeMessagePasses) {
  const std::string big(kMaxMessageBytes, 'm');
  ASSERT_THAT(SendMessage(a_.get(), big), IsOk());
  std::string bytes;
  ASSERT_THAT(ReceiveMessage(b_.get(), &bytes, nullptr), IsOk());
  EXPECT_EQ(bytes, big);
}

TEST_F(ChannelTest, OversizedDatagramIsInvalid) {
  const std::string big(kMaxMessageBytes + 100, 'm');
  ASSERT_EQ(::send(a_.get(), big.data(), big.size(), 0),
            static_cast<ssize_t>(big.size()));
  ASSERT_THAT(SendMessage(a_.get(), "next"), IsOk());
  std::string bytes;
  EXPECT_THAT(ReceiveMessage(b_.get(), &bytes, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The rest of the oversized datagram is gone; the next one is intact.
  ASSERT_THAT(ReceiveMessage(b_.get(), &bytes, nullptr), IsOk());
  EXPECT_EQ(bytes, "next");
}

TEST_F(ChannelTest, FullChannelIsUnavailableNotBlocking) {
  const std::string chunk(kMaxMessageBytes, 'f');
  absl::Status sent;
  for (int i = 0; i < 100000 && sent.ok(); ++i) {
    sent = SendMessage(a_.get(), chunk);
  }
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace popgate::net
