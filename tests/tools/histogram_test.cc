// Histogram: bucket geometry, percentiles against a sorted-vector oracle
// within the bucket error bound, merge, and the worker wire form.
#include "tools/flood/histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace popgate::flood {
namespace {

constexpr double kRelativeError = 1.0 / (1 << Histogram::kSubBucketBits);

// Nearest-rank percentile of a sorted vector.
uint64_t Oracle(const std::vector<uint64_t>& sorted, double p) {
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<uint64_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void ExpectWithinBound(const Histogram& h, std::vector<uint64_t> values) {
  std::sort(values.begin(), values.end());
  for (double p : {0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const uint64_t want = Oracle(values, p);
    const uint64_t got = h.ValueAtPercentile(p);
    // Same bucket as the oracle: never below it, above by < one bucket.
    EXPECT_GE(got, want) << "p" << p;
    EXPECT_LE(got - want, static_cast<uint64_t>(want * kRelativeError) + 1)
        << "p" << p << " want " << want << " got " << got;
  }
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.count(), values.size());
}

TEST(HistogramTest, IndexIsMonotonicAndContiguousAcrossOctaves) {
  size_t last = 0;
  for (uint64_t v = 0; v < (1u << 16); ++v) {
    const size_t i = Histogram::IndexOf(v);
    ASSERT_TRUE(i == last || i == last + 1) << v;
    ASSERT_LE(Histogram::LowestOf(i), v);
    ASSERT_GE(Histogram::HighestOf(i), v);
    last = i;
  }
}

TEST(HistogramTest, BucketWidthWithinRelativeError) {
  for (size_t i = 1; i < Histogram::BucketCount(); ++i) {
    const uint64_t lo = Histogram::LowestOf(i), hi = Histogram::HighestOf(i);
    ASSERT_EQ(Histogram::IndexOf(lo), i);
    ASSERT_EQ(Histogram::IndexOf(hi), i);
    ASSERT_LE(static_cast<double>(hi - lo), lo * kRelativeError) << i;
  }
  EXPECT_EQ(Histogram::IndexOf(Histogram::kMaxValue),
            Histogram::BucketCount() - 1);
}

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.ValueAtPercentile(99), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.ValueAtPercentile(50), 50u);
  EXPECT_EQ(h.ValueAtPercentile(99), 99u);
  EXPECT_EQ(h.ValueAtPercentile(100), 100u);
  EXPECT_EQ(h.ValueAtPercentile(0), 1u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(HistogramTest, UniformMatchesOracle) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint64_t> dist(0, 10'000'000);
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100000; ++i) {
    values.push_back(dist(rng));
    h.Record(values.back());
  }
  ExpectWithinBound(h, values);
}

TEST(HistogramTest, HeavyTailMatchesOracle) {
  // Latency-like: mostly ~300us with a long tail up to seconds.
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> dist(5.7, 1.5);
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100000; ++i) {
    values.push_back(static_cast<uint64_t>(dist(rng)));
    h.Record(values.back());
  }
  ExpectWithinBound(h, values);
}

TEST(HistogramTest, SingleValueEveryPercentileIsIt) {
  Histogram h;
  h.RecordN(123456789, 7);
  for (double p : {0.0, 50.0, 100.0}) {
    EXPECT_EQ(h.ValueAtPercentile(p), 123456789u);  // clamped to max
  }
}

TEST(HistogramTest, ClampsHugeValues) {
  Histogram h;
  h.Record(UINT64_MAX);
  EXPECT_EQ(h.clamped(), 1u);
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> dist(1e-4);
  Histogram a, b, all;
  std::vector<uint64_t> values;
  for (int i = 0; i < 50000; ++i) {
    const uint64_t v = static_cast<uint64_t>(dist(rng));
    values.push_back(v);
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  Histogram merged;
  merged.Merge(a);
  merged.Merge(b);
  EXPECT_EQ(merged.Serialize(), all.Serialize());
  ExpectWithinBound(merged, values);
}

TEST(HistogramTest, MergeIntoEmptyKeepsMin) {
  Histogram a, empty;
  a.Record(500);
  a.Record(900);
  empty.Merge(a);
  EXPECT_EQ(empty.min(), 500u);
  a.Merge(Histogram());
  EXPECT_EQ(a.min(), 500u);
  EXPECT_EQ(a.count(), 2u);
}

TEST(HistogramTest, SerializeRoundTrips) {
  Histogram h;
  for (uint64_t v : {0u, 1u, 255u, 256u, 1000u, 1000000u}) h.Record(v);
  absl::StatusOr<Histogram> back = Histogram::Deserialize(h.Serialize());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Serialize(), h.Serialize());
  EXPECT_EQ(back->ValueAtPercentile(50), h.ValueAtPercentile(50));
}

TEST(HistogramTest, DeserializeRejectsGarbage) {
  EXPECT_FALSE(Histogram::Deserialize("").ok());
  EXPECT_FALSE(Histogram::Deserialize("1 0 0 0 0").ok());  // count != sum
  EXPECT_FALSE(Histogram::Deserialize("1 5 5 5 0 999999:1").ok());
  EXPECT_FALSE(Histogram::Deserialize("1 5 5 5 0 5:x").ok());
  EXPECT_FALSE(Histogram::Deserialize("a 5 5 5 0").ok());
}

}  // namespace
}  // namespace popgate::flood
