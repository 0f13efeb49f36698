#include "core/session.h"

#include <algorithm>
#include <cassert>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/capabilities.h"
#include "core/command.h"
#include "core/line_reader.h"
#include "core/message_table.h"
#include "core/replies.h"

namespace popgate::core {

// Everything the driver does not see: the line reader, protocol state and,
// after login, the maildrop. Handlers append replies to s_->output_.
class Session::Impl {
 public:
  explicit Impl(Session* session)
      : s_(session), reader_(session->options_.max_line_bytes) {}

  void Receive(absl::string_view bytes);
  void ReceiveEof();
  void ResolveAuth(AuthVerdict verdict,
                   std::unique_ptr<mailbox::Maildrop> maildrop);
  void Process();
  bool wants_input() const;
  bool authenticated() const { return maildrop_ != nullptr; }

  // Called from queued streams and checkpoints when the maildrop fails
  // mid-RETR: Aborted = someone rewrote the mailbox ("Another MUA active").
  void RecordMaildropFailure(const absl::Status& status);

 private:
  // Wraps a maildrop stream so a failure while the driver pulls it is
  // recorded as the session's end reason.
  class RecordingStream;

  struct Listing {
    bool uidl = false;
    size_t next_index = 0;
  };

  bool OutputBlocked() const;
  void End(EndReason reason);
  void Reply(absl::string_view line) { s_->output_.Append(line); }
  // A protocol error: counted; past the cap the session closes.
  void BadCommand(absl::string_view reply);

  void HandleLine(const LineReader::Line& line);
  void HandleAuthorization(const CommandLine& command);
  void HandleTransaction(const CommandLine& command);

  // TRANSACTION helpers. `msn` parsing failures are syntax errors (counted);
  // a well-formed number naming no live message is not.
  bool ParseMsn(ArgumentReader& args, bool last_argument, int* msn);
  void Stat();
  void List(const CommandLine& command, bool uidl);
  void ContinueListing();
  void Retrieve(int msn, size_t index, std::optional<uint64_t> top_lines);
  void Update();

  Session* const s_;
  LineReader reader_;
  bool eof_ = false;
  int bad_commands_ = 0;

  // AUTHORIZATION
  bool user_given_ = false;
  int auth_attempts_ = 0;

  // TRANSACTION (maildrop_ set = authenticated)
  std::unique_ptr<mailbox::Maildrop> maildrop_;
  std::optional<MessageTable> table_;
  int last_ = 0;  // RFC 1460 LAST: highest msn retrieved or deleted
  std::optional<Listing> listing_;
};

class Session::Impl::RecordingStream : public mailbox::WireStream {
 public:
  RecordingStream(std::unique_ptr<mailbox::WireStream> inner, Impl* impl)
      : inner_(std::move(inner)), impl_(impl) {}

  absl::StatusOr<bool> Next(size_t max_bytes,
                            std::vector<absl::string_view>* out) override {
    absl::StatusOr<bool> more = inner_->Next(max_bytes, out);
    if (!more.ok()) impl_->RecordMaildropFailure(more.status());
    return more;
  }
  bool PrefersCopy() override { return inner_->PrefersCopy(); }
  absl::StatusOr<bool> NextInto(char* dest, size_t capacity,
                                size_t* written) override {
    absl::StatusOr<bool> more = inner_->NextInto(dest, capacity, written);
    if (!more.ok()) impl_->RecordMaildropFailure(more.status());
    return more;
  }
  FileBacking file_backing() const override { return inner_->file_backing(); }

