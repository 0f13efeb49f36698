// Small liburing helpers shared by the master and the pool workers.
#ifndef POPGATE_NET_RING_H_
#define POPGATE_NET_RING_H_

#include <liburing.h>

namespace popgate::net {

// A submission entry, submitting what is queued first if the SQ is full
// (then retrying once). Null only if the kernel took nothing.
inline io_uring_sqe* GetSqeFlushingIfFull(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
  }
  return sqe;
}

}  // namespace popgate::net

#endif  // POPGATE_NET_RING_H_
