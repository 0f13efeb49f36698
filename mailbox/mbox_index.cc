#include "mailbox/mbox_index.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailbox/sigbus_guard.h"

namespace popgate::mailbox {
namespace {

enum class IndexError {
  kNone,
  kDataBeforeFrom,
  kEmptyMessage,
  kTooManyMessages,
};

// All state lives in members so that Run() holds no object with a
// destructor on its stack: it may be cut short by siglongjmp (see
// sigbus_guard.h), after which the indexer is simply discarded.
class Indexer {
 public:
  Indexer(absl::string_view data, size_t max_messages,
          std::vector<MboxMessage>* out)
      : begin_(data.data()),
        end_(data.data() + data.size()),
        max_messages_(max_messages),
        out_(out) {}

  // The popa3d reference model (§4.9), line by line; memchr finds each LF.
  void Run() {
    if (begin_ == end_) return;
    const char* p = begin_;
    // popa3d starts "after a blank line", so the first line may be From_.
    bool blank = true;
    while (p < end_) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', end_ - p));
      const char* line_end = nl != nullptr ? nl + 1 : end_;
      const size_t len = static_cast<size_t>(line_end - p);

      if (blank && len >= 5 && std::memcmp(p, "From ", 5) == 0) {
        if (!in_message_) {
          // Only reachable at p == begin_: any other first line refuses
          // below before we get here.
        } else {
          if (!have_data_) {
            error_ = IndexError::kEmptyMessage;
            error_offset_ = static_cast<uint64_t>(p - begin_);
            return;
          }
          Finish(p, body_);
        }
        if (out_->size() >= max_messages_) {
          error_ = IndexError::kTooManyMessages;
          return;
        }
        in_message_ = true;
        have_data_ = false;
        header_ = true;
        body_ = false;
        raw_offset_ = static_cast<uint64_t>(p - begin_);
        selector_.Reset();
        hasher_.Begin();
        // `blank` keeps its value, as in popa3d: this is what makes a From_
        // line directly after a From_ line a boundary (and a refusal).
        p = line_end;
        continue;
      }
      if (!in_message_) {
        error_ = IndexError::kDataBeforeFrom;
        return;
      }
      if (!have_data_) {
        // The first line after From_ (header_ is always set here).
        have_data_ = true;
        data_offset_ = static_cast<uint64_t>(p - begin_);
        wire_size_ = 0;
        bare_lf_ = 0;
        dot_lines_ = 0;
      }
      if (nl != nullptr) {
        const bool crlf = nl > p && nl[-1] == '\r';
        wire_size_ += len + (crlf ? 0 : 1);
        bare_lf_ += crlf ? 0 : 1;
      } else {
        wire_size_ += len + 2;  // CR LF appended after an unterminated line.
      }
      dot_lines_ += (*p == '.');
      blank = (*p == '\n');
      if (!header_) {
        body_ = true;
      } else if (blank) {
        header_ = false;  // UIDL header section ends at the first "\n" line.
      } else if (selector_.Select(absl::string_view(p, len))) {
        hasher_.Update(absl::string_view(p, len));
      }
      p = line_end;
    }
    if (!in_message_) {
      error_ = IndexError::kDataBeforeFrom;
      return;
    }
    if (!have_data_) {
      error_ = IndexError::kEmptyMessage;
      error_offset_ = static_cast<uint64_t>(end_ - begin_);
      return;
    }
    Finish(end_, blank && body_);
  }

  IndexError error() const { return error_; }
  uint64_t error_offset() const { return error_offset_; }

 private:
  // Closes the current message at `end`. With `trim`, the "\n" line before
  // `end` is the separator and leaves the data (but not the raw extent).
  void Finish(const char* end, bool trim) {
    MboxMessage m;
    m.raw_offset = raw_offset_;
    m.raw_size = static_cast<uint64_t>(end - begin_) - raw_offset_;
    m.data_offset = data_offset_;
    m.data_size =
        static_cast<uint64_t>(end - begin_) - (trim ? 1 : 0) - data_offset_;
    // The trimmed "\n" line was counted as a bare LF (2 wire octets).
    m.wire_size = wire_size_ - (trim ? 2 : 0);
    const uint64_t bare_lf = bare_lf_ - (trim ? 1 : 0);
    const bool ends_lf =
        m.data_size > 0 && begin_[m.data_offset + m.data_size - 1] == '\n';
    m.flags = (bare_lf == 0 && dot_lines_ == 0 && ends_lf)
                  ? MboxMessage::kWireClean
                  : 0;
    hasher_.Finish(m.uidl);
    // Amortised growth; the caller reserved an estimate up front.
    out_->push_back(m);
  }

  const char* const begin_;
  const char* const end_;
  const size_t max_messages_;
  std::vector<MboxMessage>* const out_;

  bool in_message_ = false;
  bool have_data_ = false;
  bool header_ = false;
  bool body_ = false;
  uint64_t raw_offset_ = 0;
  uint64_t data_offset_ = 0;
  uint64_t wire_size_ = 0;
  uint64_t bare_lf_ = 0;
  uint64_t dot_lines_ = 0;
  UidlSelector selector_;
  UidlHasher hasher_;
  IndexError error_ = IndexError::kNone;
  uint64_t error_offset_ = 0;
};

absl::StatusOr<std::vector<MboxMessage>> ToResult(
    const Indexer& indexer, std::vector<MboxMessage> messages,
    size_t max_messages) {
  switch (indexer.error()) {
    case IndexError::kNone:
      return messages;
    case IndexError::kDataBeforeFrom:
      return absl::DataLossError("mbox: data before the first From_ line");
    case IndexError::kEmptyMessage:
      return absl::DataLossError(absl::StrCat(
          "mbox: message without data before offset ", indexer.error_offset()));
    case IndexError::kTooManyMessages:
      return absl::ResourceExhaustedError(
          absl::StrCat("mbox: more than ", max_messages, " messages"));
  }
  return absl::InternalError("mbox: unknown index error");
}

// A typical message is a few KB; reserving avoids most regrowth copies
// without over-committing for a mailbox of one huge message.
size_t ReserveEstimate(size_t bytes, size_t max_messages) {
  size_t estimate = bytes / 4096 + 16;
  return estimate < max_messages ? estimate : max_messages;
}

}  // namespace

absl::StatusOr<std::vector<MboxMessage>> IndexMbox(absl::string_view data,
                                                   size_t max_messages) {
  std::vector<MboxMessage> messages;
  messages.reserve(ReserveEstimate(data.size(), max_messages));
  Indexer indexer(data, max_messages, &messages);
  indexer.Run();
  return ToResult(indexer, std::move(messages), max_messages);
}

absl::StatusOr<std::vector<MboxMessage>> IndexMappedMbox(absl::string_view data,
                                                         size_t max_messages) {
  std::vector<MboxMessage> messages;
  messages.reserve(ReserveEstimate(data.size(), max_messages));
  Indexer indexer(data, max_messages, &messages);
  if (!RunWithSigbusGuard(data.data(), data.size(),
                          [&indexer] { indexer.Run(); })) {
    return absl::AbortedError("mbox: file truncated while indexing");
  }
  return ToResult(indexer, std::move(messages), max_messages);
}

}  // namespace popgate::mailbox
