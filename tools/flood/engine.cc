#include "tools/flood/engine.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/time/clock.h"

namespace popgate::flood {
namespace {

// One recv() per readiness event takes up to this much; 256 KiB keeps RETR
// throughput runs from being syscall-bound.
constexpr size_t kReadBufferBytes = 256 * 1024;
// Reads per event before the next socket gets its turn (fairness).
constexpr int kReadsPerEvent = 8;
constexpr int kMaxEvents = 1024;
// New connections started per loop iteration (see Run).
constexpr size_t kConnectsPerIteration = 256;
// The loop wakes at least this often to notice `stop` and publish stats.
constexpr int64_t kMaxWaitUs = 100'000;
constexpr int64_t kPublishEveryUs = 250'000;
// After a local failure (EMFILE, no port) retrying at once would spin.
constexpr absl::Duration kLocalBackoff = absl::Milliseconds(100);
// A legit client the server refused (at connect or by closing before or with
// its greeting) waits a little before retrying, as a real client would, so a
// refusing server does not turn legit load into a connect flood nobody asked
// for (or a busy loop); attackers retry at once.
constexpr absl::Duration kRefusedBackoff = absl::Milliseconds(10);

uint64_t EpollData(uint32_t index, uint32_t gen) {
  return (uint64_t{gen} << 32) | index;
}

}  // namespace

// One client: a Behavior plus the socket of its current connection.
struct Engine::Client final : public Connection {
  Engine* engine = nullptr;
  uint32_t index = 0;
  size_t scenario = 0;
  uint64_t global_index = 0;
  uint64_t scenario_clients = 0;  // N of the scenario, for round-robin
  std::unique_ptr<Behavior> behavior;

  uint64_t connection_no = 0;
  int fd = -1;
  uint32_t gen = 0;  // bumped per socket: stale epoll events are skipped
  Phase phase = Phase::kWaiting;
  int64_t start_us = 0;
  int64_t deadline_us = kNever;  // what the behavior or connect wants
  int64_t heap_us = kNever;      // earliest live entry in timers_
  uint32_t interest = 0;         // events registered with epoll
  std::string out;
  size_t out_off = 0;
  bool reading_paused = false;
  bool write_failed = false;
  bool finish = false;
  Outcome finish_outcome = Outcome::kOk;

  void Send(absl::string_view bytes) override {
    if (fd < 0 || finish || write_failed || bytes.empty()) return;
    out.append(bytes.data(), bytes.size());
    engine->FlushOutput(*this);
  }
  size_t pending_output() const override { return out.size() - out_off; }
  void SetTimer(absl::Duration after) override {
    engine->SetDeadline(*this,
                        engine->NowUs() + absl::ToInt64Microseconds(after));
  }
  void ClearTimer() override { deadline_us = kNever; }
  void PauseReading() override { reading_paused = true; }
  void Finish(Outcome outcome) override {
    if (finish) return;
    finish = true;
    finish_outcome = outcome;
  }
  void RecordGreeting() override {
    stats().greeting_us.Record(engine->NowUs() - start_us);
  }
  ScenarioStats& stats() override { return engine->stats_[scenario]; }
};

Engine::Engine(const Shared& shared, const SockAddr& target,
               const EngineSlice& slice)
    : shared_(shared), target_(target), slice_(slice) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  read_buffer_.resize(kReadBufferBytes);
  const uint64_t stride = uint64_t(slice.processes) * slice.threads;
  const uint64_t mine =
      slice.process + uint64_t(slice.thread) * slice.processes;
  const std::vector<ScenarioSpec>& specs = shared.options->scenarios;
  for (size_t si = 0; si < specs.size(); ++si) {
    ScenarioStats& s = stats_.emplace_back();
    s.kind = specs[si].kind;
    const uint64_t n = specs[si].clients;
    for (uint64_t g = mine; g < n; g += stride) {
      ++s.clients;
      if (clients_.size() >= slice.fd_budget) {
        ++limits_.clients_dropped;
        continue;
      }
      ++s.clients_run;
      auto c = std::make_unique<Client>();
      c->engine = this;
      c->index = static_cast<uint32_t>(clients_.size());
      c->scenario = si;
      c->global_index = g;
      c->scenario_clients = n;
      c->behavior = MakeBehavior(s.kind, shared_, g, n);
      clients_.push_back(std::move(c));
    }
  }
  published_ = stats_;
}

