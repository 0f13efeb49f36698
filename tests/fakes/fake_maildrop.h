// FakeMaildrop: an in-memory mailbox::Maildrop for core/ tests, the session
// fuzzer and benchmarks. Header-only so any test binary can use it without a
// library of its own.
//
// Messages are given in wire form (CR LF lines, already dot-stuffed); RETR
// sends that text as is, TOP n l cuts it after the first empty line plus l
// lines. LIST sizes are the wire length unless a message gives its own.
// Knobs make Retrieve / the stream / CheckUnchanged / Commit fail with any
// status; calls are recorded. The destructor aborts if a WireStream outlives
// the maildrop (the Maildrop contract says streams die first).
#ifndef POPGATE_TESTS_FAKES_FAKE_MAILDROP_H_
#define POPGATE_TESTS_FAKES_FAKE_MAILDROP_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mailbox/maildrop.h"

namespace popgate::testing {

class FakeWireStream : public mailbox::WireStream {
 public:
  // `body` must outlive the stream. The stream fails with `fail_status`
  // (if not OK) once `fail_after` octets have been produced.
  FakeWireStream(absl::string_view body, int* live_streams,
                 absl::Status fail_status, size_t fail_after)
      : body_(body),
        live_streams_(live_streams),
        fail_status_(std::move(fail_status)),
        fail_after_(fail_after) {
    ++*live_streams_;
  }
  ~FakeWireStream() override { --*live_streams_; }

  absl::StatusOr<bool> Next(size_t max_bytes,
                            std::vector<absl::string_view>* out) override {
    if (!fail_status_.ok() && pos_ >= fail_after_) return fail_status_;
    size_t n = std::min(std::max<size_t>(max_bytes, 1), body_.size() - pos_);
    if (!fail_status_.ok()) n = std::min(n, fail_after_ - pos_);
    if (n > 0) out->push_back(body_.substr(pos_, n));
    pos_ += n;
    return pos_ < body_.size() || (!fail_status_.ok() && pos_ >= fail_after_);
  }

 private:
  absl::string_view body_;
  size_t pos_ = 0;
  int* const live_streams_;
  absl::Status fail_status_;
  size_t fail_after_;
};

class FakeMaildrop : public mailbox::Maildrop {
 public:
  FakeMaildrop() = default;
  ~FakeMaildrop() override {
    if (live_streams_ != 0) {
      std::fprintf(stderr, "FakeMaildrop destroyed with %d live streams\n",
                   live_streams_);
      std::abort();
    }
  }

  // `wire`: the RETR body (CR LF lines, no final dot). `uidl` empty gives
  // "uidl-<index>"; `size` unset gives wire.size().
  FakeMaildrop& Add(std::string wire, std::string uidl = {},
                    std::optional<uint64_t> size = std::nullopt) {
    Message message;
    message.wire = std::move(wire);
    message.uidl = uidl.empty() ? absl::StrFormat("uidl-%d", messages_.size())
                                : std::move(uidl);
    message.size = size;
    messages_.push_back(std::move(message));
    return *this;
  }

  // Knobs (OK = succeed).
  absl::Status retrieve_status;
  absl::Status stream_status;    // returned by the stream after...
  size_t stream_fail_after = 0;  // ...this many octets
  absl::Status check_status;
  absl::Status commit_status;

  // Records.
  struct RetrieveCall {
    size_t index;
    std::optional<uint64_t> top_lines;
  };
  std::vector<RetrieveCall> retrieve_calls;
  int check_calls = 0;
  std::vector<std::vector<size_t>> commits;
  int live_streams() const { return live_streams_; }

  // mailbox::Maildrop
  size_t message_count() const override { return messages_.size(); }
  uint64_t message_size(size_t index) const override {
    const Message& m = messages_.at(index);
    return m.size.has_value() ? *m.size : m.wire.size();
  }
  absl::string_view uidl(size_t index) const override {
    return messages_.at(index).uidl;
  }
  absl::StatusOr<std::unique_ptr<mailbox::WireStream>> Retrieve(
      size_t index, std::optional<uint64_t> top_lines) override {
    retrieve_calls.push_back({index, top_lines});
    if (!retrieve_status.ok()) return retrieve_status;
    absl::string_view body = messages_.at(index).wire;
    if (top_lines.has_value()) body = Top(body, *top_lines);
    return std::unique_ptr<mailbox::WireStream>(
        std::make_unique<FakeWireStream>(body, &live_streams_, stream_status,
                                         stream_fail_after));
  }
  absl::Status CheckUnchanged() override {
    ++check_calls;
    return check_status;
  }
  absl::Status Commit(absl::Span<const size_t> indices) override {
    commits.emplace_back(indices.begin(), indices.end());
    return commit_status;
  }
  absl::string_view display_name() const override { return "fake"; }

  // Headers, the first empty line and `lines` more lines (all of `wire` if
  // it has no empty line), like popa3d's TOP.
  static absl::string_view Top(absl::string_view wire, uint64_t lines) {
    size_t pos = 0;
    bool armed = false;
    uint64_t credits = lines + 1;
    while (pos < wire.size()) {
      size_t eol = wire.find('\n', pos);
      size_t next = eol == absl::string_view::npos ? wire.size() : eol + 1;
      absl::string_view line = wire.substr(pos, next - pos);
      if (!armed && (line == "\r\n" || line == "\n")) armed = true;
      pos = next;
      if (armed && --credits == 0) break;
    }
    return wire.substr(0, pos);
  }

 private:
  struct Message {
    std::string wire;
    std::string uidl;
    std::optional<uint64_t> size;
  };

  std::vector<Message> messages_;
  int live_streams_ = 0;
};

}  // namespace popgate::testing

#endif  // POPGATE_TESTS_FAKES_FAKE_MAILDROP_H_
