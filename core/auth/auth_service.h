// A bounded thread pool that runs password verification off the event
// loop. Hashing (sha512-crypt, yescrypt, bcrypt) and PAM take milliseconds
// to seconds; the loop that reads the worker channels must never wait on
// them.
//
// Shape: Submit() queues a job and returns at once (false when the pool is
// full: the caller answers "try later" instead of queueing without bound).
// `threads` threads take jobs in FIFO order and call
// Authenticator::AuthenticateFrom; each result goes to a completion queue
// and the eventfd wake_fd() is written, so the loop polls it and calls
// DrainCompletions() on its own thread.
//
// Callers: net/'s auth process. Submit/DrainCompletions/in_flight from one
// loop thread (any single thread at a time); the authenticator must be safe
// for concurrent calls. Shutdown (destructor): queued jobs are dropped,
// running ones finish (a crypt or PAM call cannot be interrupted), threads
// are joined.
//
// Secrets: a job's password is wiped when the job is destroyed, whichever
// thread and path that happens on.
#ifndef POPGATE_CORE_AUTH_AUTH_SERVICE_H_
#define POPGATE_CORE_AUTH_AUTH_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/auth/authenticator.h"

namespace popgate::core::auth {

// Overwrites every byte `secret` has ever held in its current buffer (up to
// its capacity, so the tail of a short string moved from is covered), then
// empties it. explicit_bzero: the compiler may not drop the stores.
void WipeSecret(std::string* secret);

struct AuthJob {
  AuthJob() = default;
  AuthJob(uint64_t tag, std::string remote_host, std::string user,
          std::string password)
      : tag(tag),
        remote_host(std::move(remote_host)),
        user(std::move(user)),
        password(std::move(password)) {}
  // Moves leave the source's bytes behind in its buffer; its destructor
  // wipes them.
  AuthJob(AuthJob&&) = default;
  AuthJob& operator=(AuthJob&&) = default;
  ~AuthJob() { WipeSecret(&password); }

  uint64_t tag = 0;         // the caller's; echoed in the completion
  std::string remote_host;  // numeric, may be empty (PAM_RHOST)
  std::string user;
  std::string password;
};

struct AuthCompletion {
  uint64_t tag = 0;
  // The backend's result (authenticator.h: PermissionDenied for every
  // refusal, Unavailable when the backend failed).
  absl::StatusOr<AuthenticatedUser> result;
  bool known_user = false;
};

class AuthService {
 public:
  // Starts `threads` (>= 1) threads. `max_queue` jobs may wait beyond the
  // ones running. `authenticator` must outlive the service. Unavailable if
  // the eventfd cannot be made.
  static absl::StatusOr<std::unique_ptr<AuthService>> Create(
      Authenticator& authenticator, int threads, size_t max_queue);
  ~AuthService();
  AuthService(const AuthService&) = delete;
  AuthService& operator=(const AuthService&) = delete;

  // Queues `job` unless threads + max_queue jobs are already queued or
  // running; returns false (and wipes the job) then. Never blocks on a
  // verification.
  bool Submit(AuthJob job);

  // Readable (eventfd, non-blocking) while completions may be waiting.
  int wake_fd() const { return wake_fd_; }

  // Resets wake_fd() and hands every finished job to `callback`, on the
  // calling thread. Returns how many.
  size_t DrainCompletions(absl::FunctionRef<void(AuthCompletion)> callback);

  // Jobs submitted whose completion has not been drained yet.
  size_t in_flight() const;

 private:
  AuthService(Authenticator& authenticator, int wake_fd, size_t capacity);
  void Run();

  Authenticator& authenticator_;
  const int wake_fd_;
  const size_t capacity_;  // threads + max_queue
  std::vector<std::thread> threads_;

  mutable absl::Mutex mu_;
  absl::CondVar work_;  // signalled on Submit and at shutdown
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // unique_ptr so the strings of a queued job never move again after
  // Submit: no stray copies of a password in a deque's spare slots.
  std::deque<std::unique_ptr<AuthJob>> queue_ ABSL_GUARDED_BY(mu_);
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<AuthCompletion> completions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace popgate::core::auth

#endif  // POPGATE_CORE_AUTH_AUTH_SERVICE_H_
