// Micro-benchmarks for the POP3 state machine (STYLE.md §7).
//
// BM_Core_ParseCommand: keyword + argument parsing of typical lines.
// BM_Core_SessionPipeline: a whole pipelined session (USER, PASS, STAT,
//   LIST, UIDL, N x RETR, DELE, QUIT) through Receive / Gather / Consume
//   against an in-memory FakeMaildrop; items = commands handled.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/command.h"
#include "core/session.h"
#include "tests/fakes/fake_maildrop.h"

namespace popgate::core {
namespace {

void BM_Core_ParseCommand(benchmark::State& state) {
  const std::vector<std::string> lines = {
      "USER alice", "PASS correct horse battery",
      "STAT",       "LIST",
      "LIST 17",    "UIDL 4294967297",
      "RETR 3",     "TOP 12 0",
      "DELE +01",   "quit"};
  size_t bytes = 0;
  for (const std::string& line : lines) bytes += line.size();
  for (auto _ : state) {
    for (const std::string& line : lines) {
      CommandLine command = ParseCommandLine(line);
      ArgumentReader args(command.arguments);
      std::optional<int> n = args.NextInt();
      benchmark::DoNotOptimize(command);
      benchmark::DoNotOptimize(n);
    }
  }
  state.SetItemsProcessed(state.iterations() * lines.size());
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_Core_ParseCommand);

void BM_Core_SessionPipeline(benchmark::State& state) {
  const int retrs = static_cast<int>(state.range(0));
  const std::string body = "Received: from mx\r\nSubject: hello\r\n\r\n" +
                           std::string(2000, 'b') + "\r\n";
  std::string script = "USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\n";
  for (int i = 1; i <= retrs; ++i) absl::StrAppend(&script, "RETR ", i, "\r\n");
  script += "DELE 1\r\nQUIT\r\n";
  const int commands = retrs + 7;
  size_t sent = 0;
  std::vector<absl::string_view> views;
  for (auto _ : state) {
    Session session{SessionOptions{}};
    session.Receive(script);
    while (!session.closing() || !session.output().empty()) {
      if (session.pending_auth().has_value()) {
        auto drop = std::make_unique<testing::FakeMaildrop>();
        for (int i = 0; i < retrs; ++i) drop->Add(body);
        session.ResolveAuth(AuthVerdict::kOk, std::move(drop));
      }
      views.clear();
      if (!session.output().Gather(64 * 1024, &views).ok()) break;
      size_t n = 0;
      for (absl::string_view v : views) n += v.size();
      sent += n;
      session.output().Consume(n);
      session.Resume();
    }
  }
  benchmark::DoNotOptimize(sent);
  state.SetItemsProcessed(state.iterations() * commands);
  state.SetBytesProcessed(sent);
}
BENCHMARK(BM_Core_SessionPipeline)->Arg(1)->Arg(10)->Arg(100);

}  // namespace
}  // namespace popgate::core
