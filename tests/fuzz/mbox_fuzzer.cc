// Fuzz target for the mbox splitter and wire encoder: indexes arbitrary
// bytes (untrusted: a mailbox is written by whoever sends mail) and encodes
// every message for RETR and TOP, checking the invariants the server relies
// on. Seeds: tests/fuzz/corpus/mbox/.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mailbox/mbox_index.h"
#include "mailbox/wire_stream.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using popgate::mailbox::EncodingStream;
using popgate::mailbox::IndexMbox;
using popgate::mailbox::MboxMessage;
using popgate::mailbox::TopLength;
using popgate::mailbox::WireSize;

using ::popgate::fuzz::Check;

std::string Encode(absl::string_view data, bool clean, size_t max_bytes) {
  EncodingStream stream(data, clean, absl::string_view());
  std::string out;
  for (;;) {
    std::vector<absl::string_view> segs;
    auto more = stream.Next(max_bytes, &segs);
    Check(more.ok(), "encoding heap data cannot fail");
    size_t n = 0;
    for (absl::string_view s : segs) {
      out.append(s.data(), s.size());
      n += s.size();
    }
    Check(n <= max_bytes + 3, "Next() respects max_bytes");
    if (!*more) return out;
  }
}

// The same through NextInto() with `capacity`-octet buffers.
std::string EncodeInto(absl::string_view data, size_t capacity) {
  EncodingStream stream(data, false, absl::string_view());
  std::string out;
  std::vector<char> buffer(capacity);
  for (;;) {
    size_t written = 0;
    auto more = stream.NextInto(buffer.data(), capacity, &written);
    Check(more.ok(), "encoding heap data cannot fail");
    Check(written <= capacity, "NextInto() stays in its buffer");
    out.append(buffer.data(), written);
    if (!*more) return out;
    Check(written > 0, "NextInto() makes progress");
  }
}

// Undoes the wire form: strips one dot from dot-led lines, CR LF -> LF
// where the source had a bare LF cannot be told apart, so compare against
// the data with every bare LF turned into CR LF.
void CheckWire(absl::string_view data, absl::string_view wire) {
  std::string want;  // data with bare LF -> CR LF, final CR LF ensured.
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) want += '\r';
    want += data[i];
  }
  if (!data.empty() && data.back() != '\n') want += "\r\n";
  std::string unstuffed;
  bool line_start = true;
  for (size_t i = 0; i < wire.size(); ++i) {
    if (line_start && wire[i] == '.') {
      Check(i + 1 < wire.size() && wire[i + 1] == '.',
            "a line starting with '.' is doubled");
      ++i;
    }
    unstuffed += wire[i];
    if (wire[i] == '\n') Check(i > 0 && wire[i - 1] == '\r', "no bare LF");
    line_start = wire[i] == '\n';
  }
  Check(unstuffed == want, "wire form decodes to the data");
  Check(wire.empty() ||
            (wire.size() >= 2 && wire.substr(wire.size() - 2) == "\r\n"),
        "wire form ends with CR LF");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  absl::string_view file(reinterpret_cast<const char*>(bytes), size);
  auto index = IndexMbox(file, 1 << 20);
  if (!index.ok()) return 0;
  const size_t max_bytes = size > 0 ? 1 + bytes[0] % 97 : 1;
  uint64_t covered = 0;
  for (const MboxMessage& m : *index) {
    Check(m.raw_offset == covered, "raw extents tile the file");
    covered += m.raw_size;
    Check(m.data_offset > m.raw_offset, "data follows the From_ line");
    Check(m.data_offset + m.data_size <= m.raw_offset + m.raw_size,
          "data inside the raw extent");
    Check(m.data_size > 0, "no empty message");
    for (char c : m.uidl_view()) {
      Check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'),
            "UIDL is lowercase hex");
    }
    absl::string_view data = file.substr(m.data_offset, m.data_size);
    Check(m.wire_size == WireSize(data), "LIST size == WireSize");
    const std::string wire = Encode(data, false, max_bytes);
    CheckWire(data, wire);
    Check(EncodeInto(data, 1 + max_bytes) == wire, "NextInto agrees");
    uint64_t dots = 0;
    for (size_t i = 0; i < data.size(); ++i) {
      dots += data[i] == '.' && (i == 0 || data[i - 1] == '\n');
    }
    Check(wire.size() == m.wire_size + dots,
          "LIST size == RETR octets before dot-stuffing");
    if (m.wire_clean()) {
      Check(wire == data, "wire-clean data is its own wire form");
      Check(Encode(data, true, max_bytes) == wire, "fast path agrees");
    }
    for (uint64_t lines : {0ull, 1ull, 3ull}) {
      const uint64_t len = TopLength(data, lines);
      Check(len <= data.size(), "TOP within the message");
      const std::string top = Encode(data.substr(0, len), false, max_bytes);
      if (len < data.size()) {
        Check(wire.compare(0, top.size(), top) == 0, "TOP is a prefix of RETR");
      }
    }
  }
  Check(covered == size, "raw extents cover the file");
  return 0;
}
