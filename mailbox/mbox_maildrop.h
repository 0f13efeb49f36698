// MboxMaildrop: a Maildrop over one mbox spool file (popa3d semantics).
//
// Lifecycle: OpenMbox() (mbox.h) builds it; one session owns it; no lock is
// held between calls. Every RETR/TOP and the update re-check the file
// (size, mtime in ns, inode); on a change the original region is
// re-indexed under a shared lock and must match exactly, else the maildrop
// turns stale and every later call fails with Aborted ("someone else
// rewrote it"). Mail appended by the MDA is fine and stays invisible.
//
// A Maildir maildrop would sit beside this class as another Maildrop
// implementation; only mbox.h/OpenMbox and this file know the format.
#ifndef POPGATE_MAILBOX_MBOX_MAILDROP_H_
#define POPGATE_MAILBOX_MBOX_MAILDROP_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox/maildrop.h"
#include "mailbox/mapping.h"
#include "mailbox/mbox.h"
#include "mailbox/mbox_index.h"

namespace popgate::mailbox {

class MboxMaildrop : public Maildrop {
 public:
  // What OpenMbox does; see mbox.h for the contract.
  static absl::StatusOr<std::unique_ptr<MboxMaildrop>> Open(
      const std::string& path, const MboxOptions& options);

  size_t message_count() const override { return messages_.size(); }
  uint64_t message_size(size_t index) const override {
    return messages_[index].wire_size;
  }
  absl::string_view uidl(size_t index) const override {
    return messages_[index].uidl_view();
  }
  absl::StatusOr<std::unique_ptr<WireStream>> Retrieve(
      size_t index, std::optional<uint64_t> top_lines) override;
  absl::Status CheckUnchanged() override;
  absl::Status Commit(absl::Span<const size_t> indices) override;
  absl::string_view display_name() const override { return path_; }

  // The index, for tests and tools.
  const std::vector<MboxMessage>& messages() const { return messages_; }

 private:
  // What we compare to notice a change (popa3d: mtime in seconds only).
  struct FileState {
    uint64_t size = 0;
    struct timespec mtime = {};
    dev_t dev = 0;
    ino_t ino = 0;
  };

  MboxMaildrop(std::string path, MboxOptions options)
      : path_(std::move(path)), options_(std::move(options)) {}

  absl::Status Load(const struct stat& lst);
  // Re-checks the file; re-indexes under a shared lock if it changed.
  // `check_path`: also make sure the path still names our file.
  absl::Status CheckForChanges(bool check_path);
  // The same with the caller holding a lock (shared or exclusive).
  absl::Status VerifyLocked();
  absl::Status Stale(absl::string_view why);

  const std::string path_;
  const MboxOptions options_;
  UniqueFd fd_;
  Mapping mapping_;  // [0, orig_size_) at open.
  std::vector<MboxMessage> messages_;
  uint64_t orig_size_ = 0;
  FileState seen_;  // The last verified state.
  bool stale_ = false;
  bool committed_ = false;
};

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MBOX_MAILDROP_H_
