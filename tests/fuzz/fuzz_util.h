// What the fuzz targets share: invariant checks (a violated invariant
// aborts, which both libFuzzer and the corpus replay, replay_main.cc, report
// as a crash) and a scratch folder for targets that need files.
#ifndef POPGATE_TESTS_FUZZ_FUZZ_UTIL_H_
#define POPGATE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace popgate::fuzz {

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

// One scratch folder per process, removed at exit: in /dev/shm when there
// is one (fsyncs cost nothing there), named after `what`.
inline const std::string& ScratchDir(const char* what) {
  static const std::string* dir = [what] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string templ = base + "/popgate_" + what + "_fuzz_XXXXXX";
    Check(mkdtemp(templ.data()) != nullptr, "mkdtemp");
    auto* path = new std::string(templ);
    std::atexit([] { std::filesystem::remove_all(*dir); });
    return path;
  }();
  return *dir;
}

}  // namespace popgate::fuzz

#endif  // POPGATE_TESTS_FUZZ_FUZZ_UTIL_H_
