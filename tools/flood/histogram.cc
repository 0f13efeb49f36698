#include "tools/flood/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace popgate::flood {
namespace {

constexpr uint64_t kHalf = uint64_t{1} << Histogram::kSubBucketBits;
// Values below 2 * kHalf map to themselves (exact buckets).
constexpr uint64_t kExactLimit = 2 * kHalf;

}  // namespace

// Index layout: [0, 2*kHalf) exact; then for shift s >= 1, values with
// bit-width kSubBucketBits+1+s map to s*kHalf + (v >> s), which lies in
// [(s+1)*kHalf, (s+2)*kHalf): contiguous, monotonic, kHalf buckets per octave.
size_t Histogram::IndexOf(uint64_t value) {
  value = std::min(value, kMaxValue);
  if (value < kExactLimit) return static_cast<size_t>(value);
  const int width = std::bit_width(value);
  const int shift = width - (kSubBucketBits + 1);
  return static_cast<size_t>(uint64_t(shift) * kHalf + (value >> shift));
}

uint64_t Histogram::LowestOf(size_t index) {
  if (index < kExactLimit) return index;
  const uint64_t shift = index / kHalf - 1;
  const uint64_t mantissa = index - shift * kHalf;
  return mantissa << shift;
}

uint64_t Histogram::HighestOf(size_t index) {
  if (index < kExactLimit) return index;
  const uint64_t shift = index / kHalf - 1;
  return LowestOf(index) + (uint64_t{1} << shift) - 1;
}

size_t Histogram::BucketCount() { return IndexOf(kMaxValue) + 1; }

Histogram::Histogram() : counts_(BucketCount(), 0) {}

void Histogram::RecordN(uint64_t value, uint64_t n) {
  if (n == 0) return;
  if (value > kMaxValue) {
    clamped_ += n;
    value = kMaxValue;
  }
  counts_[IndexOf(value)] += n;
  if (count_ == 0 || value < min_) min_ = value;
  max_ = std::max(max_, value);
  count_ += n;
  sum_ += value * n;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
  clamped_ += other.clamped_;
}

void Histogram::Clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = min_ = max_ = sum_ = clamped_ = 0;
}

double Histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_;
}

uint64_t Histogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // Nearest rank, at least 1: p0 is the minimum.
  uint64_t rank = static_cast<uint64_t>(std::ceil(percentile / 100.0 * count_));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(HighestOf(i), min_, max_);
  }
  return max_;  // Unreachable while counts_ sums to count_.
}

std::string Histogram::Serialize() const {
  std::string out =
      absl::StrCat(count_, " ", min_, " ", max_, " ", sum_, " ", clamped_);
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) absl::StrAppend(&out, " ", i, ":", counts_[i]);
  }
  return out;
}

absl::StatusOr<Histogram> Histogram::Deserialize(absl::string_view text) {
  std::vector<absl::string_view> tokens =
      absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (tokens.size() < 5) {
    return absl::InvalidArgumentError("histogram: too few fields");
  }
  Histogram h;
  uint64_t fields[5];
  for (int i = 0; i < 5; ++i) {
    if (!absl::SimpleAtoi(tokens[i], &fields[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram: bad number '", tokens[i], "'"));
    }
  }
  uint64_t total = 0;
  for (size_t t = 5; t < tokens.size(); ++t) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(tokens[t], absl::MaxSplits(':', 1));
    uint64_t index, n;
    if (!absl::SimpleAtoi(kv.first, &index) ||
        !absl::SimpleAtoi(kv.second, &n) || index >= h.counts_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram: bad bucket '", tokens[t], "'"));
    }
    h.counts_[index] += n;
    total += n;
  }
  if (total != fields[0]) {
    return absl::InvalidArgumentError("histogram: bucket sum != count");
  }
  h.count_ = fields[0];
  h.min_ = fields[1];
  h.max_ = fields[2];
  h.sum_ = fields[3];
  h.clamped_ = fields[4];
  return h;
}

}  // namespace popgate::flood
