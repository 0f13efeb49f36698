// retr_client: downloads a whole mailbox over POP3 as fast as a client can,
// with the same reader as bench/compare/copyceiling.cc (read() of --chunk
// octets, memchr/memmem for the status line and the CRLF "." CRLF
// terminator), so that popgate's RETR rate and the loopback ceiling are
// measured by the same reader. popgate-flood's byte-at-a-time reply parser
// costs more CPU per byte than the server on this path, so its MB/s is a
// client limit (see bench/retr_throughput.sh).
//
//   retr_client --port=P --user=U --pass=W [--chunk=262144] [--seconds=8]
//               [--pipeline=1]
//
// Repeats whole-mailbox downloads (USER, PASS, STAT, RETR 1..n, QUIT) for
// at least --seconds, with up to --pipeline RETRs outstanding (RFC 2449
// PIPELINING, as fetchmail and mpop do; 1 = one at a time, a round trip
// between messages), and prints the payload MB/s (octets
// between each status line and its terminator, dot-stuffing included;
// MB = 10^6) twice: over the whole sessions (connect, login, STAT and QUIT
// included: what a user waits for) and over the RETR phases alone (from
// the first RETR sent to the last body read: the transfer that the copy
// ceiling bounds). Built by bench/retr_throughput.sh with g++ -O2.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

struct Conn {
  int fd;
  std::vector<char> buf;
  size_t begin = 0, end = 0;  // unparsed octets in buf

  void Send(const std::string& s) {
    if (write(fd, s.data(), s.size()) != ssize_t(s.size())) Die("write");
  }
  void Fill() {
    if (begin == end) begin = end = 0;
    if (end == buf.size()) {
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    ssize_t n = read(fd, buf.data() + end, buf.size() - end);
    if (n <= 0) Die("read (early EOF)");
    end += size_t(n);
  }
  // One status line; exits on -ERR.
  std::string Status() {
    for (;;) {
      const char* p = buf.data() + begin;
      const void* nl = std::memchr(p, '\n', end - begin);
      if (nl != nullptr) {
        std::string line(p, static_cast<const char*>(nl));
        begin += line.size() + 1;
        if (line.compare(0, 3, "+OK") != 0) {
          std::fprintf(stderr, "retr_client: %s\n", line.c_str());
          std::exit(1);
        }
        return line;
      }
      Fill();
    }
  }
  // Skips a multi-line body through "\r\n.\r\n" (the status line's CR LF
  // counts as the first line end). Returns the body octets.
  size_t Body() {
    size_t octets = 0;
    char tail[4] = {'\r', '\n', 0, 0};  // the 4 octets before `begin`
    size_t tail_len = 2;
    for (;;) {
      const char* p = buf.data() + begin;
      const size_t len = end - begin;
      // Seam between the tail and this chunk.
      char seam[8];
      std::memcpy(seam, tail, tail_len);
      const size_t k = len < 4 ? len : 4;
      std::memcpy(seam + tail_len, p, k);
      const void* hit = memmem(seam, tail_len + k, "\r\n.\r\n", 5);
      size_t stop = 0;  // octets of this chunk through the terminator
      if (hit != nullptr) {
        stop = size_t(static_cast<const char*>(hit) - seam) + 5 - tail_len;
      } else if (const void* h = memmem(p, len, "\r\n.\r\n", 5)) {
        stop = size_t(static_cast<const char*>(h) - p) + 5;
      }
      if (stop > 0) {
        octets += stop;
        begin += stop;
        return octets - 3;  // minus ".\r\n"
      }
      octets += len;
      // Keep the last 4 octets seen (tail + this chunk).
      char joined[8];
      std::memcpy(joined, tail, tail_len);
      const size_t from = len > 4 ? len - 4 : 0;
      std::memcpy(joined + tail_len, p + from, len - from);
      const size_t total = tail_len + (len - from);
      tail_len = total < 4 ? total : 4;
      std::memcpy(tail, joined + total - tail_len, tail_len);
      begin = end;
      Fill();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  long chunk = 262144;
  double seconds = 8;
  long pipeline = 1;
  std::string user, pass;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!std::strncmp(a, "--port=", 7)) port = std::atoi(a + 7);
    else if (!std::strncmp(a, "--user=", 7)) user = a + 7;
    else if (!std::strncmp(a, "--pass=", 7)) pass = a + 7;
    else if (!std::strncmp(a, "--chunk=", 8)) chunk = std::atol(a + 8);
    else if (!std::strncmp(a, "--seconds=", 10)) seconds = std::atof(a + 10);
    else if (!std::strncmp(a, "--pipeline=", 11)) pipeline = std::atol(a + 11);
    else {
      std::fprintf(stderr, "usage: retr_client --port=P --user=U --pass=W "
                           "[--chunk=262144] [--seconds=8] [--pipeline=1]\n");
      return 2;
    }
  }
  if (pipeline < 1) pipeline = 1;
  double t0 = Now(), elapsed = 0, transfer = 0;
  size_t payload = 0, messages = 0;
  int rounds = 0;
  while (rounds == 0 || elapsed < seconds) {
    Conn c;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) Die("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("connect");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.buf.resize(size_t(chunk));
    c.Status();
    c.Send("USER " + user + "\r\n");
    c.Status();
    c.Send("PASS " + pass + "\r\n");
    c.Status();
    c.Send("STAT\r\n");
    const long n = std::atol(c.Status().c_str() + 4);
    long sent = 0;
    const double retr0 = Now();
    for (long m = 1; m <= n; ++m) {
      std::string batch;
      for (; sent < n && sent < m - 1 + pipeline; ++sent) {
        batch += "RETR " + std::to_string(sent + 1) + "\r\n";
      }
      if (!batch.empty()) c.Send(batch);
      c.Status();
      payload += c.Body();
      ++messages;
    }
    transfer += Now() - retr0;
    c.Send("QUIT\r\n");
    c.Status();
    close(c.fd);
    ++rounds;
    elapsed = Now() - t0;
  }
  std::printf("{\"rounds\":%d,\"messages\":%zu,\"payload_octets\":%zu,"
              "\"seconds\":%.3f,\"mb_per_sec\":%.1f,"
              "\"transfer_seconds\":%.3f,\"transfer_mb_per_sec\":%.1f,"
              "\"ms_per_session_outside_retr\":%.2f}\n",
              rounds, messages, payload, elapsed, payload / 1e6 / elapsed,
              transfer, payload / 1e6 / transfer,
              (elapsed - transfer) * 1e3 / rounds);
  return 0;
}
