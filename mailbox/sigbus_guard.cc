#include "mailbox/sigbus_guard.h"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace popgate::mailbox {
namespace {

struct Guard {
  sigjmp_buf env;
  uintptr_t lo;
  uintptr_t hi;
  Guard* outer;
};

// initial-exec: the handler must not trigger a lazy TLS allocation.
thread_local Guard* tls_guard __attribute__((tls_model("initial-exec"))) =
    nullptr;

struct sigaction g_previous;

void Handler(int sig, siginfo_t* info, void* context) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Guard* g = tls_guard; g != nullptr; g = g->outer) {
    if (addr >= g->lo && addr < g->hi) {
      tls_guard = g->outer;
      siglongjmp(g->env, 1);
    }
  }
  // Not ours: behave as if we had never been installed.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) {
      g_previous.sa_sigaction(sig, info, context);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL &&
             g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // Default action: restore it and return; the faulting access re-executes
  // and the kernel kills the process with SIGBUS (core dump as usual).
  signal(SIGBUS, SIG_DFL);
}

}  // namespace

void InstallSigbusHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = Handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
  });
}

bool RunWithSigbusGuard(const void* base, size_t size,
                        absl::FunctionRef<void()> fn) {
  InstallSigbusHandler();
  Guard guard;
  guard.lo = reinterpret_cast<uintptr_t>(base);
  guard.hi = guard.lo + size;
  guard.outer = tls_guard;
  // savemask = 0: see the header (SA_NODEFER keeps SIGBUS unblocked).
  if (sigsetjmp(guard.env, 0) != 0) {
    // The handler already popped this guard.
    return false;
  }
  tls_guard = &guard;
  // Keep the compiler from moving mapped reads across the arming store.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  fn();
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tls_guard = guard.outer;
  return true;
}

}  // namespace popgate::mailbox
