// AttackBehavior: what all attack scenarios share. An attacker's connection
// ends well for the server when the server cuts it off (kClosedByServer);
// its lifetime is recorded for that and for kNotClosed (the attacker ran out
// of script first), so "held" percentiles show how long an attacker lasts.
#ifndef POPGATE_TOOLS_FLOOD_ATTACK_H_
#define POPGATE_TOOLS_FLOOD_ATTACK_H_

#include "tools/flood/pop3_client.h"

namespace popgate::flood {

class AttackBehavior : public Pop3Behavior {
 public:
  using Pop3Behavior::Pop3Behavior;

  Outcome OnPeerClosed(Connection& c, bool reset) override {
    return greeted() ? Outcome::kClosedByServer : Outcome::kEofBeforeGreeting;
  }
  Outcome OnRunEnd(Connection& c) override { return Outcome::kHeldAtEnd; }
  bool RecordsLatency(Outcome outcome) const override {
    return outcome == Outcome::kClosedByServer ||
           outcome == Outcome::kNotClosed || outcome == Outcome::kOk;
  }
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_ATTACK_H_
