// Pop3Behavior: the common part of every scenario that speaks POP3. It parses
// the greeting and each reply with ReplyParser, matches replies to the
// commands sent (one at a time, or all at once with --pipeline), applies the
// reply timeout, and turns malformed replies into counted checks.
//
// Subclasses script the session in OnGreeting/OnReply and choose what to do
// with bytes nobody asked for (free replies, ignored input, or an error).
#ifndef POPGATE_TOOLS_FLOOD_POP3_CLIENT_H_
#define POPGATE_TOOLS_FLOOD_POP3_CLIENT_H_

#include <cstdint>
#include <deque>
#include <string>

#include "tools/flood/reply_parser.h"
#include "tools/flood/scenario.h"

namespace popgate::flood {

// Adds one count per ReplyDefect bit to `stats`; returns true if any.
bool RecordDefects(uint32_t defects, ScenarioStats& stats);

class Pop3Behavior : public Behavior {
 public:
  explicit Pop3Behavior(const Shared& shared) : shared_(shared) {}

  void OnConnected(Connection& c) final;
  void OnData(Connection& c, absl::string_view data) final;
  void OnTimer(Connection& c) final;
  // Legit default: kEofBeforeGreeting before the greeting, else
  // kEofMidSession.
  Outcome OnPeerClosed(Connection& c, bool reset) override;
  Outcome OnRunEnd(Connection& c) override { return Outcome::kCount; }

 protected:
  // What to do with server bytes when no command awaits a reply.
  enum class Extra {
    kError,    // unexpected bytes: protocol error (legit sessions)
    kReplies,  // parse them as single-line replies, OnReply(kFreeTag)
    kIgnore,   // discard (hold-idle, slowloris, no-read)
  };
  static constexpr int kFreeTag = -1;

  // Per connection: reset state; the greeting is awaited after this.
  virtual void OnNewConnection(Connection& c) {}
  // A "+OK" greeting arrived (a "-ERR" one ends the connection).
  virtual void OnGreeting(Connection& c) = 0;
  // The reply to a command queued with `tag` and `arg` (or a free reply).
  virtual void OnReply(Connection& c, int tag, uint64_t arg,
                       const ReplyParser& reply) = 0;
  // The timer fired while no reply was awaited (subclass timers).
  virtual void OnIdleTimer(Connection& c) {}

  // Queues a command line (CR LF added) and sends what may go now.
  void Queue(absl::string_view line, int tag, uint64_t arg = 0,
             bool multi_line = false, bool capture = false);
  // Sends queued commands: all of them when pipelining, else the next one
  // once nothing awaits a reply.
  void Flush(Connection& c);
  // Ends the connection; later bytes are ignored.
  void End(Connection& c, Outcome outcome);
  // Remembers the first failure; the session runs on and ends with it.
  void MarkFailed(Outcome outcome) {
    if (sticky_ == Outcome::kOk) sticky_ = outcome;
  }
  Outcome sticky() const { return sticky_; }

  bool greeted() const { return greeted_; }
  bool ended() const { return ended_; }
  size_t awaiting() const { return sent_.size(); }
  void set_extra(Extra extra) { extra_ = extra; }
  void set_pipeline(bool on) { pipeline_ = on; }

  const Shared& shared_;

 private:
  struct Command {
    std::string line;  // with CR LF
    int tag;
    uint64_t arg;
    bool multi_line;
    bool capture;
  };

  void ArmReplyTimer(Connection& c);
  // Handles one complete reply; false if the connection ended.
  bool Dispatch(Connection& c);

  std::deque<Command> unsent_;
  std::deque<Command> sent_;
  ReplyParser parser_;
  bool parsing_ = false;
  bool greeted_ = false;
  bool ended_ = false;
  bool pipeline_ = false;
  Extra extra_ = Extra::kError;
  Outcome sticky_ = Outcome::kOk;
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_POP3_CLIENT_H_
