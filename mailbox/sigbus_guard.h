// Turns a SIGBUS on a guarded mapping into an error return instead of a
// crashed worker.
//
// Why: a mailbox mapping faults (SIGBUS) when a page lies beyond the file's
// current end. popgate holds no lock between commands (popa3d semantics, so
// delivery goes on), and fcntl locks are advisory: a non-locking MUA or an
// admin's `> /var/mail/bob` can truncate the file at any moment, and no
// size check done before a read closes that window. So every user-space
// read of mapped bytes in mailbox/ (index build, re-check, TOP scan, the
// wire encoder's line scan) runs under this guard, and a fault becomes
// Aborted ("someone else rewrote it"), the same outcome as a detected change.
//
// Mechanism: a process-wide SIGBUS handler (installed once, chaining to any
// previous handler) siglongjmp()s back to the guarded call when the faulting
// address lies inside the calling thread's armed range; any other SIGBUS gets
// the previous disposition, so real bugs still crash. SA_NODEFER keeps SIGBUS
// unblocked after the jump, which lets sigsetjmp skip saving the signal mask
// (no syscall per guarded call: arming costs a few nanoseconds).
//
// Residual risk, by design: bytes handed out as string_views (WireStream
// segments) are read later by the caller. writev/sendfile read them in the
// kernel, which returns EFAULT/short counts instead of SIGBUS; a caller that
// reads them in user space (TLS encryption) must wrap that read in
// RunWithSigbusGuard() too.
#ifndef POPGATE_MAILBOX_SIGBUS_GUARD_H_
#define POPGATE_MAILBOX_SIGBUS_GUARD_H_

#include <cstddef>

#include "absl/functional/function_ref.h"

namespace popgate::mailbox {

// Installs the process-wide SIGBUS handler (idempotent, thread-safe). Called
// by RunWithSigbusGuard; exposed so a daemon can install it at startup
// before it starts threads. A SIGBUS handler installed later by someone
// else replaces ours (and guarded faults then crash): install others first,
// ours chains to them.
void InstallSigbusHandler();

// Runs fn(). Returns true if it completed, false if it was cut short by a
// SIGBUS at an address in [base, base + size).
// REQUIRES: fn and everything it calls hold no object with a non-trivial
// destructor and no lock or allocation in progress at any point where it may
// read the guarded range: on a fault, the stack is unwound by siglongjmp,
// which runs no destructors. (Write results into storage owned outside.)
// Nesting is allowed; the innermost guard whose range matches wins.
bool RunWithSigbusGuard(const void* base, size_t size,
                        absl::FunctionRef<void()> fn);

}  // namespace popgate::mailbox

#endif  // POPGATE_MAILBOX_SIGBUS_GUARD_H_
