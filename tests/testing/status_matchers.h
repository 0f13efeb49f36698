// IsOk() and StatusIs(code) matchers with the names later abseil releases use.
#ifndef POPGATE_TESTS_TESTING_STATUS_MATCHERS_H_
#define POPGATE_TESTS_TESTING_STATUS_MATCHERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace popgate::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") { return GetStatus(arg).ok(); }

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  return GetStatus(arg).code() == code;
}

}  // namespace popgate::testing

#endif  // POPGATE_TESTS_TESTING_STATUS_MATCHERS_H_