Engine::~Engine() {
  for (auto& c : clients_) {
    if (c->fd >= 0) close(c->fd);
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

int64_t Engine::NowUs() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

void Engine::SetDeadline(Client& c, int64_t at_us) {
  c.deadline_us = at_us;
  // Only an earlier deadline needs a heap entry now; a later one is pushed
  // when the current entry pops. So re-arming a timeout per received chunk
  // costs no heap work, and the heap holds at most two entries per client.
  if (at_us < c.heap_us) {
    c.heap_us = at_us;
    timers_.emplace(at_us, c.index);
  }
}

void Engine::ScheduleNext(Client& c, absl::Duration delay) {
  if (delay <= absl::ZeroDuration()) {
    // Not connected right here: a connect that fails at once would recurse.
    c.deadline_us = kNever;
    ready_.push_back(c.index);
  } else {
    c.SetTimer(delay);
  }
}

void Engine::StartConnect(Client& c) {
  ScenarioStats& stats = c.stats();
  ++stats.connects;
  const uint64_t conn_no = c.connection_no++;
  c.start_us = NowUs();
  c.out.clear();
  c.out_off = 0;
  c.reading_paused = c.write_failed = c.finish = false;
  c.interest = 0;
  ++c.gen;

  const int fd =
      socket(target_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const bool fd_limit = errno == EMFILE || errno == ENFILE;
    if (fd_limit) ++limits_.emfile;
    ++stats.outcome(fd_limit ? Outcome::kLocalFdLimit : Outcome::kLocalError);
    ScheduleNext(c, kLocalBackoff);
    return;
  }
  c.fd = fd;
  c.phase = Phase::kConnecting;
  open_.fetch_add(1, std::memory_order_relaxed);
  const int one = 1;
  // Our commands are whole lines sent when we mean them; Nagle would only
  // add our own delay to the server's latency.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (const int rcvbuf = c.behavior->ReceiveBufferBytes(); rcvbuf > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  const std::vector<SockAddr>& sources = shared_.options->sources;
  if (!sources.empty()) {
    // Round-robin per connection over all clients of the scenario.
    const SockAddr& src =
        sources[(c.global_index + conn_no * c.scenario_clients) %
                sources.size()];
    // Defer the port choice to connect(): with bind() alone every socket
    // would need a port unique per source address, not per 4-tuple.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, src.get(), src.len) != 0) {
      const int err = errno;
      if (err == EADDRINUSE) ++limits_.port_exhausted;
      Close(c, err == EADDRINUSE ? Outcome::kLocalPortsExhausted
                                 : Outcome::kLocalError);
      return;
    }
  }
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = EpollData(c.index, c.gen);
  c.interest = EPOLLOUT;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    Close(c, Outcome::kLocalError);
    return;
  }
  if (connect(fd, target_.get(), target_.len) == 0) {
    OnConnectDone(c);
    return;
  }
  if (errno == EINPROGRESS) {
    SetDeadline(c, c.start_us + absl::ToInt64Microseconds(
                                    shared_.options->connect_timeout));
    return;
  }
  const int err = errno;
  if (err == EADDRNOTAVAIL) ++limits_.port_exhausted;
  Close(c, err == ECONNREFUSED || err == ECONNRESET ? Outcome::kRefusedAtConnect
           : err == EADDRNOTAVAIL ? Outcome::kLocalPortsExhausted
           : err == ETIMEDOUT     ? Outcome::kConnectTimeout
                                  : Outcome::kLocalError);
}

void Engine::OnConnectDone(Client& c) {
  c.phase = Phase::kOpen;
  c.deadline_us = kNever;
  ++c.stats().established;
  c.behavior->OnConnected(c);
  AfterCallback(c);
}

void Engine::UpdateInterest(Client& c) {
  uint32_t want = c.reading_paused ? EPOLLRDHUP : EPOLLIN;
  if (c.pending_output() > 0) want |= EPOLLOUT;
  if (want == c.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = EpollData(c.index, c.gen);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) == 0) c.interest = want;
}

