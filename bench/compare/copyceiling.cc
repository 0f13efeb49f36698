// copyceiling: the machine's loopback TCP copy ceiling for POP3 RETR.
//
//   copyceiling [--mb=200] [--runs=3] [--chunk=65536]
//
// Builds --mb MiB of POP3-framed data in memory (a "+OK" line, 76-octet CRLF
// lines, some dot-stuffed, the terminating ".\r\n"), sends it from one thread
// over a loopback TCP connection (127.0.0.1, ephemeral port) with plain write()
// calls of --chunk bytes, and reads it in another thread with read() calls of
// --chunk bytes, scanning every byte for the CRLF "." CRLF terminator the way a
// client must. Prints one JSON line on stdout with the best and median MB/s
// (MB = 10^6 bytes, counted as the octets between the status line and the
// terminator) over --runs runs. No server, no mailbox: this is the upper bound
// a POP3 server's RETR could reach on this machine with one stream.
// Part of bench/compare (run.sh); built with g++ -O2 -std=c++20 -pthread.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double Now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

std::string BuildPayload(size_t bytes, size_t* body_octets) {
  std::string s = "+OK message follows\r\n";
  size_t head = s.size();
  s.reserve(bytes + 4096);
  std::string line(76, 'x');
  for (size_t i = 0; s.size() - head < bytes; ++i) {
    // Vary the line a little and dot-stuff one line in 64.
    for (int k = 0; k < 8; ++k) line[k] = char('a' + (i + k) % 26);
    if (i % 64 == 63) s += "..";
    s += line;
    s += "\r\n";
  }
  *body_octets = s.size() - head;
  s += ".\r\n";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long mb = 200, runs = 3, chunk = 65536;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mb=", 5) == 0) mb = std::atol(argv[i] + 5);
    else if (std::strncmp(argv[i], "--runs=", 7) == 0) runs = std::atol(argv[i] + 7);
    else if (std::strncmp(argv[i], "--chunk=", 8) == 0) chunk = std::atol(argv[i] + 8);
    else {
      std::fprintf(stderr, "usage: copyceiling [--mb=200] [--runs=3] [--chunk=65536]\n");
      return 2;
    }
  }
  if (mb <= 0 || mb > 4096 || runs <= 0 || runs > 50 || chunk < 512 || chunk > (64 << 20)) {
    std::fprintf(stderr, "copyceiling: bad arguments\n");
    return 2;
  }
  size_t body = 0;
  const std::string data = BuildPayload(size_t(mb) << 20, &body);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) Die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind");
  if (listen(lfd, 4) != 0) Die("listen");
  socklen_t al = sizeof a;
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al) != 0) Die("getsockname");

  std::vector<double> rates;
  for (long r = 0; r < runs; ++r) {
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cfd < 0) Die("socket");
    if (connect(cfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("connect");
    int sfd = accept(lfd, nullptr, nullptr);
    if (sfd < 0) Die("accept");
    int one = 1;
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    double t0 = Now();
    std::thread sender([&] {
      size_t off = 0;
      while (off < data.size()) {
        size_t n = std::min(size_t(chunk), data.size() - off);
        ssize_t w = write(sfd, data.data() + off, n);
        if (w <= 0) Die("write");
        off += size_t(w);
      }
    });
    // Reader: find the end of the status line, then search every chunk (and
    // the seam between chunks) for "\n.\r\n" with memchr/memmem, as a
    // client scanning for the terminator must.
    std::vector<char> buf(static_cast<size_t>(chunk) + 8);
    size_t total = 0;
    size_t status_len = 0;
    char tail[3] = {0, 0, 0};  // last 3 octets seen so far
    size_t seen = 0;
    bool done = false;
    while (!done) {
      ssize_t n = read(cfd, buf.data(), static_cast<size_t>(chunk));
      if (n <= 0) Die("read (early EOF)");
      const char* p = buf.data();
      size_t len = static_cast<size_t>(n);
      size_t base = total;
      total += len;
      if (status_len == 0) {
        const void* nl = std::memchr(p, '\n', len);
        if (nl == nullptr) continue;
        status_len = base + size_t(static_cast<const char*>(nl) - p) + 1;
      }
      // Seam: up to 3 previous octets + the first 3 of this chunk.
      if (seen >= 3) {
        char seam[6];
        std::memcpy(seam, tail, 3);
        size_t k = std::min<size_t>(3, len);
        std::memcpy(seam + 3, p, k);
        if (memmem(seam, 3 + k, "\n.\r\n", 4) != nullptr) done = true;
      }
      if (!done && memmem(p, len, "\n.\r\n", 4) != nullptr) done = true;
      for (size_t i = (len > 3 ? len - 3 : 0); i < len; ++i) {
        tail[0] = tail[1];
        tail[1] = tail[2];
        tail[2] = p[i];
      }
      seen += len;
    }
    double t1 = Now();
    sender.join();
    close(sfd);
    close(cfd);
    size_t got_body = total - status_len - 3;
    if (got_body != body) {
      std::fprintf(stderr, "copyceiling: body octets %zu != %zu\n", got_body, body);
      return 1;
    }
    rates.push_back(double(body) / 1e6 / (t1 - t0));
  }
  close(lfd);
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"mb\":%ld,\"body_octets\":%zu,\"runs\":%ld,\"chunk\":%ld,"
              "\"best_mb_per_sec\":%.1f,\"median_mb_per_sec\":%.1f}\n",
              mb, body, runs, chunk, sorted.back(), sorted[sorted.size() / 2]);
  return 0;
}
