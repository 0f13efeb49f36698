#include "net/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "gtest/gtest.h"

namespace popgate::net {
namespace {

TEST(ListenerTest, PortZeroReportsKernelPortAndAccepts) {
  auto addr = MakeSocketAddress("127.0.0.1", 0);
  ASSERT_TRUE(addr.ok());
  auto listener = OpenListener(*addr);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_NE(::fcntl(listener->get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(listener->get(), F_GETFD) & FD_CLOEXEC, 0);
  auto bound = LocalAddress(listener->get());
  ASSERT_TRUE(bound.ok());
  ASSERT_NE(Port(*bound), 0);

  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), bound->get(), bound->length), 0);
  UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  auto peer = PeerAddress(conn.get());
  ASSERT_TRUE(peer.ok());
  EXPECT_EQ(FormatHost(*peer), "127.0.0.1");
}

TEST(ListenerTest, Ipv6IsV6OnlySoBothFamiliesCanShareAPort) {
  auto v6 = MakeSocketAddress("::", 0);
  auto l6 = OpenListener(*v6);
  if (!l6.ok()) GTEST_SKIP() << "no IPv6: " << l6.status();
  auto bound = LocalAddress(l6->get());
  ASSERT_TRUE(bound.ok());
  auto v4 = MakeSocketAddress("0.0.0.0", Port(*bound));
  auto l4 = OpenListener(*v4);
  EXPECT_TRUE(l4.ok()) << l4.status();
}

TEST(ListenerTest, BindConflictNamesTheAddress) {
  auto addr = MakeSocketAddress("127.0.0.1", 0);
  auto first = OpenListener(*addr);
  ASSERT_TRUE(first.ok());
  auto bound = LocalAddress(first->get());
  auto second = OpenListener(*bound);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("bind 127.0.0.1:"),
            std::string::npos)
      << second.status();
}

TEST(UniqueFdTest, MoveAndRelease) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd a(fds[0]);
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(b.get(), fds[0]);
  UniqueFd c(fds[1]);
  c = std::move(b);  // closes fds[1]
  EXPECT_EQ(::fcntl(fds[1], F_GETFD), -1);
  EXPECT_EQ(c.Release(), fds[0]);
  ::close(fds[0]);
}

}  // namespace
}  // namespace popgate::net
