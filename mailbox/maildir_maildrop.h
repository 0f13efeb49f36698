// MaildirMaildrop: a Maildrop over one Maildir (new/ + cur/), built by
// OpenMaildir() (maildir.h, which states the open contract).
//
// Lifecycle: one session owns it from open to destruction and holds the
// maildir's lock file all that time (maildir_lock.h); the destructor
// removes it. The listing is fixed at open: mail delivered later is left
// alone and served next time.
//
// Memory: the maildrop maps nothing between calls. Retrieve() maps one
// message; the returned stream owns that mapping and unmaps it when
// destroyed, so a session that drops each stream before the next RETR (as
// the driver does) has at most one message mapped.
//
// Concurrency with other agents: Maildir files are never rewritten in
// place; another client may rename them (new/ -> cur/, flag changes) or
// delete them. Renames are followed by unique name and inode; a deleted
// file, or one replaced by different content, makes Retrieve() return
// Aborted ("someone else changed it": the session ends and applies no
// deletions, as popa3d does for an mbox rewritten under it).
#ifndef POPGATE_MAILBOX_MAILDIR_MAILDROP_H_
#define POPGATE_MAILBOX_MAILDIR_MAILDROP_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox/maildir.h"
#include "mailbox/maildir_lock.h"
#include "mailbox/maildir_name.h"
#include "mailbox/maildrop.h"
#include "mailbox/mapping.h"

namespace popgate::mailbox {

class MaildirMaildrop : public Maildrop {
 public:
  struct Message {
    std::string name;  // File name in new/ or cur/ (updated when it moves).
    bool in_cur = false;
    std::string uidl;
    uint64_t raw_size = 0;   // st_size at open.
    uint64_t wire_size = 0;  // At open: from the size cache, name or file.
    dev_t dev = 0;
    ino_t ino = 0;
    int64_t sort_seconds = 0;  // Delivery time: from the name, else mtime.
    int64_t sort_micros = 0;
    size_t base_size = 0;  // The name's unique part (before ':'); moves keep it.

    absl::string_view base() const {
      return absl::string_view(name).substr(0, base_size);
    }
  };

  // What OpenMaildir does, with the concrete type (tests, tools).
  static absl::StatusOr<std::unique_ptr<MaildirMaildrop>> Open(
      const std::string& path, const MaildirOptions& options);

  ~MaildirMaildrop() override = default;

  size_t message_count() const override { return messages_.size(); }
  uint64_t message_size(size_t index) const override {
    return messages_[index].wire_size;
  }
  absl::string_view uidl(size_t index) const override {
    return messages_[index].uidl;
  }
  absl::StatusOr<std::unique_ptr<WireStream>> Retrieve(
      size_t index, std::optional<uint64_t> top_lines) override;
  absl::Status CheckUnchanged() override;
  absl::Status Commit(absl::Span<const size_t> indices) override;
  absl::string_view display_name() const override { return path_; }

  const std::vector<Message>& messages() const { return messages_; }
  // How many ,S=/,W= name fields disagreed with the file at open.
  size_t size_field_mismatches() const { return size_field_mismatches_; }
  // How many sizes came from the size cache (no file opened for them).
  size_t size_cache_hits() const { return size_cache_hits_; }
  bool locked() const { return lock_.held(); }

 private:
  MaildirMaildrop(std::string path, MaildirOptions options)
      : path_(std::move(path)), options_(std::move(options)) {}

  absl::Status Scan();
  // Maps and reads a message file of `size` octets to compute its wire size;
  // counts name fields that disagree. False if it shrank while read.
  absl::StatusOr<bool> ScanWireSize(int fd, uint64_t size,
                                    const MaildirName& parsed,
                                    uint64_t* wire_size);
  // new/ or cur/, opened on first use. -1 if it does not exist.
  int SubdirFd(bool in_cur);
  // Opens message `index` where it now is (following a rename by unique
  // name and inode). Aborted if it is gone or is another file now.
  absl::StatusOr<UniqueFd> OpenMessage(size_t index);
  // Looks in cur/ then new/ for a file with `base` before ':' and inode
  // (dev, ino); updates `m` and returns true if found.
  bool Relocate(Message& m);
  absl::Status Stale(absl::string_view why);

  const std::string path_;
  const MaildirOptions options_;
  // Declared before lock_: the lock's destructor uses dir_fd_.
  UniqueFd dir_fd_;
  UniqueFd new_fd_;
  UniqueFd cur_fd_;
  MaildirLock lock_;
  std::vector<Message> messages_;
  size_t size_field_mismatches_ = 0;
  size_t size_cache_hits_ = 0;
  // The last retrieved file, for CheckUnchanged(); shared with its stream,
  // which may send from it (sendfile) until the stream is gone.
  std::shared_ptr<const UniqueFd> retrieved_fd_;
  uint64_t retrieved_size_ = 0;
  bool stale_ = false;
  bool committed_ = false;
};

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDIR_MAILDROP_H_
