// Test driver for core::Session: feeds bytes, resolves auth, drains output
// the way net/ does (Gather, Consume, Resume) and returns what the client
// would read.
#ifndef POPGATE_TESTS_CORE_SESSION_HARNESS_H_
#define POPGATE_TESTS_CORE_SESSION_HARNESS_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/session.h"
#include "tests/fakes/fake_maildrop.h"

namespace popgate::core::testing {

// Three messages of 42, 47 and 29 octets (wire form, CR LF; 118 in all).
inline std::unique_ptr<popgate::testing::FakeMaildrop> ThreeMessages() {
  auto drop = std::make_unique<popgate::testing::FakeMaildrop>();
  drop->Add("Subject: one\r\n\r\nbody line 1\r\nbody line 2\r\n",
            "aaaaaaaaaaaaaaa1");
  drop->Add("Subject: two\r\nX: y\r\n\r\n..dotted\r\nsecond\r\nthird\r\n",
            "bbbbbbbbbbbbbbb2");
  drop->Add("Subject: three\r\n\r\nonly line\r\n", "ccccccccccccccc3");
  return drop;
}

class Harness {
 public:
  explicit Harness(SessionOptions options = {}) : session_(options) {}

  Session& session() { return session_; }
  popgate::testing::FakeMaildrop* drop() { return drop_; }
  // Status of the last failed Gather() (OK if none).
  const absl::Status& gather_status() const { return gather_status_; }

  // Drains output like a driver with a `window`-octet socket buffer.
  std::string Drain(size_t window = 1 << 20) {
    std::string sent;
    while (!session_.output().empty()) {
      std::vector<absl::string_view> views;
      absl::Status status = session_.output().Gather(window, &views);
      if (!status.ok()) {
        gather_status_ = status;
        break;
      }
      size_t n = 0;
      for (absl::string_view v : views) {
        sent.append(v.data(), v.size());
        n += v.size();
      }
      session_.output().Consume(n);
      session_.Resume();
    }
    return sent;
  }

  // Receive + resolve auth with `verdict` when asked + drain everything.
  std::string Send(absl::string_view bytes) {
    session_.Receive(bytes);
    return Settle();
  }

  // Resolves pending auth (repeatedly) and drains until quiescent.
  std::string Settle() {
    std::string sent = Drain();
    while (session_.pending_auth().has_value()) {
      ++auth_requests_;
      last_password_ = session_.pending_auth()->password;
      if (verdict_ == AuthVerdict::kOk) {
        auto drop = make_drop_ ? make_drop_() : ThreeMessages();
        drop_ = drop.get();
        session_.ResolveAuth(verdict_, std::move(drop));
      } else {
        session_.ResolveAuth(verdict_, nullptr);
      }
      sent += Drain();
    }
    return sent;
  }

  std::string Eof() {
    session_.ReceiveEof();
    return Settle();
  }

  // USER/PASS into TRANSACTION; returns the greeting + replies.
  std::string Login() { return Send("USER alice\r\nPASS secret\r\n"); }

  void set_verdict(AuthVerdict verdict) { verdict_ = verdict; }
  void set_make_drop(
      std::function<std::unique_ptr<popgate::testing::FakeMaildrop>()> f) {
    make_drop_ = std::move(f);
  }
  int auth_requests() const { return auth_requests_; }
  const std::string& last_password() const { return last_password_; }

 private:
  Session session_;
  popgate::testing::FakeMaildrop* drop_ = nullptr;
  AuthVerdict verdict_ = AuthVerdict::kOk;
  std::function<std::unique_ptr<popgate::testing::FakeMaildrop>()> make_drop_;
  int auth_requests_ = 0;
  std::string last_password_;
  absl::Status gather_status_;
};

}  // namespace popgate::core::testing

#endif  // POPGATE_TESTS_CORE_SESSION_HARNESS_H_
