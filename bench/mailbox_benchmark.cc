// Micro-benchmarks for mailbox/: index build over a mapped mbox, UIDL
// hashing, RETR wire encoding. Compare numbers only from the same machine
// and build (STYLE.md §7).
//
//   BM_Mailbox_IndexBuild/<MiB>   one pass over a generated, mapped mbox
//                                 (typical mail: 4 KB messages, 72-column
//                                 LF lines, 3 Received: headers); MB/s.
//   BM_Mailbox_Uidl               header selection + MD5 for one typical
//                                 header block; items/s = messages/s.
//   BM_Mailbox_WireEncode/<kind>  EncodingStream over a 1 MiB message with
//                                 64 KiB per Next(): 0 = LF lines, 1 = CR LF
//                                 lines with dots, 2 = wire-clean; bytes/s
//                                 and segs/MiB (views per MiB of wire).
//   BM_Mailbox_Relogin/<MiB>/<how> the index at login over a mapped mbox with
//                                 one message appended since the last
//                                 login: 0 = full scan (no cache), 1 = the
//                                 index cache (cached prefix + tail scan),
//                                 2 = unchanged mailbox, cache hit; bytes/s
//                                 over the whole mailbox.
//   BM_Mailbox_MaildirLogin/<how> MaildirMaildrop::Open over 2,000 messages
//                                 of 20 KB in tmpfs, one delivered since the
//                                 last login: 0 = names without ,S=/,W=
//                                 (Postfix's), no size cache: every file is
//                                 read; 1 = Dovecot's ,S=,W= names, no cache:
//                                 every file is opened for its last octet;
//                                 2 = Postfix's names and the size cache the
//                                 last login left (rewritten for the new
//                                 message). Time per login.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "mailbox/maildir.h"
#include "mailbox/maildir_maildrop.h"
#include "mailbox/maildir_size_cache.h"
#include "mailbox/mapping.h"
#include "mailbox/mbox_index.h"
#include "mailbox/mbox_index_cache.h"
#include "mailbox/uidl.h"
#include "mailbox/wire_stream.h"

