// Drives a core::Session with arbitrary client bytes, split at input-chosen
// points, with auth verdicts, maildrop failures and drain windows chosen by
// the input too. Checks invariants a client and the driver rely on:
//  - output is CR LF lines only (no bare LF), and ends at a line end;
//  - never more status lines ("+OK"/"-ERR") than input lines + greeting;
//  - nothing is produced once closing(); wants_input() is false then;
//  - owned output stays near the high-water mark (pipeline bombs);
//  - streams die before their maildrop (FakeMaildrop aborts otherwise).
//
// Input layout: 4 header octets (options, split seed, maildrop knobs and
// verdicts, drain window), then the client bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/session.h"
#include "tests/fakes/fake_maildrop.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::core::AuthVerdict;
using popgate::core::Session;
using popgate::core::SessionOptions;
using popgate::testing::FakeMaildrop;

using ::popgate::fuzz::Check;

// Deterministic, input-seeded choices.
class Choices {
 public:
  explicit Choices(uint32_t seed) : state_(seed * 2654435761u + 1) {}
  uint32_t Next(uint32_t bound) {
    state_ = state_ * 1664525u + 1013904223u;
    return (state_ >> 8) % bound;
  }

 private:
  uint32_t state_;
};

std::unique_ptr<FakeMaildrop> MakeDrop(uint8_t knobs) {
  auto drop = std::make_unique<FakeMaildrop>();
  drop->Add("Subject: a\r\n\r\nbody 1\r\n..dot\r\n", "uid1");
  drop->Add("Subject: b\r\n\r\n", "uid2");
  drop->Add("No blank line\r\n", "uid3");
  if (knobs & 0x01) drop->retrieve_status = absl::AbortedError("stale");
  if (knobs & 0x02) drop->check_status = absl::AbortedError("stale");
  if (knobs & 0x04) drop->commit_status = absl::UnavailableError("lock");
  if (knobs & 0x08) {
    drop->stream_status = absl::InternalError("io");
    drop->stream_fail_after = 5;
  }
  return drop;
}

class Driver {
 public:
  Driver(const SessionOptions& options, uint8_t knobs, uint8_t window_seed,
         uint32_t seed)
      : options_(options),
        session_(options),
        knobs_(knobs),
        window_(1 + window_seed * 16),
        choices_(seed) {}

  void Feed(absl::string_view bytes) {
    for (char c : bytes) lines_ += c == '\n';
    if (!bytes.empty()) partial_ = bytes.back() != '\n';
    const bool was_closing = session_.closing();
    const size_t before = sent_.size();
    session_.Receive(bytes);
    Check(session_.output().buffered_bytes() <=
              options_.output_high_water_bytes + 1024,
          "owned output bounded by the high-water mark");
    Settle();
    if (was_closing) Check(sent_.size() == before, "silent once closing");
  }

  void Eof() {
    session_.ReceiveEof();
    Settle();
  }

  void Finish() {
    // Whatever is left must drain (the session may not be closing: then
    // the driver would wait for more input).
    Drain();
    Check(session_.output().empty() || failed_, "output drains");
    if (session_.closing()) Check(!session_.wants_input(), "closing: no input");
    CheckWellFormed();
  }

 private:
  void Settle() {
    Drain();
    while (session_.pending_auth().has_value() && !failed_) {
      const uint32_t pick = choices_.Next(8);
      if (pick < 4) {
        session_.ResolveAuth(AuthVerdict::kOk, MakeDrop(knobs_));
      } else {
        static constexpr AuthVerdict kOthers[] = {
            AuthVerdict::kDenied, AuthVerdict::kTempFailure,
            AuthVerdict::kInUse, AuthVerdict::kLoadFailed};
        session_.ResolveAuth(kOthers[pick - 4], nullptr);
      }
      Drain();
    }
  }

  void Drain() {
    while (!session_.output().empty() && !failed_) {
      std::vector<absl::string_view> views;
      absl::Status status = session_.output().Gather(window_, &views);
      if (!status.ok()) {
        Check(session_.closing(), "a failed Gather() has an end reason");
        failed_ = true;
        return;
      }
      std::string bytes;
      for (absl::string_view v : views) bytes.append(v.data(), v.size());
      // A partial write, sometimes.
      size_t n = bytes.size();
      if (n > 1 && choices_.Next(4) == 0) n = 1 + choices_.Next(n - 1);
      sent_.append(bytes, 0, n);
      session_.output().Consume(n);
      session_.Resume();
    }
  }

  void CheckWellFormed() {
    size_t status_lines = 0;
    size_t line_start = 0;
    for (size_t i = 0; i < sent_.size(); ++i) {
      if (sent_[i] != '\n') continue;
      Check(i > 0 && sent_[i - 1] == '\r', "LF always preceded by CR");
      absl::string_view line(sent_.data() + line_start, i - line_start);
      if (line.substr(0, 3) == "+OK" || line.substr(0, 4) == "-ERR") {
        ++status_lines;
      }
      line_start = i + 1;
    }
    if (!failed_) Check(line_start == sent_.size(), "ends at a line end");
    // The greeting, one reply per LF-terminated line, and one for a final
    // unterminated line (processed at EOF, or overlong before its LF).
    Check(status_lines <= 1 + lines_ + (partial_ ? 1 : 0),
          "at most one reply per line");
  }

  SessionOptions options_;
  Session session_;
  uint8_t knobs_;
  size_t window_;
  Choices choices_;
  std::string sent_;
  size_t lines_ = 0;
  bool partial_ = false;
  bool failed_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t flags = data[0];
  SessionOptions options;
  options.max_line_bytes = (flags & 0x01) ? 16 : 255;
  options.max_bad_commands = (flags & 0x02) ? 3 : 20;
  options.max_auth_attempts = (flags & 0x04) ? 3 : 1;
  options.capa = !(flags & 0x08);
  options.output_high_water_bytes = (flags & 0x10) ? 64 : 64 * 1024;
  options.output_window_bytes = (flags & 0x20) ? 3 : 256 * 1024;

  Driver driver(options, data[2], data[3], data[1]);
  absl::string_view input(reinterpret_cast<const char*>(data) + 4, size - 4);
  Choices split(data[1] ^ 0x5a);
  while (!input.empty()) {
    const size_t n = std::min<size_t>(input.size(), 1 + split.Next(64));
    driver.Feed(input.substr(0, n));
    input.remove_prefix(n);
  }
  if (!(flags & 0x40)) driver.Eof();
  driver.Finish();
  return 0;
}
