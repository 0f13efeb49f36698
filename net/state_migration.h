// Carries pending mbox redo records across a change of --mode.
//
// A crashed mbox update is repaired from its redo record at the next open
// (mailbox/mbox_update.h), but the two modes keep records in different
// places, because the writer differs:
//   --mode=fork (and inetd): <state_dir>/<mailbox uid>/            (the user's)
//   --mode=pool:             <state_dir>/<pool uid>/<mailbox uid>/ (the pool's)
// A crash in one mode followed by a start in the other would leave the
// record unseen and the mailbox unrepaired. The -D master (root, before any
// child exists) moves every "mbox-*.redo" found in the other layout into
// this mode's, owned by whoever will open it. Only renames and chowns: no
// record is parsed as root (the session that opens the mailbox repairs it).
#ifndef POPGATE_NET_STATE_MIGRATION_H_
#define POPGATE_NET_STATE_MIGRATION_H_

#include <sys/types.h>

#include <optional>
#include <string>

namespace popgate::net {

struct PoolAccountIds {
  uid_t uid = 0;
  gid_t gid = 0;
};

// `pool`: set in --mode=pool (the workers' account), empty in fork mode.
// Returns how many records moved; problems are logged and skipped (a record
// left in place is no worse than before). A no-op unless root.
int AdoptRedoRecords(const std::string& state_dir,
                     std::optional<PoolAccountIds> pool);

}  // namespace popgate::net

#endif  // POPGATE_NET_STATE_MIGRATION_H_
