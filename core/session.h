// The POP3 state machine (RFC 1939 in popa3d's shape, plus CAPA, RFC 2449 /
// RFC 3206 response codes and pipelining) for one connection.
//
// Pure: bytes and a clock in, bytes and actions out. No syscalls, no sockets.
// The driver (net/) feeds received bytes, services pending actions
// (authentication), drains output() to the socket and closes when closing()
// and the output is empty. Storage is reached only through mailbox::Maildrop.
//
// Driver contract (flow control):
//  - The greeting is queued by the constructor: drain output() first.
//  - Read from the socket and call Receive() only while wants_input(). Input
//    stops being processed while PASS awaits ResolveAuth(), while a RETR/TOP
//    body or its checkpoint is queued, while a LIST/UIDL listing is being
//    produced, or while output() holds more than output_high_water_bytes.
//    Bytes already received stay buffered (at most one read past the point
//    where wants_input() turned false; beyond max_input_buffer_bytes the
//    session closes with kInputOverflow).
//  - After every output().Consume() call Resume(): it continues buffered
//    pipelined commands once the output has room. Cheap when idle.
//  - After ReceiveEof() keep draining output() and calling Resume() until
//    closing(): commands pipelined before the half-close are still answered
//    (`printf 'USER..PASS..RETR 1\r\nQUIT\r\n' | nc` works).
//  - When output().Gather() fails (stale mailbox during RETR), close at once;
//    end_reason() says why.
//
// Threading: one thread at a time per Session.
#ifndef POPGATE_CORE_SESSION_H_
#define POPGATE_CORE_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/output_queue.h"
#include "mailbox/maildrop.h"

namespace popgate::core {

// Per-session caps and advertised features. Defaults match popa3d unless the
// comment says otherwise.
struct SessionOptions {
  // Longest accepted command line, CR LF excluded. popa3d keeps 127 bytes;
  // RFC 2449 allows 255 octets. A longer line gets exactly one -ERR and is
  // otherwise ignored (never split into several commands).
  size_t max_line_bytes = 255;
  // Bad commands (unknown, wrong state, bad syntax) before we answer -ERR
  // and close. popa3d has no cap; Dovecot closes after 20.
  int max_bad_commands = 20;
  // PASS attempts per connection. popa3d: exactly one.
  int max_auth_attempts = 1;
  // Offer and accept CAPA (RFC 2449). popa3d answers -ERR; clients cope.
  bool capa = true;
  // IMPLEMENTATION capability text; empty = not advertised.
  std::string implementation = "popgate";
  // Output window: RETR/TOP bodies are pulled from the maildrop in chunks of
  // about this many bytes, so a slow reader pins at most this much.
  size_t output_window_bytes = 256 * 1024;
  // Stop handling pipelined commands while output() holds more than this in
  // owned reply bytes (Dovecot: 4096, resume when drained). Bounds what a
  // client that pipelines thousands of commands without reading costs us.
  size_t output_high_water_bytes = 64 * 1024;
  // Input buffered but not yet handled (pipelined behind PASS or behind
  // backpressure). Past this the session closes (kInputOverflow): a driver
  // that honours wants_input() never gets there with reads of this size.
  size_t max_input_buffer_bytes = 256 * 1024;
};

// Why the session ended, for the driver's log line.
enum class EndReason {
  kNone,           // still running
  kQuit,           // QUIT handled (with or without update)
  kNoAuthAttempt,  // QUIT/EOF in AUTHORIZATION: "Didn't attempt authentication"
  kAuthFailed,     // failed PASS, connection closed
  kPrematureDisconnect,
  kTimeout,
  kStale,          // "Another MUA active, giving up"
  kServerFailure,  // maildrop I/O failure
  kUpdateFailed,   // "Failed to update ..."
  kTooManyBadCommands,
  kInputOverflow,  // more unprocessed input than max_input_buffer_bytes
};

// A finished-or-not AUTHORIZATION exchange the driver must resolve.
struct AuthRequest {
  std::string user;
  std::string password;
};

// What the driver tells the session after it ran an AuthRequest.
// After kTempFailure, kInUse and kLoadFailed the session closes with
// EndReason::kServerFailure; the driver knows which verdict it gave and logs
// accordingly (e.g. "Failed or refused to load <mailbox>").
enum class AuthVerdict {
  kOk,           // maildrop attached, enter TRANSACTION
  kDenied,       // -ERR [AUTH] Authentication failed (bad password?)
  kTempFailure,  // -ERR [SYS/TEMP] ... (backend down, auth queue full)
  kInUse,        // -ERR [IN-USE] ... (maildrop locked by another session)
  kLoadFailed,   // -ERR [SYS/PERM] ... (mailbox refused: symlink, corrupt)
};

class Session {
 public:
  // Queues the greeting ("+OK\r\n", as popa3d).
  explicit Session(const SessionOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Untrusted: bytes from the socket, any split. Processes complete lines
  // until a reply needs an action (authentication), backpressure stops it
  // (see wants_input()) or the session closes; bytes after that stay
  // buffered (pipelining across PASS works) until ResolveAuth()/Resume().
  void Receive(absl::string_view bytes);
  // The peer half-closed. A final unterminated line is still processed.
  void ReceiveEof();
  // The driver's idle or write deadline passed: close without a reply.
  // Queued output is left in place; the driver may drop it and close.
  void Timeout();

  // True when the driver should read from the socket and call Receive():
  // not closing, no EOF seen, no auth pending, and no backpressure (see the
  // driver contract at the top of this file).
  bool wants_input() const;
  // Handles buffered input that backpressure held back. Call after each
  // output().Consume(); a no-op when nothing is waiting.
  void Resume();

  // Set after PASS until ResolveAuth() is called.
  const std::optional<AuthRequest>& pending_auth() const {
    return pending_auth_;
  }
  // REQUIRES: pending_auth(). `maildrop` must be set iff verdict == kOk
  // (kOk without one is treated as kLoadFailed). Processes any input
  // pipelined behind PASS. If the session closed meanwhile (e.g. Timeout())
  // or nothing is pending, the verdict is ignored and `maildrop` dropped.
  void ResolveAuth(AuthVerdict verdict,
                   std::unique_ptr<mailbox::Maildrop> maildrop);

  // Reply bytes and message bodies waiting for the socket.
  OutputQueue& output() { return output_; }

  // True once the session has nothing more to say: close after output().
  bool closing() const { return end_reason_ != EndReason::kNone; }
  EndReason end_reason() const { return end_reason_; }
  // For log lines: the USER argument (empty before USER).
  const std::string& user() const { return user_; }
  // For "<d> (<db>) deleted, <l> (<lb>) left" after QUIT. Filled only when
  // QUIT in TRANSACTION succeeded (end_reason() == kQuit after login).
  struct UpdateSummary {
    size_t deleted = 0;
    uint64_t deleted_bytes = 0;
    size_t left = 0;
    uint64_t left_bytes = 0;
  };
  const UpdateSummary& update_summary() const { return update_summary_; }
  // True once PASS succeeded (TRANSACTION state).
  bool authenticated() const;

 private:
  class Impl;
  SessionOptions options_;
  OutputQueue output_;
  std::optional<AuthRequest> pending_auth_;
  EndReason end_reason_ = EndReason::kNone;
  std::string user_;
  UpdateSummary update_summary_;
  // Holds the maildrop. ~Session() clears output_ first: streams queued
  // there point into the maildrop and must die before it.
  std::unique_ptr<Impl> impl_;
};

}  // namespace popgate::core

#endif  // POPGATE_CORE_SESSION_H_
