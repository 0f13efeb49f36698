// A log-linear latency histogram (HDR-like) with fixed memory.
//
// Values are unsigned 64-bit integers (popgate-flood records microseconds).
// Values below 2^(kSubBucketBits+1) get one exact bucket each; above that, each
// power of two is split into 2^kSubBucketBits equal buckets, so a reported
// percentile is within a relative error of 2^-kSubBucketBits (0.78%) of the
// true nearest-rank value. Values above kMaxValue are clamped (and counted in
// clamped()) so memory never depends on what is recorded.
//
// Threading: not thread-safe; each engine thread records into its own
// histogram and the results are merged (Merge) at the end or for progress.
#ifndef POPGATE_TOOLS_FLOOD_HISTOGRAM_H_
#define POPGATE_TOOLS_FLOOD_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace popgate::flood {

class Histogram {
 public:
  // 128 sub-buckets per power of two: < 1% error, a few thousand buckets.
  static constexpr int kSubBucketBits = 7;
  // 2^40 us is about 12.7 days: far beyond any --duration.
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 40) - 1;

  Histogram();

  void Record(uint64_t value) { RecordN(value, 1); }
  void RecordN(uint64_t value, uint64_t n);
  // Adds every sample of `other`. Merging is exact: Merge(a, b) gives the
  // same buckets as recording a's and b's samples into one histogram.
  void Merge(const Histogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  // 0 when empty.
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const;
  uint64_t clamped() const { return clamped_; }

  // Nearest-rank percentile: the smallest recorded value v such that at least
  // `percentile`% of the samples are <= v, reported as the highest value of
  // v's bucket (never above max()). 0 when empty. `percentile` in [0, 100].
  uint64_t ValueAtPercentile(double percentile) const;

  // Compact text form "count min max sum clamped idx:n idx:n ..." listing only
  // non-empty buckets; used to ship results from --processes workers.
  std::string Serialize() const;
  // InvalidArgument on any malformed token or out-of-range bucket index.
  static absl::StatusOr<Histogram> Deserialize(absl::string_view text);

  // Bucket geometry, exposed for tests.
  static size_t IndexOf(uint64_t value);
  static uint64_t LowestOf(size_t index);
  static uint64_t HighestOf(size_t index);
  static size_t BucketCount();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
  // Sum of (clamped) values, for the mean; 2^40 * 2^23 samples fit in 64 bits.
  uint64_t sum_ = 0;
  uint64_t clamped_ = 0;
};

}  // namespace popgate::flood

#endif  // POPGATE_TOOLS_FLOOD_HISTOGRAM_H_
