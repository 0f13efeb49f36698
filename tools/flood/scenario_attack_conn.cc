// Connection-level attacks: connect-close, hold-idle, slowloris. They cost
// the server a slot each and send (almost) nothing; what matters is whether
// and when the server drops them.
#include <string>

#include "absl/strings/str_cat.h"
#include "tools/flood/attack.h"

namespace popgate::flood {
namespace {

// Connect, then close at once without reading: the cheapest attack for us,
// and the one that shows the server's accept-and-refuse cost.
class ConnectClose : public Behavior {
 public:
  void OnConnected(Connection& c) override { c.Finish(Outcome::kOk); }
  void OnData(Connection& c, absl::string_view data) override {}
  void OnTimer(Connection& c) override {}
  Outcome OnPeerClosed(Connection& c, bool reset) override {
    return Outcome::kOk;
  }
  Outcome OnRunEnd(Connection& c) override { return Outcome::kCount; }
};

// Connect, read the greeting, then hold the connection and ignore whatever
// comes; the server should close it at its pre-auth deadline.
class HoldIdle : public AttackBehavior {
 public:
  using AttackBehavior::AttackBehavior;

 protected:
  void OnGreeting(Connection& c) override { set_extra(Extra::kIgnore); }
  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {}
};

// A command line that never ends, one byte per --slowloris-interval: the
// server's line cap takes hours to trip, so only a pre-auth deadline stops it.
class Slowloris : public AttackBehavior {
 public:
  using AttackBehavior::AttackBehavior;

 protected:
  void OnNewConnection(Connection& c) override { sent_ = 0; }
  void OnGreeting(Connection& c) override {
    set_extra(Extra::kIgnore);
    OnIdleTimer(c);
  }
  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {}
  void OnIdleTimer(Connection& c) override {
    static constexpr absl::string_view kPrefix = "USER ";
    const char byte = sent_ < kPrefix.size() ? kPrefix[sent_] : 'a';
    c.Send(absl::string_view(&byte, 1));
    ++sent_;
    c.SetTimer(shared_.options->slowloris_interval);
  }

 private:
  size_t sent_ = 0;
};

}  // namespace

std::unique_ptr<Behavior> MakeConnectionAttack(ScenarioKind kind,
                                               const Shared& shared,
                                               uint64_t global_index) {
  switch (kind) {
    case ScenarioKind::kConnectClose:
      return std::make_unique<ConnectClose>();
    case ScenarioKind::kHoldIdle:
      return std::make_unique<HoldIdle>(shared);
    case ScenarioKind::kSlowloris:
      return std::make_unique<Slowloris>(shared);
    default:
      return nullptr;
  }
}

}  // namespace popgate::flood