void Engine::FlushOutput(Client& c) {
  ScenarioStats& stats = c.stats();
  // Bounded: each pass writes something or stops.
  while (c.out_off < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.out_off,
                           c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += n;
      stats.bytes_out += n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0 && errno != EAGAIN) c.write_failed = true;
      break;
    }
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1u << 20)) {
    c.out.erase(0, c.out_off);  // Keep a big queued bomb from growing.
    c.out_off = 0;
  }
}

void Engine::AfterCallback(Client& c) {
  if (c.phase != Phase::kOpen) return;
  if (c.finish) {
    Close(c, c.finish_outcome);
  } else if (c.write_failed) {
    Close(c, c.behavior->OnPeerClosed(c, /*reset=*/true));
  } else {
    UpdateInterest(c);
  }
}

void Engine::Close(Client& c, Outcome outcome) {
  ScenarioStats& stats = c.stats();
  ++stats.outcome(outcome);
  if (c.phase == Phase::kOpen && c.behavior->RecordsLatency(outcome)) {
    stats.latency_us.Record(NowUs() - c.start_us);
  }
  if (c.fd >= 0) {
    close(c.fd);  // Also removes it from the epoll set.
    c.fd = -1;
    open_.fetch_sub(1, std::memory_order_relaxed);
  }
  c.phase = Phase::kWaiting;
  c.out.clear();
  c.out_off = 0;
  if (!running_) return;
  absl::Duration delay = c.behavior->NextDelay();
  switch (outcome) {
    case Outcome::kLocalFdLimit:
    case Outcome::kLocalPortsExhausted:
    case Outcome::kLocalError:
      delay = std::max(delay, kLocalBackoff);
      break;
    case Outcome::kRefusedAtConnect:
    case Outcome::kConnectTimeout:
    case Outcome::kEofBeforeGreeting:
    case Outcome::kErrGreeting:
      if (!IsAttack(stats.kind)) delay = std::max(delay, kRefusedBackoff);
      break;
    default:
      break;
  }
  ScheduleNext(c, delay);
}

void Engine::ReadAvailable(Client& c) {
  const uint32_t gen = c.gen;
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t n = recv(c.fd, read_buffer_.data(), read_buffer_.size(), 0);
    if (n > 0) {
      c.stats().bytes_in += n;
      c.behavior->OnData(c, absl::string_view(read_buffer_.data(), n));
      AfterCallback(c);
      if (c.phase != Phase::kOpen || c.gen != gen || c.reading_paused) return;
      if (static_cast<size_t>(n) < read_buffer_.size()) return;
      continue;
    }
    if (n == 0) {
      Close(c, c.behavior->OnPeerClosed(c, /*reset=*/false));
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;
    Close(c, c.behavior->OnPeerClosed(c, /*reset=*/true));
    return;
  }
}

void Engine::OnEvent(Client& c, uint32_t events) {
  if (c.phase == Phase::kConnecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 && (events & EPOLLOUT)) {
      OnConnectDone(c);
    } else if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      if (err == EADDRNOTAVAIL) ++limits_.port_exhausted;
      Close(c, err == EADDRNOTAVAIL ? Outcome::kLocalPortsExhausted
               : err == ETIMEDOUT   ? Outcome::kConnectTimeout
                                    : Outcome::kRefusedAtConnect);
    }
    return;
  }
  if (c.phase != Phase::kOpen) return;
  const uint32_t gen = c.gen;
  if ((events & EPOLLOUT) && c.pending_output() > 0) {
    FlushOutput(c);
    if (!c.write_failed && c.pending_output() == 0) {
      c.behavior->OnWritable(c);
    }
    AfterCallback(c);
    if (c.phase != Phase::kOpen || c.gen != gen) return;
  }
  if (!c.reading_paused) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ReadAvailable(c);
  } else if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
    // Not reading, so this is the only sign of the server giving up on us;
    // level-triggered RDHUP would repeat forever if we did not close now.
    Close(c, c.behavior->OnPeerClosed(c, (events & EPOLLERR) != 0));
  }
}

