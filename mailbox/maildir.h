// Opening a Maildir as a Maildrop (issue 5, "Maildir").
//
// Callers: net/'s wiring file, after privileges are dropped to the mailbox
// owner (every open, unlink and the lock file run as that user). Tests.
#ifndef POPGATE_MAILBOX_MAILDIR_H_
#define POPGATE_MAILBOX_MAILDIR_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox/maildrop.h"

namespace popgate::mailbox {

struct MaildirOptions {
  // Total bytes of the messages one session may open (as MboxOptions): more
  // is refused at open (ResourceExhausted). Sizes are computed by mapping
  // each file at open, so this also bounds the login's I/O.
  uint64_t max_bytes = 2147483647;
  // Messages one session may list (ResourceExhausted past it). About 100
  // bytes of index per message plus its name.
  size_t max_messages = 2097152;
  // A lock file whose mtime is older than this is taken for a crashed
  // session's on another host and broken. The holder refreshes the mtime
  // at most once a minute while commands come in, so this only has to
  // exceed the longest single RETR plus the idle timeout (default 600 s).
  // Lowering it risks two sessions on one mailbox (both may then delete,
  // which is harmless for Maildir but can confuse clients' UIDL state).
  absl::Duration lock_stale_age = absl::Minutes(30);
  // Set when the opener is not the mailbox owner (--mode=pool): the maildir
  // directory and every message file must belong to this uid, else the open
  // fails with FailedPrecondition (checked with fstat on the opened fds).
  // A foreign file in someone's maildir is refused rather than skipped: it
  // means someone else can write there, which the owner should hear about.
  // Unset: no check (the session runs as the user).
  std::optional<uid_t> required_owner;
  // Where the size cache (maildir_size_cache.h) lives: a folder only the
  // session's user writes (its state folder). Empty: no cache, every login
  // reads every message file as described below.
  std::string cache_dir;
};

// Opens the Maildir at `path` (the directory holding new/, cur/, tmp/):
//   - missing (ENOENT): an empty maildrop; nothing is created;
//   - not a directory, or (options.required_owner) the directory or a
//     message file is owned by another uid: FailedPrecondition;
//   - otherwise the lock file <path>/popgate.lock is taken first: held by a
//     live session -> Unavailable (the driver answers -ERR [IN-USE]);
//   - messages: regular files in new/ and cur/ (never tmp/), except names
//     starting with '.'; symlinks and other file types are skipped. A
//     missing new/ or cur/ is empty. Order: delivery time from the name
//     (seconds, then .M<usec>), else the file's mtime; then the name.
//   - UIDL: the name before ':' if it is a valid RFC 1939 UIDL, else the
//     MD5 hex of it (maildir_name.h); a duplicate gets the MD5 hex of
//     "<new|cur>/<full name>".
//   - sizes: the exact RETR octets before dot-stuffing. From the size
//     cache when it knows the file unchanged (options.cache_dir); else
//     taken from the name when its ,S= is the file's size and its ,W= is a
//     possible encoding of that many octets (S <= W <= 2S; Dovecot's
//     deliveries name files so): the login then reads the last octet only.
//     Otherwise computed from the file, and any ,S=/,W= that disagrees is
//     counted. A login that computed a size, or no longer saw a cached
//     file, rewrites the cache.
//   - limits: ResourceExhausted; I/O failures: the errno's code.
// Mail delivered after the open stays invisible until the next session.
absl::StatusOr<std::unique_ptr<Maildrop>> OpenMaildir(
    const std::string& path, const MaildirOptions& options);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_MAILDIR_H_
