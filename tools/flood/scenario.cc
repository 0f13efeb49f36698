#include "tools/flood/scenario.h"

namespace popgate::flood {

std::unique_ptr<Behavior> MakeBehavior(ScenarioKind kind, const Shared& shared,
                                       uint64_t global_index,
                                       uint64_t clients) {
  switch (kind) {
    case ScenarioKind::kPoll:
    case ScenarioKind::kDownload:
    case ScenarioKind::kRetrThroughput:
      return MakeSessionBehavior(kind, shared, global_index, clients);
    case ScenarioKind::kConnectClose:
    case ScenarioKind::kHoldIdle:
    case ScenarioKind::kSlowloris:
      return MakeConnectionAttack(kind, shared, global_index);
    case ScenarioKind::kOverlong:
    case ScenarioKind::kJunk:
    case ScenarioKind::kPipelineBomb:
      return MakeInputAttack(kind, shared, global_index);
    case ScenarioKind::kGuess:
    case ScenarioKind::kNoRead:
      return MakeAuthAttack(kind, shared, global_index, clients);
    case ScenarioKind::kCount:
      break;
  }
  return nullptr;
}

}  // namespace popgate::flood
