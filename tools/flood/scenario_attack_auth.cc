// Attacks that use the login: password guessing and never-reading clients.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tools/flood/attack.h"

namespace popgate::flood {
namespace {

enum Tag { kUser, kPass };

// USER + a wrong PASS, again and again on one connection until the server
// cuts it off. A +OK to a wrong password is the worst finding there is.
class Guess : public AttackBehavior {
 public:
  Guess(const Shared& shared, uint64_t global_index, uint64_t clients)
      : AttackBehavior(shared),
        global_index_(global_index),
        clients_(clients) {}

 protected:
  void OnGreeting(Connection& c) override { QueueGuess(c); }

  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {
    if (tag != kPass) return;  // USER's answer reveals nothing we act on.
    if (reply.ok()) {
      ++c.stats().check(Check::kWrongPasswordAccepted);
      End(c, Outcome::kVerifyError);
      return;
    }
    QueueGuess(c);
  }

 private:
  void QueueGuess(Connection& c) {
    const std::vector<Credentials>& users = shared_.options->users;
    const std::string user =
        users.empty()
            ? absl::StrCat("flood", global_index_)
            : users[(global_index_ + guesses_ * clients_) % users.size()].user;
    const std::string pass = absl::StrReplaceAll(
        shared_.options->wrong_pass, {{"%d", absl::StrCat(guesses_)}});
    ++guesses_;
    Queue(absl::StrCat("USER ", user), kUser);
    Queue(absl::StrCat("PASS ", pass), kPass);
  }

  const uint64_t global_index_;
  const uint64_t clients_;
  uint64_t guesses_ = 0;
};

// Logs in, asks for --no-read-retrs RETRs and never reads: the server's
// output must stay bounded and its write timeout should drop us.
class NoRead : public AttackBehavior {
 public:
  NoRead(const Shared& shared, uint64_t global_index, uint64_t clients)
      : AttackBehavior(shared),
        global_index_(global_index),
        clients_(clients) {}

  // A small window makes the server's writes block after a few kB instead
  // of after the loopback default of several MB.
  int ReceiveBufferBytes() const override { return 4096; }

 protected:
  void OnGreeting(Connection& c) override {
    const std::vector<Credentials>& users = shared_.options->users;
    const Credentials& u =
        users[(global_index_ + session_no_++ * clients_) % users.size()];
    Queue(absl::StrCat("USER ", u.user), kUser);
    Queue(absl::StrCat("PASS ", u.pass), kPass);
  }

  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {
    if (!reply.ok()) {
      End(c, Outcome::kErrAuth);
      return;
    }
    if (tag != kPass) return;
    const int n = shared_.options->no_read_retrs;
    std::string retrs;
    for (int i = 0; i < n; ++i) retrs += "RETR 1\r\n";
    c.Send(retrs);
    c.stats().commands += n;
    set_extra(Extra::kIgnore);
    c.PauseReading();
  }

 private:
  const uint64_t global_index_;
  const uint64_t clients_;
  uint64_t session_no_ = 0;
};

}  // namespace

std::unique_ptr<Behavior> MakeAuthAttack(ScenarioKind kind,
                                         const Shared& shared,
                                         uint64_t global_index,
                                         uint64_t clients) {
  switch (kind) {
    case ScenarioKind::kGuess:
      return std::make_unique<Guess>(shared, global_index, clients);
    case ScenarioKind::kNoRead:
      return std::make_unique<NoRead>(shared, global_index, clients);
    default:
      return nullptr;
  }
}

}  // namespace popgate::flood