namespace popgate::mailbox {
namespace {

std::string Headers(int n) {
  return absl::StrCat(
      "Return-Path: <sender", n, "@example.org>\n",
      "Delivered-To: user@host.local\n",
      "Received: from mx.example.org (mx.example.org [192.0.2.1])\n",
      "\tby host.local (Postfix) with ESMTPS id 4F", n, "\n",
      "\tfor <user@host.local>; Mon, 1 Jan 2024 00:00:00 +0000 (UTC)\n",
      "Received: from client (client [198.51.100.7])\n",
      "\tby mx.example.org with ESMTP id ", n, "\n",
      "Received: by client with local id ", n, "\n",
      "Date: Mon, 1 Jan 2024 00:00:00 +0000\n", "From: Sender <sender", n,
      "@example.org>\n", "To: User <user@host.local>\n",
      "Subject: message number ", n, " in the benchmark mailbox\n",
      "Message-ID: <", n, "@example.org>\n", "MIME-Version: 1.0\n",
      "Content-Type: text/plain; charset=us-ascii\n", "Status: RO\n");
}

std::string GenerateMbox(size_t bytes) {
  std::mt19937 rng(1);
  std::string mbox;
  mbox.reserve(bytes + 8192);
  const std::string line(71, 'x');
  for (int n = 0; mbox.size() < bytes; ++n) {
    absl::StrAppend(&mbox, "From sender", n,
                    "@example.org Mon Jan  1 00:00:00 2024\n", Headers(n),
                    "\n");
    const int lines = 20 + static_cast<int>(rng() % 80);
    for (int i = 0; i < lines; ++i) {
      mbox += line;
      mbox += (i % 17 == 5) ? "\n.\n" : "\n";
    }
    mbox += "\n";
  }
  return mbox;
}

// A temp file holding `bytes` of mbox, mapped; unlinked at once.
struct MappedMbox {
  explicit MappedMbox(size_t bytes, absl::string_view extra = "") {
    const std::string data = GenerateMbox(bytes) + std::string(extra);
    const char* dir = std::getenv("TMPDIR");
    std::string path =
        absl::StrCat(dir != nullptr ? dir : "/tmp", "/mbox-bench-XXXXXX");
    fd = UniqueFd(::mkstemp(path.data()));
    ::unlink(path.c_str());
    if (!fd.valid() || WriteFull(fd.get(), data.data(), data.size()) != 0) {
      std::abort();
    }
    auto m = Mapping::Map(fd.get(), data.size());
    if (!m.ok()) std::abort();
    mapping = std::move(*m);
  }
  UniqueFd fd;
  Mapping mapping;
};

void BM_Mailbox_IndexBuild(benchmark::State& state) {
  MappedMbox mbox(static_cast<size_t>(state.range(0)) << 20);
  size_t messages = 0;
  for (auto _ : state) {
    auto index = IndexMappedMbox(mbox.mapping.view(), 1 << 24);
    if (!index.ok()) {
      state.SkipWithError("index failed");
      return;
    }
    messages = index->size();
    benchmark::DoNotOptimize(index->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(mbox.mapping.size()));
  state.counters["messages"] = static_cast<double>(messages);
}
BENCHMARK(BM_Mailbox_IndexBuild)
    ->Arg(16)
    ->Arg(256)
    ->Unit(benchmark::kMillisecond);

void BM_Mailbox_Uidl(benchmark::State& state) {
  const std::string headers = Headers(42);
  std::vector<absl::string_view> lines;
  for (size_t pos = 0; pos < headers.size();) {
    size_t nl = headers.find('\n', pos);
    lines.emplace_back(headers.data() + pos, nl + 1 - pos);
    pos = nl + 1;
  }
  UidlSelector selector;
  UidlHasher hasher;
  char out[kUidlLength];
  for (auto _ : state) {
    selector.Reset();
    hasher.Begin();
    for (absl::string_view line : lines) {
      if (selector.Select(line)) hasher.Update(line);
    }
    hasher.Finish(out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(headers.size()));
}
BENCHMARK(BM_Mailbox_Uidl);

void BM_Mailbox_WireEncode(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  std::string data;
  const std::string line(70, 'y');
  while (data.size() < (1 << 20)) {
    if (kind == 1 && data.size() % 13 == 0) data += ".";
    data += line;
    data += kind == 0 ? "\n" : "\r\n";
  }
  std::vector<absl::string_view> segs;
  segs.reserve(4096);
  size_t wire = 0, segments = 0;
  for (auto _ : state) {
    EncodingStream stream(data, kind == 2, absl::string_view());
    wire = 0;
    segments = 0;
    for (;;) {
      segs.clear();
      auto more = stream.Next(64 << 10, &segs);
      for (absl::string_view s : segs) wire += s.size();
      segments += segs.size();
      if (!more.ok() || !*more) break;
    }
    benchmark::DoNotOptimize(wire);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire));
  state.counters["segs/MiB"] = static_cast<double>(segments) /
                               (static_cast<double>(wire) / (1 << 20));
}
BENCHMARK(BM_Mailbox_WireEncode)->Arg(0)->Arg(1)->Arg(2);

void BM_Mailbox_Relogin(benchmark::State& state) {
  const std::string extra = absl::StrCat(
      "From new@example.org Mon Jan  1 00:00:00 2024\n", Headers(999999),
      "\nthe new message\n\n");
  MappedMbox mbox(static_cast<size_t>(state.range(0)) << 20, extra);
  const int how = static_cast<int>(state.range(1));
  const absl::string_view all = mbox.mapping.view();
  const absl::string_view before = all.substr(0, all.size() - extra.size());
  char dir_template[] = "/dev/shm/popgate-relogin-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  MboxFileKey key{1, 2, before.size(), 100, 0};
  auto old_index = IndexMappedMbox(before, 1 << 24);
  if (!old_index.ok() ||
      !WriteIndexCache(IndexCachePath(dir, 1, 2), key, before, *old_index)
           .ok()) {
    state.SkipWithError("set-up failed");
    return;
  }
  const std::string old_cache = IndexCachePath(dir, 1, 2) + ".old";
  ::rename(IndexCachePath(dir, 1, 2).c_str(), old_cache.c_str());
  const absl::string_view data = how == 2 ? before : all;
  if (how != 2) key = MboxFileKey{1, 2, all.size(), 200, 0};
  IndexCacheOutcome outcome = IndexCacheOutcome::kDisabled;
  for (auto _ : state) {
    state.PauseTiming();
    // The cache as the previous login left it (a link: no copy timed).
    ::unlink(IndexCachePath(dir, 1, 2).c_str());
    ::link(old_cache.c_str(), IndexCachePath(dir, 1, 2).c_str());
    state.ResumeTiming();
    auto index = IndexWithCache(data, key, how == 0 ? std::string() : dir,
                                1 << 24, &outcome);
    if (!index.ok()) {
      state.SkipWithError("index failed");
      break;
    }
    benchmark::DoNotOptimize(index->data());
  }
  const IndexCacheOutcome want = how == 0   ? IndexCacheOutcome::kDisabled
                                 : how == 1 ? IndexCacheOutcome::kAppended
                                            : IndexCacheOutcome::kHit;
  if (outcome != want) state.SkipWithError("unexpected cache outcome");
  ::unlink(IndexCachePath(dir, 1, 2).c_str());
  ::unlink(old_cache.c_str());
  ::rmdir(dir.c_str());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
  state.counters["messages"] = static_cast<double>(old_index->size() + 1);
}
BENCHMARK(BM_Mailbox_Relogin)
    ->Args({256, 0})
    ->Args({256, 1})
    ->Args({256, 2})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Unit(benchmark::kMillisecond);

void BM_Mailbox_MaildirLogin(benchmark::State& state) {
  const int how = static_cast<int>(state.range(0));
  constexpr int kMessages = 2000;
  char dir_template[] = "/dev/shm/popgate-maildir-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string maildir = dir + "/Maildir";
  const std::string state_dir = dir + "/state";
  for (const char* sub : {"/new", "/cur", "/tmp"}) {
    std::filesystem::create_directories(maildir + sub);
  }
  std::filesystem::create_directories(state_dir);
  std::string body;
  while (body.size() < 20000) body += std::string(71, 'x') + "\n";
  auto deliver = [&](int n) {
    const std::string message = Headers(n) + "\n" + body;
    std::string name = absl::StrCat(1700000000 + n, ".M", n, "P1.host");
    if (how == 1) {
      const size_t lines = static_cast<size_t>(
          std::count(message.begin(), message.end(), '\n'));
      absl::StrAppend(&name, ",S=", message.size(), ",W=",
                      message.size() + lines);
    }
    const int fd = ::open((maildir + "/cur/" + name + ":2,S").c_str(),
                          O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || WriteFull(fd, message.data(), message.size()) != 0) {
      state.SkipWithError("delivery failed");
    }
    if (fd >= 0) ::close(fd);
  };
  for (int n = 0; n < kMessages - 1; ++n) deliver(n);
  MaildirOptions options;
  if (how == 2) options.cache_dir = state_dir;
  struct stat st;
  ::stat(maildir.c_str(), &st);
  const std::string cache = MaildirSizeCachePath(state_dir, st.st_dev, st.st_ino);
  const std::string old_cache = cache + ".old";
  if (how == 2) {
    MaildirMaildrop::Open(maildir, options).IgnoreError();  // writes the cache
    ::rename(cache.c_str(), old_cache.c_str());
  }
  deliver(kMessages - 1);
  size_t hits = 0;
  for (auto _ : state) {
    state.PauseTiming();
    if (how == 2) {  // The cache as the previous login left it.
      ::unlink(cache.c_str());
      ::link(old_cache.c_str(), cache.c_str());
    }
    state.ResumeTiming();
    auto maildrop = MaildirMaildrop::Open(maildir, options);
    if (!maildrop.ok() || (*maildrop)->message_count() != kMessages) {
      state.SkipWithError("open failed");
      break;
    }
    hits = (*maildrop)->size_cache_hits();
  }
  if (how == 2 && hits != kMessages - 1) {
    state.SkipWithError("unexpected cache hits");
  }
  std::filesystem::remove_all(dir);
  state.counters["messages"] = kMessages;
}
BENCHMARK(BM_Mailbox_MaildirLogin)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace popgate::mailbox
