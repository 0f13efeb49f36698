// Invariant checks for the fuzz targets: a violated invariant aborts, which
// both libFuzzer and the corpus replay (replay_main.cc) report as a crash.
#ifndef POPGATE_TESTS_FUZZ_FUZZ_CHECK_H_
#define POPGATE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace popgate::fuzz {

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace popgate::fuzz

#endif  // POPGATE_TESTS_FUZZ_FUZZ_CHECK_H_
