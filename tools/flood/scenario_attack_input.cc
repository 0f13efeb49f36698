// Input attacks: overlong lines, binary junk, pipeline bombs. Each sends its
// payload after the greeting followed by QUIT, then reads every reply until
// the server closes. Surviving the payload and answering QUIT is kNotClosed;
// being cut off first is kClosedByServer. Either can be right: the table
// shows which the server chose and how long it took.
#include <string>

#include "absl/strings/str_cat.h"
#include "tools/flood/attack.h"

namespace popgate::flood {
namespace {

class InputAttack : public AttackBehavior {
 public:
  using AttackBehavior::AttackBehavior;

  Outcome OnPeerClosed(Connection& c, bool reset) override {
    if (!greeted()) return Outcome::kEofBeforeGreeting;
    return quit_sent_ && replies_ >= expected_replies_ && last_ok_
               ? Outcome::kNotClosed
               : Outcome::kClosedByServer;
  }

 protected:
  void OnNewConnection(Connection& c) override {
    quit_sent_ = false;
    last_ok_ = false;
    replies_ = 0;
  }
  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {
    ++replies_;
    last_ok_ = reply.ok();
  }
  void SendQuit(Connection& c) {
    c.Send("QUIT\r\n");
    ++c.stats().commands;
    quit_sent_ = true;
  }

  // Replies a compliant server sends before closing, QUIT's included.
  uint64_t expected_replies_ = 1;
  uint64_t replies_ = 0;
  bool quit_sent_ = false;
  bool last_ok_ = false;
};

// One command line of --overlong-bytes. DESIGN: a line over the cap gets
// exactly one -ERR and is never split into several commands.
class Overlong : public InputAttack {
 public:
  using InputAttack::InputAttack;

  Outcome OnPeerClosed(Connection& c, bool reset) override {
    // More than line + QUIT replies: the line was split into commands.
    if (replies_ > 2) ++c.stats().check(Check::kLineSplit);
    return InputAttack::OnPeerClosed(c, reset);
  }

 protected:
  void OnGreeting(Connection& c) override {
    set_extra(Extra::kReplies);
    expected_replies_ = 2;
    std::string line = "USER ";
    line.append(shared_.options->overlong_bytes, 'A');
    line += "\r\n";
    c.Send(line);
    ++c.stats().commands;
    SendQuit(c);
  }
};

// --junk-bytes of random bytes (NULs, CRs, LFs included), written as fast as
// the server reads them.
class Junk : public InputAttack {
 public:
  Junk(const Shared& shared, uint64_t seed)
      : InputAttack(shared), rng_(seed * 0x9E3779B97F4A7C15ull + 1) {}

  void OnWritable(Connection& c) override { Pump(c); }

 protected:
  void OnNewConnection(Connection& c) override {
    InputAttack::OnNewConnection(c);
    junk_sent_ = 0;
  }
  void OnGreeting(Connection& c) override {
    set_extra(Extra::kReplies);
    Pump(c);
  }

 private:
  static constexpr size_t kChunk = 16 * 1024;

  void Pump(Connection& c) {
    const uint64_t total = shared_.options->junk_bytes;
    // Bounded: at most total / kChunk + 1 chunks, and only while the socket
    // takes them at once; otherwise OnWritable resumes.
    while (!quit_sent_ && c.pending_output() == 0) {
      if (junk_sent_ >= total) {
        // A CR LF first ends whatever junk line is open, so QUIT is a line.
        c.Send("\r\n");
        SendQuit(c);
        return;
      }
      const size_t n = std::min<uint64_t>(kChunk, total - junk_sent_);
      std::string chunk(n, '\0');
      for (size_t i = 0; i < n; i += 8) {
        // xorshift64: fast, reproducible per client.
        rng_ ^= rng_ << 13;
        rng_ ^= rng_ >> 7;
        rng_ ^= rng_ << 17;
        for (size_t b = 0; b < 8 && i + b < n; ++b) {
          chunk[i + b] = static_cast<char>(rng_ >> (8 * b));
        }
      }
      c.Send(chunk);
      junk_sent_ += n;
    }
  }

  uint64_t rng_;
  uint64_t junk_sent_ = 0;
};

// --bomb-commands valid pre-auth commands in one write, then QUIT: the
// server must bound its output queue for a client that pipelines without
// limit (and may cut it off).
class PipelineBomb : public InputAttack {
 public:
  using InputAttack::InputAttack;

 protected:
  void OnGreeting(Connection& c) override {
    set_extra(Extra::kReplies);
    const int n = shared_.options->bomb_commands;
    expected_replies_ = n + 1;
    static constexpr absl::string_view kCommand = "USER bomb\r\n";
    std::string bomb;
    bomb.reserve(n * kCommand.size());
    for (int i = 0; i < n; ++i) bomb.append(kCommand.data(), kCommand.size());
    c.Send(bomb);
    c.stats().commands += n;
    SendQuit(c);
  }
};

}  // namespace

std::unique_ptr<Behavior> MakeInputAttack(ScenarioKind kind,
                                          const Shared& shared,
                                          uint64_t global_index) {
  switch (kind) {
    case ScenarioKind::kOverlong:
      return std::make_unique<Overlong>(shared);
    case ScenarioKind::kJunk:
      return std::make_unique<Junk>(shared, global_index);
    case ScenarioKind::kPipelineBomb:
      return std::make_unique<PipelineBomb>(shared);
    default:
      return nullptr;
  }
}

}  // namespace popgate::flood
