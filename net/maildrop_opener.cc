#include "net/maildrop_opener.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>

#include "core/logging.h"
#include "net/unique_fd.h"

namespace popgate::net {

struct MaildropOpener::Shared {
  OpenFn open;
  UniqueFd event_fd;

  std::mutex mu;
  std::condition_variable wake;     // a request, or stop
  std::condition_variable stopped;  // the thread left Loop()
  std::deque<Request> requests;
  std::vector<Result> results;
  bool stop = false;
  bool exited = false;
};

absl::StatusOr<std::unique_ptr<MaildropOpener>> MaildropOpener::Start(
    OpenFn open, absl::Duration stop_grace) {
  auto shared = std::make_shared<Shared>();
  shared->open = std::move(open);
  shared->event_fd.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!shared->event_fd) return absl::ErrnoToStatus(errno, "eventfd");
  std::unique_ptr<MaildropOpener> opener(
      new MaildropOpener(std::move(shared), stop_grace));
  opener->thread_ = std::thread(&MaildropOpener::Loop, opener->shared_);
  return opener;
}

MaildropOpener::MaildropOpener(std::shared_ptr<Shared> shared,
                               absl::Duration stop_grace)
    : shared_(std::move(shared)), stop_grace_(stop_grace) {}

MaildropOpener::~MaildropOpener() {
  if (!thread_.joinable()) return;
  std::vector<Result> unclaimed;
  bool exited;
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    shared_->stop = true;
    shared_->requests.clear();
    shared_->wake.notify_one();
    exited = shared_->stopped.wait_for(
        lock, absl::ToChronoNanoseconds(stop_grace_),
        [this] { return shared_->exited; });
    unclaimed.swap(shared_->results);
  }
  if (exited) {
    thread_.join();
  } else {
    // Stuck in an open (a lock nobody releases): the process exits next,
    // which ends the thread; its reference keeps `shared_` alive until then.
    core::Log(core::Severity::kNotice,
              "maildrop opener still busy at exit: left behind");
    thread_.detach();
  }
  // `unclaimed` (maildrops whose sessions ended) is released here, on the
  // loop thread, like any maildrop.
}

void MaildropOpener::Submit(Request request) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->requests.push_back(std::move(request));
  shared_->wake.notify_one();
}

int MaildropOpener::ready_fd() const { return shared_->event_fd.get(); }

std::vector<MaildropOpener::Result> MaildropOpener::TakeResults() {
  uint64_t count;
  // Reset the eventfd before taking: a result posted after the swap bumps
  // it again, so no wake-up is lost.
  (void)!::read(shared_->event_fd.get(), &count, sizeof(count));
  std::vector<Result> taken;
  std::lock_guard<std::mutex> lock(shared_->mu);
  taken.swap(shared_->results);
  return taken;
}

void MaildropOpener::Loop(std::shared_ptr<Shared> shared) {
  std::unique_lock<std::mutex> lock(shared->mu);
  for (;;) {
    shared->wake.wait(
        lock, [&] { return shared->stop || !shared->requests.empty(); });
    if (shared->stop) break;
    Request request = std::move(shared->requests.front());
    shared->requests.pop_front();
    lock.unlock();
    Result result;
    result.tag = request.tag;
    result.maildrop =
        shared->open(request.path, request.state_dir, request.owner);
    lock.lock();
    shared->results.push_back(std::move(result));
    const uint64_t one = 1;
    (void)!::write(shared->event_fd.get(), &one, sizeof(one));
  }
  shared->exited = true;
  shared->stopped.notify_all();
}

}  // namespace popgate::net
