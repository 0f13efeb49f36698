// Legit sessions: poll, download and retr-throughput. Each connection is one
// POP3 session as a mail client runs it; the session's latency is from
// connect() to the reply to QUIT, and every reply is checked.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tools/flood/listing.h"
#include "tools/flood/pop3_client.h"

namespace popgate::flood {
namespace {

enum Tag { kUser, kPass, kStat, kUidl, kList, kRetr, kDele, kQuit };

class SessionBehavior : public Pop3Behavior {
 public:
  SessionBehavior(ScenarioKind kind, const Shared& shared,
                  uint64_t global_index, uint64_t clients)
      : Pop3Behavior(shared),
        kind_(kind),
        global_index_(global_index),
        clients_(clients) {}

  absl::Duration NextDelay() const override { return shared_.options->think; }

 protected:
  void OnNewConnection(Connection& c) override {
    // Round-robin over users, spread so that concurrent clients start on
    // different users: client g's k-th session uses user g + k * clients.
    const std::vector<Credentials>& users = shared_.options->users;
    user_ = &users[(global_index_ + session_no_ * clients_) % users.size()];
    ++session_no_;
    have_stat_ = false;
    sizes_.clear();
    set_pipeline(shared_.options->pipeline);
  }

  void OnGreeting(Connection& c) override {
    Queue(absl::StrCat("USER ", user_->user), kUser);
    Queue(absl::StrCat("PASS ", user_->pass), kPass);
    Queue("STAT", kStat);
    if (kind_ == ScenarioKind::kPoll) {
      Queue("UIDL", kUidl, 0, /*multi_line=*/true, /*capture=*/true);
      Queue("QUIT", kQuit);
    } else {
      // RETRs need LIST's sizes first: the rest is queued on its reply.
      Queue("LIST", kList, 0, /*multi_line=*/true, /*capture=*/true);
    }
  }

  void OnReply(Connection& c, int tag, uint64_t arg,
               const ReplyParser& reply) override {
    ScenarioStats& stats = c.stats();
    if (!reply.ok()) {
      if (tag == kUser || tag == kPass) {
        // RFC 2449 §8.1.1: [IN-USE] means the maildrop is locked by another
        // session, which is not an authentication failure.
        End(c, absl::StrContains(reply.status_text(), "[IN-USE]")
                   ? Outcome::kErrInUse
                   : Outcome::kErrAuth);
      } else {
        End(c, Outcome::kErrCommand);
      }
      return;
    }
    switch (tag) {
      case kStat: {
        absl::StatusOr<StatReply> stat = ParseStat(reply.status_text());
        if (!stat.ok()) {
          Verify(stats, Check::kBadListing);
        } else {
          stat_ = *stat;
          have_stat_ = true;
        }
        break;
      }
      case kUidl:
        CheckUidl(stats, reply);
        break;
      case kList:
        OnList(c, reply);
        break;
      case kRetr:
        CheckRetr(stats, arg, reply);
        break;
      case kQuit:
        End(c, sticky());
        break;
      default:
        break;
    }
  }

 private:
  void Verify(ScenarioStats& stats, Check check) {
    ++stats.check(check);
    if (CheckFails(check)) MarkFailed(Outcome::kVerifyError);
  }

  void CheckUidl(ScenarioStats& stats, const ReplyParser& reply) {
    absl::StatusOr<std::vector<ListingEntry>> list = ParseListing(reply.body());
    if (!list.ok()) {
      Verify(stats, Check::kBadListing);
      return;
    }
    if (have_stat_ && list->size() != stat_.messages) {
      Verify(stats, Check::kStatListMismatch);
    }
    std::vector<std::string> uids;
    uids.reserve(list->size());
    for (ListingEntry& e : *list) uids.push_back(std::move(e.value));
    if (!shared_.uidls->Check(user_->user, std::move(uids))) {
      Verify(stats, Check::kUidlChanged);
    }
  }

  void OnList(Connection& c, const ReplyParser& reply) {
    ScenarioStats& stats = c.stats();
    absl::StatusOr<std::vector<ListingEntry>> list = ParseListing(reply.body());
    std::vector<std::pair<uint64_t, uint64_t>> msn_size;
    if (!list.ok()) {
      Verify(stats, Check::kBadListing);
    } else {
      uint64_t total = 0;
      for (const ListingEntry& e : *list) {
        uint64_t size;
        if (!absl::SimpleAtoi(e.value, &size)) {
          Verify(stats, Check::kBadListing);
          msn_size.clear();
          break;
        }
        total += size;
        msn_size.emplace_back(e.msn, size);
      }
      if (have_stat_ &&
          (list->size() != stat_.messages || total != stat_.octets)) {
        Verify(stats, Check::kStatListMismatch);
      }
    }
    size_t n = msn_size.size();
    const int retr = shared_.options->retr;
    if (kind_ == ScenarioKind::kDownload && retr > 0) {
      n = std::min<size_t>(n, retr);
    }
    const bool dele = kind_ == ScenarioKind::kDownload && shared_.options->dele;
    for (size_t i = 0; i < n; ++i) {
      const auto [msn, size] = msn_size[i];
      sizes_.push_back(size);
      // arg = index into sizes_ so RETR's reply finds its LIST size.
      Queue(absl::StrCat("RETR ", msn), kRetr, i, /*multi_line=*/true);
      if (dele) Queue(absl::StrCat("DELE ", msn), kDele);
    }
    Queue("QUIT", kQuit);
  }

  void CheckRetr(ScenarioStats& stats, uint64_t index,
                 const ReplyParser& reply) {
    stats.payload_bytes += reply.body_octets();
    const uint64_t expected = sizes_[index];
    if (reply.body_octets() == expected) {
      ++stats.messages;
    } else if (reply.body_octets() == expected + 1) {
      // popa3d counts an unterminated last line one short (its §4.3).
      ++stats.messages;
      Verify(stats, Check::kRetrSizeOffByOne);
    } else {
      Verify(stats, Check::kRetrSizeMismatch);
    }
  }

  const ScenarioKind kind_;
  const uint64_t global_index_;
  const uint64_t clients_;
  uint64_t session_no_ = 0;
  const Credentials* user_ = nullptr;
  bool have_stat_ = false;
  StatReply stat_;
  std::vector<uint64_t> sizes_;
};

}  // namespace

std::unique_ptr<Behavior> MakeSessionBehavior(ScenarioKind kind,
                                              const Shared& shared,
                                              uint64_t global_index,
                                              uint64_t clients) {
  return std::make_unique<SessionBehavior>(kind, shared, global_index, clients);
}

}  // namespace popgate::flood