void Engine::RunTimers(int64_t now_us) {
  // Bounded: each pop fires, is stale, or is re-pushed later than now.
  while (!timers_.empty() && timers_.top().first <= now_us) {
    const auto [at, index] = timers_.top();
    timers_.pop();
    Client& c = *clients_[index];
    if (at != c.heap_us) continue;  // superseded by an earlier entry
    c.heap_us = kNever;
    if (c.deadline_us == kNever) continue;
    if (c.deadline_us > now_us) {
      c.heap_us = c.deadline_us;
      timers_.emplace(c.deadline_us, c.index);
      continue;
    }
    c.deadline_us = kNever;
    switch (c.phase) {
      case Phase::kWaiting:
        StartConnect(c);
        break;
      case Phase::kConnecting:
        Close(c, Outcome::kConnectTimeout);
        break;
      case Phase::kOpen:
        c.behavior->OnTimer(c);
        AfterCallback(c);
        break;
    }
  }
}

void Engine::Publish() {
  absl::MutexLock lock(&mu_);
  published_ = stats_;
  published_limits_ = limits_;
}

std::vector<ScenarioStats> Engine::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

LocalLimits Engine::limits() const {
  absl::MutexLock lock(&mu_);
  return published_limits_;
}

void Engine::Run(absl::Duration duration, const std::atomic<bool>& stop) {
  running_ = true;
  start_us_ = NowUs();
  const int64_t end_us = start_us_ + absl::ToInt64Microseconds(duration);
  int64_t next_publish = start_us_ + kPublishEveryUs;
  for (auto& c : clients_) ready_.push_back(c->index);
  std::vector<epoll_event> events(kMaxEvents);
  std::vector<uint32_t> starting;
  while (!stop.load(std::memory_order_relaxed)) {
    int64_t now = NowUs();
    if (now >= end_us) break;
    // A bounded batch per iteration: 20,000 clients starting at once would
    // otherwise delay every reply already waiting (and inflate its latency)
    // by the whole burst, and overshoot the deadline.
    const size_t batch = std::min(ready_.size(), kConnectsPerIteration);
    starting.assign(ready_.begin(), ready_.begin() + batch);
    ready_.erase(ready_.begin(), ready_.begin() + batch);
    for (uint32_t index : starting) {
      if (clients_[index]->phase == Phase::kWaiting) {
        StartConnect(*clients_[index]);
      }
    }
    starting.clear();
    now = NowUs();
    int64_t wait_us = std::min(end_us - now, kMaxWaitUs);
    if (!timers_.empty())
      wait_us = std::min(wait_us, timers_.top().first - now);
    if (!ready_.empty()) wait_us = 0;
    // Round up: waking a little late is fine, waking early would spin.
    const int wait_ms =
        wait_us <= 0 ? 0 : static_cast<int>((wait_us + 999) / 1000);
    const int n = epoll_wait(epoll_fd_, events.data(), kMaxEvents, wait_ms);
    for (int i = 0; i < n; ++i) {
      const uint64_t data = events[i].data.u64;
      const uint32_t index = static_cast<uint32_t>(data);
      Client& c = *clients_[index];
      // An event for a socket closed earlier in this batch.
      if (c.gen != static_cast<uint32_t>(data >> 32) || c.fd < 0) continue;
      OnEvent(c, events[i].events);
    }
    now = NowUs();
    RunTimers(now);
    if (now >= next_publish) {
      Publish();
      next_publish = now + kPublishEveryUs;
    }
  }
  running_ = false;
  elapsed_ = absl::Microseconds(NowUs() - start_us_);
  for (auto& cp : clients_) {
    Client& c = *cp;
    if (c.phase == Phase::kOpen) {
      const Outcome o = c.behavior->OnRunEnd(c);
      if (o == Outcome::kCount) {
        ++c.stats().in_flight_at_end;
      } else {
        ++c.stats().outcome(o);
      }
    }
    if (c.fd >= 0) {
      close(c.fd);
      c.fd = -1;
      open_.fetch_sub(1, std::memory_order_relaxed);
    }
    c.phase = Phase::kWaiting;
  }
  Publish();
}

}  // namespace popgate::flood
