// Closing client connections a forked child inherited by accident.
//
// The -D master accepts with io_uring multishot accept, so accepted sockets
// land in its fd table at any moment, also between a batch's processing and
// a fork(). Every child (a fork-mode session, a pool worker, the auth
// process) would otherwise keep copies of other clients' connections: the
// client sees no EOF when its own session ends, and an unprivileged child
// could read another user's USER/PASS.
#ifndef POPGATE_NET_INHERITED_FDS_H_
#define POPGATE_NET_INHERITED_FDS_H_

namespace popgate::net {

// In a freshly forked child: closes every open IPv4/IPv6 socket except
// `keep_fd` (the child's own connection, or -1). Unix sockets, pipes and
// files stay (channels, syslog). Best effort: silent if /proc is missing.
void CloseInheritedConnections(int keep_fd);

}  // namespace popgate::net

#endif  // POPGATE_NET_INHERITED_FDS_H_
