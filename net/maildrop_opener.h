// Opens maildrops on a thread beside a pool worker's event loop.
//
// Why: opening a maildrop blocks. It takes the mailbox's lock (an MDA or a
// local MUA may hold it; the wait is popa3d's F_SETLKW, unbounded), lists
// and indexes the mailbox (a first login on a 1 GB mbox reads all of it, a
// Maildir login stats every file), and may wait out a same-tick mtime. On
// the loop, that stalled every session of the worker for as long. Here only
// the logins of this worker queue behind it; the sessions already logged in
// go on. One thread per worker: opens are disk- and lock-bound, and opening
// one at a time keeps a worker's share of the disk (and of the locks it
// waits on) bounded.
//
// Threading: Submit(), TakeResults() and the destructor belong to the loop
// thread. `open` runs on the opener's thread: it must be safe to call there
// (the maildrop openers are: files, mappings, a thread-local SIGBUS guard,
// thread-safe logging). A maildrop is handed over through the mutex and is
// used by the loop thread only from then on.
#ifndef POPGATE_NET_MAILDROP_OPENER_H_
#define POPGATE_NET_MAILDROP_OPENER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox/maildrop.h"

namespace popgate::net {

class MaildropOpener {
 public:
  using OpenFn =
      std::function<absl::StatusOr<std::unique_ptr<mailbox::Maildrop>>(
          const std::string& path, const std::string& state_dir,
          uid_t owner)>;

  struct Request {
    uint64_t tag = 0;  // the caller's: comes back with the result
    std::string path;
    std::string state_dir;
    uid_t owner = 0;
  };
  struct Result {
    uint64_t tag = 0;
    absl::StatusOr<std::unique_ptr<mailbox::Maildrop>> maildrop;
  };

  // Starts the thread. `stop_grace`: how long the destructor waits for an
  // open in progress (a lock wait may never end) before it leaves the
  // thread behind (detached; the process is about to exit).
  static absl::StatusOr<std::unique_ptr<MaildropOpener>> Start(
      OpenFn open, absl::Duration stop_grace = absl::Seconds(1));

  // Drops the requests not started, waits up to stop_grace for the one in
  // progress, destroys results nobody took.
  ~MaildropOpener();
  MaildropOpener(const MaildropOpener&) = delete;
  MaildropOpener& operator=(const MaildropOpener&) = delete;

  // Queues an open; its Result comes out of TakeResults() later, in order.
  void Submit(Request request);

  // Readable (POLLIN) while results are waiting: an eventfd.
  int ready_fd() const;

  // The finished opens so far (possibly none: a wake-up may be stale).
  std::vector<Result> TakeResults();

 private:
  struct Shared;
  MaildropOpener(std::shared_ptr<Shared> shared, absl::Duration stop_grace);

  // The thread's body. Owns a reference to `shared`: a thread left behind
  // by the destructor keeps the queue and the eventfd alive.
  static void Loop(std::shared_ptr<Shared> shared);

  std::shared_ptr<Shared> shared_;
  absl::Duration stop_grace_;
  std::thread thread_;
};

}  // namespace popgate::net

#endif  // POPGATE_NET_MAILDROP_OPENER_H_
