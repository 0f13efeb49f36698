#include "tools/flood/pop3_client.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace popgate::flood {

bool RecordDefects(uint32_t defects, ScenarioStats& stats) {
  static constexpr std::pair<ReplyDefect, Check> kMap[] = {
      {kDefectBadStatus, Check::kBadStatusLine},
      {kDefectOverlongStatus, Check::kOverlongStatusLine},
      {kDefectBareLf, Check::kBareLf},
      {kDefectUnstuffedDot, Check::kUnstuffedDot},
      {kDefectCaptureOverflow, Check::kListingOverflow},
  };
  for (const auto& [bit, check] : kMap) {
    if (defects & bit) ++stats.check(check);
  }
  return defects != kDefectNone;
}

void Pop3Behavior::OnConnected(Connection& c) {
  unsent_.clear();
  sent_.clear();
  parsing_ = false;
  greeted_ = false;
  ended_ = false;
  extra_ = Extra::kError;
  sticky_ = Outcome::kOk;
  OnNewConnection(c);
  ArmReplyTimer(c);  // The greeting is a reply too.
}

void Pop3Behavior::ArmReplyTimer(Connection& c) {
  // Re-armed on every chunk received: the timeout is for silence, so a
  // long RETR that keeps flowing never times out.
  if (!greeted_ || !sent_.empty() || extra_ == Extra::kReplies) {
    c.SetTimer(shared_.options->timeout);
  }
}

void Pop3Behavior::Queue(absl::string_view line, int tag, uint64_t arg,
                         bool multi_line, bool capture) {
  unsent_.push_back(
      {absl::StrCat(line, "\r\n"), tag, arg, multi_line, capture});
}

void Pop3Behavior::Flush(Connection& c) {
  if (ended_ || unsent_.empty()) return;
  if (!pipeline_) {
    if (!sent_.empty()) return;
    sent_.push_back(std::move(unsent_.front()));
    unsent_.pop_front();
    c.Send(sent_.back().line);
    ++c.stats().commands;
  } else {
    // One write for the whole batch: the point of pipelining (RFC 2449).
    std::string batch;
    while (!unsent_.empty()) {
      batch += unsent_.front().line;
      sent_.push_back(std::move(unsent_.front()));
      unsent_.pop_front();
      ++c.stats().commands;
    }
    c.Send(batch);
  }
  ArmReplyTimer(c);
}

void Pop3Behavior::End(Connection& c, Outcome outcome) {
  if (ended_) return;
  ended_ = true;
  c.Finish(outcome);
}

void Pop3Behavior::OnTimer(Connection& c) {
  if (ended_) return;
  if (!greeted_ || !sent_.empty() || extra_ == Extra::kReplies) {
    End(c, Outcome::kTimeout);
    return;
  }
  OnIdleTimer(c);
}

Outcome Pop3Behavior::OnPeerClosed(Connection& c, bool reset) {
  return greeted_ ? Outcome::kEofMidSession : Outcome::kEofBeforeGreeting;
}

bool Pop3Behavior::Dispatch(Connection& c) {
  ScenarioStats& stats = c.stats();
  const bool defective = RecordDefects(parser_.defects(), stats);
  if (parser_.state() == ReplyParser::State::kError) {
    End(c, Outcome::kProtocolError);
    return false;
  }
  if (defective) MarkFailed(Outcome::kProtocolError);
  if (!greeted_) {
    if (!parser_.ok()) {
      ++stats.greetings_err;
      End(c, Outcome::kErrGreeting);
      return false;
    }
    ++stats.greetings_ok;
    greeted_ = true;
    c.RecordGreeting();
    OnGreeting(c);
    Flush(c);
    return !ended_;
  }
  ++(parser_.ok() ? stats.ok_replies : stats.err_replies);
  if (sent_.empty()) {
    OnReply(c, kFreeTag, 0, parser_);
  } else {
    const Command cmd = std::move(sent_.front());
    sent_.pop_front();
    OnReply(c, cmd.tag, cmd.arg, parser_);
  }
  Flush(c);
  return !ended_;
}

void Pop3Behavior::OnData(Connection& c, absl::string_view data) {
  // Untrusted: from the socket.
  while (!data.empty() && !ended_) {
    if (!parsing_) {
      if (!greeted_) {
        parser_.Start(/*multi_line=*/false, /*capture_body=*/false);
      } else if (!sent_.empty()) {
        parser_.Start(sent_.front().multi_line, sent_.front().capture);
      } else if (extra_ == Extra::kReplies) {
        parser_.Start(/*multi_line=*/false, /*capture_body=*/false);
      } else if (extra_ == Extra::kIgnore) {
        return;
      } else {
        ++c.stats().check(Check::kUnexpectedBytes);
        End(c, Outcome::kProtocolError);
        return;
      }
      parsing_ = true;
    }
    data.remove_prefix(parser_.Feed(data));
    if (parser_.state() == ReplyParser::State::kNeedMore) break;
    parsing_ = false;
    if (!Dispatch(c)) return;
  }
  if (!ended_) ArmReplyTimer(c);
}

}  // namespace popgate::flood
