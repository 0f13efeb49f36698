#include "core/auth/auth_service.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "absl/status/status.h"

namespace popgate::core::auth {

void WipeSecret(std::string* secret) {
  // resize() to the capacity never reallocates, and makes every byte of the
  // buffer part of the string, so clearing it is defined behaviour.
  secret->resize(secret->capacity());
  ::explicit_bzero(secret->data(), secret->size());
  secret->clear();
}

absl::StatusOr<std::unique_ptr<AuthService>> AuthService::Create(
    Authenticator& authenticator, int threads, size_t max_queue) {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd");
  if (threads < 1) threads = 1;
  std::unique_ptr<AuthService> service(new AuthService(
      authenticator, fd, static_cast<size_t>(threads) + max_queue));
  service->threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    service->threads_.emplace_back([s = service.get()] { s->Run(); });
  }
  return service;
}

AuthService::AuthService(Authenticator& authenticator, int wake_fd,
                         size_t capacity)
    : authenticator_(authenticator), wake_fd_(wake_fd), capacity_(capacity) {}

AuthService::~AuthService() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_.clear();  // each job's destructor wipes its password
    work_.SignalAll();
  }
  for (std::thread& thread : threads_) thread.join();
  ::close(wake_fd_);
}

bool AuthService::Submit(AuthJob job) {
  // Allocated outside the lock; `job`'s own buffers are wiped on return.
  auto queued = std::make_unique<AuthJob>(std::move(job));
  absl::MutexLock lock(&mu_);
  if (stopping_ || queue_.size() + running_ >= capacity_) return false;
  queue_.push_back(std::move(queued));
  work_.Signal();
  return true;
}

size_t AuthService::DrainCompletions(
    absl::FunctionRef<void(AuthCompletion)> callback) {
  // Reset the eventfd before taking the batch: a completion pushed after
  // the swap below writes it again, so no wake-up is lost.
  uint64_t count;
  while (::read(wake_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
  std::vector<AuthCompletion> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(completions_);
  }
  for (AuthCompletion& completion : batch) callback(std::move(completion));
  return batch.size();
}

size_t AuthService::in_flight() const {
  absl::MutexLock lock(&mu_);
  return queue_.size() + running_ + completions_.size();
}

void AuthService::Run() {
  for (;;) {
    std::unique_ptr<AuthJob> job;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) work_.Wait(&mu_);
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    AuthCompletion completion;
    completion.tag = job->tag;
    completion.result = authenticator_.AuthenticateFrom(
        job->remote_host, job->user, job->password, &completion.known_user);
    job.reset();  // wipes the password before anything else happens
    {
      absl::MutexLock lock(&mu_);
      --running_;
      completions_.push_back(std::move(completion));
    }
    const uint64_t one = 1;
    // Cannot fail short of a counter overflow (2^64 - 1 wakes undrained).
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
}

}  // namespace popgate::core::auth