 private:
  std::unique_ptr<mailbox::WireStream> inner_;
  Impl* const impl_;  // outlives the stream: ~Session() clears output_ first
};

// ---------------------------------------------------------------------------
// Flow control

bool Session::Impl::OutputBlocked() const {
  const OutputQueue& out = s_->output_;
  return out.has_stream_or_checkpoint() ||
         out.buffered_bytes() > s_->options_.output_high_water_bytes;
}

bool Session::Impl::wants_input() const {
  return !s_->closing() && !eof_ && !s_->pending_auth_.has_value() &&
         !listing_.has_value() && !OutputBlocked();
}

void Session::Impl::End(EndReason reason) {
  if (!s_->closing()) s_->end_reason_ = reason;
}

void Session::Impl::RecordMaildropFailure(const absl::Status& status) {
  // A failure outranks the premature disconnect that may have been recorded
  // while the body was still draining: it is the better log line.
  if (s_->end_reason_ != EndReason::kNone &&
      s_->end_reason_ != EndReason::kPrematureDisconnect) {
    return;
  }
  s_->end_reason_ =
      absl::IsAborted(status) ? EndReason::kStale : EndReason::kServerFailure;
}

void Session::Impl::Receive(absl::string_view bytes) {
  if (s_->closing() || eof_) return;
  reader_.Append(bytes);
  Process();
  if (!s_->closing() &&
      reader_.buffered_bytes() > s_->options_.max_input_buffer_bytes) {
    End(EndReason::kInputOverflow);
  }
}

void Session::Impl::ReceiveEof() {
  if (s_->closing() || eof_) return;
  eof_ = true;
  reader_.Finish();
  Process();
}

void Session::Impl::Process() {
  // Strictly in order (RFC 2449 PIPELINING): one line at a time, and
  // nothing more once a reply needs the driver (auth) or output is full.
  while (!s_->closing() && !s_->pending_auth_.has_value()) {
    if (listing_.has_value()) {
      ContinueListing();
      if (listing_.has_value()) return;
    }
    if (eof_ && reader_.exhausted()) {
      End(authenticated() ? EndReason::kPrematureDisconnect
                          : EndReason::kNoAuthAttempt);
      return;
    }
    if (OutputBlocked()) return;
    std::optional<LineReader::Line> line = reader_.Next();
    if (!line.has_value()) {
      if (eof_ && reader_.exhausted()) continue;  // ends the session above
      return;
    }
    HandleLine(*line);
  }
}

// ---------------------------------------------------------------------------
// Dispatch

void Session::Impl::BadCommand(absl::string_view reply) {
  ++bad_commands_;
  const int cap = s_->options_.max_bad_commands;
  if (cap >= 0 && bad_commands_ > cap) {
    // Replaces the usual -ERR: still exactly one reply for this line.
    Reply(replies::kTooManyBadCommands);
    End(EndReason::kTooManyBadCommands);
    return;
  }
  Reply(reply);
}

void Session::Impl::HandleLine(const LineReader::Line& line) {
  if (line.too_long) {
    BadCommand(replies::kLineTooLong);
    return;
  }
  // popa3d empties a line containing NUL; never let C-string code downstream
  // (PAM, logs) see a truncated argument.
  if (line.text.find('\0') != absl::string_view::npos) {
    BadCommand(replies::kNulInLine);
    return;
  }
  const CommandLine command = ParseCommandLine(line.text);
  if (authenticated()) {
    HandleTransaction(command);
  } else {
    HandleAuthorization(command);
  }
}

void Session::Impl::HandleAuthorization(const CommandLine& command) {
  switch (command.command) {
    case Command::kUser: {
      if (user_given_) {
        BadCommand(replies::kUserAlreadyGiven);
        return;
      }
      ArgumentReader args(command.arguments);
      std::optional<absl::string_view> name = args.NextToken();
      if (!name.has_value() || !args.done()) {
        BadCommand(replies::kSyntaxError);
        return;
      }
      // No existence check: every name gets +OK (no user enumeration).
      s_->user_ = std::string(*name);
      user_given_ = true;
      Reply(replies::kOk);
      return;
    }
    case Command::kPass: {
      if (!user_given_) {
        BadCommand(replies::kUserFirst);
        return;
      }
      // The password is the whole remainder, spaces included (popa3d).
      if (!command.arguments.has_value()) {
        BadCommand(replies::kSyntaxError);
        return;
      }
      ++auth_attempts_;
      s_->pending_auth_ = AuthRequest{
          .user = s_->user_, .password = std::string(*command.arguments)};
      reader_.WipeConsumed();  // `command` points there: not used after this
      return;
    }
    case Command::kQuit:
      if (command.arguments.has_value()) {
        BadCommand(replies::kSyntaxError);
        return;
      }
      Reply(replies::kOk);
      End(EndReason::kNoAuthAttempt);
      return;
    case Command::kCapa:
      if (!s_->options_.capa) {
        BadCommand(replies::kUnknownCommand);
      } else if (command.arguments.has_value()) {
        BadCommand(replies::kSyntaxError);
      } else {
        Reply(CapabilityReply(/*authenticated=*/false,
                              s_->options_.implementation));
      }
      return;
    case Command::kUnknown:
      BadCommand(replies::kUnknownCommand);
      return;
    default:
      BadCommand(replies::kWrongState);
      return;
  }
}

void Session::Impl::ResolveAuth(AuthVerdict verdict,
                                std::unique_ptr<mailbox::Maildrop> maildrop) {
  if (!s_->pending_auth_.has_value() || s_->closing()) {
    s_->pending_auth_.reset();
    return;
  }
  // Do not leave the password in freed heap memory.
  std::string& password = s_->pending_auth_->password;
  std::fill(password.begin(), password.end(), '\0');
  s_->pending_auth_.reset();

  if (verdict == AuthVerdict::kOk && maildrop == nullptr) {
    assert(false && "ResolveAuth(kOk) without a maildrop");
    verdict = AuthVerdict::kLoadFailed;
  }
  switch (verdict) {
    case AuthVerdict::kOk:
      // popa3d sends this +OK only once the mailbox is loaded, which is
      // when the driver calls us.
      maildrop_ = std::move(maildrop);
      table_.emplace(*maildrop_);
      Reply(replies::kOk);
      break;
    case AuthVerdict::kDenied:
      Reply(replies::kAuthFailed);
      if (auth_attempts_ >= s_->options_.max_auth_attempts) {
        End(EndReason::kAuthFailed);
      } else {
        // Another attempt: back to waiting for USER.
        user_given_ = false;
        s_->user_.clear();
      }
      break;
    case AuthVerdict::kTempFailure:
      Reply(replies::kAuthTempFailure);
      End(EndReason::kServerFailure);
      break;
    case AuthVerdict::kInUse:
      Reply(replies::kMailboxInUse);
      End(EndReason::kServerFailure);
      break;
    case AuthVerdict::kLoadFailed:
      Reply(replies::kMailboxLoadFailed);
      End(EndReason::kServerFailure);
      break;
  }
  Process();
}

// ---------------------------------------------------------------------------
// TRANSACTION (popa3d-behaviour.md §3.4)

bool Session::Impl::ParseMsn(ArgumentReader& args, bool last_argument,
                             int* msn) {
  std::optional<int> value = args.NextInt();
  if (!value.has_value() || (last_argument && !args.done())) {
    BadCommand(replies::kSyntaxError);
    return false;
  }
  *msn = *value;
  return true;
}

void Session::Impl::HandleTransaction(const CommandLine& command) {
  ArgumentReader args(command.arguments);
  // Commands without arguments reject any (popa3d: "QUIT now" is -ERR).
  const bool no_arguments = !command.arguments.has_value();
  switch (command.command) {
    case Command::kStat:
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      return Stat();
    case Command::kList:
      return List(command, /*uidl=*/false);
    case Command::kUidl:
      return List(command, /*uidl=*/true);
    case Command::kRetr: {
      int msn;
      if (!ParseMsn(args, /*last_argument=*/true, &msn)) return;
      std::optional<size_t> index = table_->Lookup(msn);
      if (!index.has_value()) return Reply(replies::kNoSuchMessage);
      return Retrieve(msn, *index, std::nullopt);
    }
    case Command::kTop: {
      int msn;
      int lines;
      if (!ParseMsn(args, /*last_argument=*/false, &msn)) return;
      if (!ParseMsn(args, /*last_argument=*/true, &lines)) return;
      std::optional<size_t> index = table_->Lookup(msn);
      if (!index.has_value()) return Reply(replies::kNoSuchMessage);
      return Retrieve(msn, *index, static_cast<uint64_t>(lines));
    }
    case Command::kDele: {
      int msn;
      if (!ParseMsn(args, /*last_argument=*/true, &msn)) return;
      std::optional<size_t> index = table_->Lookup(msn);
      if (!index.has_value()) return Reply(replies::kNoSuchMessage);
      table_->Delete(*index);
      last_ = std::max(last_, msn);
      return Reply(replies::kOk);
    }
    case Command::kRset:
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      table_->Reset();
      last_ = 0;
      return Reply(replies::kOk);
    case Command::kLast:
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      return Reply(absl::StrCat("+OK ", last_, "\r\n"));
    case Command::kNoop:
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      return Reply(replies::kOk);
    case Command::kQuit:
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      return Update();
    case Command::kCapa:
      if (!s_->options_.capa) return BadCommand(replies::kUnknownCommand);
      if (!no_arguments) return BadCommand(replies::kSyntaxError);
      return Reply(
          CapabilityReply(/*authenticated=*/true, s_->options_.implementation));
    case Command::kUser:
    case Command::kPass:
      return BadCommand(replies::kWrongState);
    case Command::kUnknown:
      return BadCommand(replies::kUnknownCommand);
  }
}

void Session::Impl::Stat() {
  Reply(absl::StrCat("+OK ", table_->live_count(), " ", table_->live_bytes(),
                     "\r\n"));
}

void Session::Impl::List(const CommandLine& command, bool uidl) {
  if (!command.arguments.has_value()) {
    // Bare "+OK" first line, as popa3d. Lines are produced as the output
    // drains, so a 2M-message LIST never sits in memory at once.
    Reply(replies::kOk);
    listing_ = Listing{.uidl = uidl, .next_index = 0};
    ContinueListing();
    return;
  }
  ArgumentReader args(command.arguments);
  int msn;
  if (!ParseMsn(args, /*last_argument=*/true, &msn)) return;
  std::optional<size_t> index = table_->Lookup(msn);
  if (!index.has_value()) return Reply(replies::kNoSuchMessage);
  if (uidl) {
    Reply(absl::StrCat("+OK ", msn, " ", maildrop_->uidl(*index), "\r\n"));
  } else {
    Reply(absl::StrCat("+OK ", msn, " ", maildrop_->message_size(*index),
                       "\r\n"));
  }
}

void Session::Impl::ContinueListing() {
  const size_t high_water = s_->options_.output_high_water_bytes;
  OutputQueue& out = s_->output_;
  if (out.buffered_bytes() >= high_water) return;
  const size_t room = high_water - out.buffered_bytes();
  std::string chunk;
  size_t i = listing_->next_index;
  const size_t count = table_->count();
  // Always make progress (at least one line), then stop near the mark.
  for (; i < count && (chunk.empty() || chunk.size() < room); ++i) {
    if (table_->deleted(i)) continue;
    if (listing_->uidl) {
      absl::StrAppend(&chunk, i + 1, " ", maildrop_->uidl(i), "\r\n");
    } else {
      absl::StrAppend(&chunk, i + 1, " ", maildrop_->message_size(i), "\r\n");
    }
  }
  listing_->next_index = i;
  Reply(chunk);
  if (i == count) {
    Reply(replies::kEndOfMultiline);
    listing_.reset();
  }
}

void Session::Impl::Retrieve(int msn, size_t index,
                             std::optional<uint64_t> top_lines) {
  absl::StatusOr<std::unique_ptr<mailbox::WireStream>> stream =
      maildrop_->Retrieve(index, top_lines);
  if (!stream.ok()) {
    // popa3d closes without a reply (stale: "Another MUA active"; other:
    // "Server failure accessing ...").
    RecordMaildropFailure(stream.status());
    return;
  }
  Reply(replies::kOk);
  s_->output_.AppendStream(
      std::make_unique<RecordingStream>(std::move(*stream), this));
  // The final dot only once the body reached the kernel and the mailbox is
  // still what we indexed: a client must never take a truncated message for
  // a complete one.
  s_->output_.AppendCheckpoint([this]() {
    absl::Status status = maildrop_->CheckUnchanged();
    if (!status.ok()) RecordMaildropFailure(status);
    return status;
  });
  Reply(replies::kEndOfMultiline);
  // RETR raises LAST; TOP does not (popa3d).
  if (!top_lines.has_value()) last_ = std::max(last_, msn);
}

void Session::Impl::Update() {
  Session::UpdateSummary summary;
  if (table_->deleted_count() > 0) {
    const std::vector<size_t> indices = table_->DeletedIndices();
    absl::Status status = maildrop_->Commit(indices);
    if (absl::IsAborted(status)) {
      // Someone else rewrote our part: nothing applied, no reply (popa3d).
      End(EndReason::kStale);
      return;
    }
    if (!status.ok()) {
      Reply(replies::kUpdateFailed);
      End(EndReason::kUpdateFailed);
      return;
    }
    summary.deleted = table_->deleted_count();
    summary.deleted_bytes = table_->deleted_bytes();
  }
  // Nothing deleted: the mailbox is not touched at all (mtime unchanged).
  summary.left = table_->live_count();
  summary.left_bytes = table_->live_bytes();
  s_->update_summary_ = summary;
  Reply(replies::kOk);
  End(EndReason::kQuit);
}

// ---------------------------------------------------------------------------
// Session

Session::Session(const SessionOptions& options)
    : options_(options),
      output_(options.output_window_bytes),
      impl_(std::make_unique<Impl>(this)) {
  output_.Append(replies::kGreeting);
}

Session::~Session() {
  // Queued streams and checkpoints reference the maildrop held by impl_.
  output_.Clear();
}

void Session::Receive(absl::string_view bytes) { impl_->Receive(bytes); }

void Session::ReceiveEof() { impl_->ReceiveEof(); }

void Session::Timeout() {
  if (!closing()) end_reason_ = EndReason::kTimeout;
}

bool Session::wants_input() const { return impl_->wants_input(); }

void Session::Resume() { impl_->Process(); }

void Session::ResolveAuth(AuthVerdict verdict,
                          std::unique_ptr<mailbox::Maildrop> maildrop) {
  impl_->ResolveAuth(verdict, std::move(maildrop));
}

bool Session::authenticated() const { return impl_->authenticated(); }

}  // namespace popgate::core
