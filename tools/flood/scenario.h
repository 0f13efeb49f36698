// The seam between the engine and the scenarios: a Behavior drives one
// client's connections through a Connection the engine owns.
//
// A client is one of the N of "--scenario=NAME:N". It has at most one
// connection at a time; when that ends (Finish, or the peer closes) the
// engine records the outcome and, after NextDelay(), opens the next one, until
// the run ends. Behaviors never touch sockets, so each one is a plain state
// machine over bytes and timer ticks.
//
// Threading: a Behavior lives on one engine thread; the Shared context is
// read-only except for the thread-safe UidlTracker.
#ifndef POPGATE_TOOLS_FLOOD_SCENARIO_H_
#define POPGATE_TOOLS_FLOOD_SCENARIO_H_

#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/flood/listing.h"
#include "tools/flood/options.h"
#include "tools/flood/stats.h"

namespace popgate::flood {

// What a behavior may do to its current connection.
class Connection {
 public:
  virtual ~Connection() = default;
  // Queues bytes and writes what the socket takes now; the rest goes out as
  // the socket drains. Counts bytes_out.
  virtual void Send(absl::string_view bytes) = 0;
  // Octets queued but not yet taken by the kernel.
  virtual size_t pending_output() const = 0;
  // One timer per connection: OnTimer fires `after` from now; a new call
  // replaces the previous deadline.
  virtual void SetTimer(absl::Duration after) = 0;
  virtual void ClearTimer() = 0;
  // Stops reading: received data piles up in the (small) receive buffer so
  // the server's writes block. The engine still notices a close or reset.
  virtual void PauseReading() = 0;
  // Ends this connection with `outcome` once the current callback returns.
  virtual void Finish(Outcome outcome) = 0;
  // Records the greeting latency (connect start to now).
  virtual void RecordGreeting() = 0;
  virtual ScenarioStats& stats() = 0;
};

// Read-only for the whole run, shared by all behaviors of a process.
struct Shared {
  const Options* options = nullptr;
  UidlTracker* uidls = nullptr;
};

class Behavior {
 public:
  virtual ~Behavior() = default;

  // A new connection's handshake completed. Resets per-connection state.
  virtual void OnConnected(Connection& c) = 0;
  // Bytes from the server. Untrusted: from the socket.
  virtual void OnData(Connection& c, absl::string_view data) = 0;
  virtual void OnTimer(Connection& c) = 0;
  // All queued output was written (called only after some had to wait).
  virtual void OnWritable(Connection& c) {}
  // The server closed (EOF) or reset the connection; returns how this
  // connection ended.
  virtual Outcome OnPeerClosed(Connection& c, bool reset) = 0;
  // The run ended with the connection still open. Returns the outcome to
  // record, or Outcome::kCount for "unfinished, not counted" (a legit
  // session cut short by the deadline says nothing about the server).
  virtual Outcome OnRunEnd(Connection& c) = 0;
  // Whether the connection's latency (lifetime) is recorded for `outcome`.
  virtual bool RecordsLatency(Outcome outcome) const {
    return outcome == Outcome::kOk;
  }
  // Pause before this client's next connection.
  virtual absl::Duration NextDelay() const { return absl::ZeroDuration(); }
  // SO_RCVBUF to set before connect, 0 for the default.
  virtual int ReceiveBufferBytes() const { return 0; }
};

// Creates the behavior of client `global_index` (0-based over all processes
// and threads) of a scenario with `clients` clients.
std::unique_ptr<Behavior> MakeBehavior(ScenarioKind kind, const Shared& shared,
                                       uint64_t global_index, uint64_t clients);

// Factories per family (scenario_session.cc, scenario_attack_*.cc).
std::unique_ptr<Behavior> MakeSessionBehavior(ScenarioKind kind,
                                              const Shared& shared,
                                              uint64_t global_index,
                                              uint64_t clients);
std::unique_ptr<Behavior> MakeConnectionAttack(ScenarioKind kind,
                                               const Shared& shared,
                                               uint64_t global_index);
std::unique_ptr<Behavior> MakeInputAttack(ScenarioKind kind,
                                          const Shared& shared,
                                          uint64_t global_index);
std::unique_ptr<Behavior> MakeAuthAttack(ScenarioKind kind,
                                         const Shared& shared,
                                         uint64_t global_index,
                                         uint64_t clients);

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_SCENARIO_H_
