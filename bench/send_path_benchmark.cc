// Micro-benchmarks for the RETR send path over loopback TCP. Compare
// numbers only from the same machine and build (STYLE.md §7); loopback
// copies in the kernel whatever the sender does, so these show the
// sender's share of the cost, not what a NIC would see.
//
//   BM_SendPath_Queue/<kind>   a 4 MiB message through core::OutputQueue
//                              (mailbox::EncodingStream, 256 KiB windows)
//                              and writev() of the gathered views, as the
//                              drivers do; 0 = LF lines (encoded), 1 = CR LF
//                              lines (wire-clean: views of the "mapping").
//                              bytes/s; counter segs/MiB = iovecs per MiB.
//   BM_SendPath_Convert        the LF message converted into one 256 KiB
//                              buffer (memchr + memcpy a line) and
//                              write()n: what an encoder that copies would
//                              cost against Queue/0's many small iovecs.
//   BM_SendPath_Uring/<zc>     the same 256 KiB buffer sent again and again
//                              through io_uring: 0 = IORING_OP_SEND,
//                              1 = IORING_OP_SEND_ZC (waits for each
//                              buffer's notification, as a sender that
//                              reuses its buffer must). bytes/s.
// A reader thread drains the socket in both.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "benchmark/benchmark.h"
#include "core/output_queue.h"
#include "mailbox/wire_stream.h"

namespace popgate {
namespace {

// A connected loopback TCP pair with a thread reading (and discarding)
// everything that arrives on the receiving end.
class LoopbackSink {
 public:
  LoopbackSink() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener < 0 ||
        ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener, 1) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) !=
            0) {
      std::abort();
    }
    sender_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(sender_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      std::abort();
    }
    receiver_ = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    const int one = 1;
    ::setsockopt(sender_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    reader_ = std::thread([this] {
      std::vector<char> buffer(1 << 20);
      while (::read(receiver_, buffer.data(), buffer.size()) > 0) {
      }
    });
  }
  ~LoopbackSink() {
    ::shutdown(sender_, SHUT_WR);
    reader_.join();
    ::close(sender_);
    ::close(receiver_);
  }
  int fd() const { return sender_; }

 private:
  int sender_ = -1;
  int receiver_ = -1;
  std::thread reader_;
};

std::string Message(bool crlf) {
  std::string data;
  const std::string line(70, 'y');
  while (data.size() < (4u << 20)) {
    data += line;
    data += crlf ? "\r\n" : "\n";
  }
  return data;
}

void BM_SendPath_Queue(benchmark::State& state) {
  const bool crlf = state.range(0) == 1;

  const std::string message = Message(crlf);
  LoopbackSink sink;
  std::vector<absl::string_view> views;
  std::vector<iovec> iov;
  size_t segments = 0, sent = 0;
  for (auto _ : state) {
    core::OutputQueue queue;
    queue.AppendStream(std::make_unique<mailbox::EncodingStream>(
        message, /*wire_clean=*/crlf, absl::string_view()));
    while (!queue.empty()) {
      views.clear();
      if (!queue.Gather(256 << 10, &views).ok()) std::abort();
      iov.clear();
      for (absl::string_view v : views) {
        iov.push_back({const_cast<char*>(v.data()), v.size()});
      }
      segments += iov.size();
      size_t done = 0;
      // Partial writes: hand the kernel the rest, as the drivers do.
      const ssize_t n = ::writev(sink.fd(), iov.data(),
                                 static_cast<int>(std::min<size_t>(
                                     iov.size(), IOV_MAX)));
      if (n < 0) std::abort();
      done = static_cast<size_t>(n);
      queue.Consume(done);
      sent += done;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(sent));
  state.counters["segs/MiB"] =
      static_cast<double>(segments) / (static_cast<double>(sent) / (1 << 20));
}
BENCHMARK(BM_SendPath_Queue)->Arg(0)->Arg(1)->UseRealTime();

// LF lines converted straight into a 256 KiB buffer (memchr + memcpy a
// line) and written: the floor for an encoder that copies.
void BM_SendPath_Convert(benchmark::State& state) {
  const std::string message = Message(false);
  LoopbackSink sink;
  std::vector<char> buffer(256 << 10);
  size_t sent = 0;
  for (auto _ : state) {
    const char* p = message.data();
    const char* const end = p + message.size();
    while (p < end) {
      size_t used = 0;
      while (p < end && used + 512 < buffer.size()) {
        const char* nl = static_cast<const char*>(
            std::memchr(p, '\n', std::min<size_t>(end - p, 500)));
        const size_t n = nl != nullptr ? static_cast<size_t>(nl - p)
                                       : static_cast<size_t>(end - p);
        std::memcpy(buffer.data() + used, p, n);
        used += n;
        if (nl != nullptr) {
          buffer[used++] = '\r';
          buffer[used++] = '\n';
          p = nl + 1;
        } else {
          p += n;
        }
      }
      size_t off = 0;
      while (off < used) {
        const ssize_t n = ::write(sink.fd(), buffer.data() + off, used - off);
        if (n <= 0) std::abort();
        off += static_cast<size_t>(n);
      }
      sent += used;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(sent));
}
BENCHMARK(BM_SendPath_Convert)->UseRealTime();

void BM_SendPath_Uring(benchmark::State& state) {
  const bool zero_copy = state.range(0) == 1;
  LoopbackSink sink;
  io_uring ring;
  if (io_uring_queue_init(8, &ring, 0) != 0) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  const std::string buffer(256 << 10, 'z');
  size_t sent = 0;
  for (auto _ : state) {
    size_t offset = 0;
    while (offset < buffer.size()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (zero_copy) {
        io_uring_prep_send_zc(sqe, sink.fd(), buffer.data() + offset,
                              buffer.size() - offset, 0, 0);
      } else {
        io_uring_prep_send(sqe, sink.fd(), buffer.data() + offset,
                           buffer.size() - offset, 0);
      }
      io_uring_submit(&ring);
      // SEND_ZC posts the result, then (flag MORE) a notification once the
      // kernel no longer needs the buffer: wait for both.
      bool waiting_result = true, waiting_notif = zero_copy;
      while (waiting_result || waiting_notif) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring, &cqe) != 0) std::abort();
        if (cqe->flags & IORING_CQE_F_NOTIF) {
          waiting_notif = false;
        } else {
          if (cqe->res < 0) {
            state.SkipWithError("send failed");
            io_uring_cqe_seen(&ring, cqe);
            io_uring_queue_exit(&ring);
            return;
          }
          offset += static_cast<size_t>(cqe->res);
          sent += static_cast<size_t>(cqe->res);
          waiting_result = false;
          if (!(cqe->flags & IORING_CQE_F_MORE)) waiting_notif = false;
        }
        io_uring_cqe_seen(&ring, cqe);
      }
    }
  }
  io_uring_queue_exit(&ring);
  state.SetBytesProcessed(static_cast<int64_t>(sent));
}
BENCHMARK(BM_SendPath_Uring)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace popgate
