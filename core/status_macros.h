// RETURN_IF_ERROR / ASSIGN_OR_RETURN with the names later abseil releases use.
// Abseil 20220623 (Debian 12) ships neither; swap these out when it does.
#ifndef POPGATE_CORE_STATUS_MACROS_H_
#define POPGATE_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define POPGATE_STATUS_CONCAT_INNER_(a, b) a##b
#define POPGATE_STATUS_CONCAT_(a, b) POPGATE_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    if (absl::Status popgate_status_ = (expr);     \
        !popgate_status_.ok()) {                   \
      return popgate_status_;                      \
    }                                              \
  } while (0)

#define POPGATE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr)                                         \
  POPGATE_ASSIGN_OR_RETURN_IMPL_(                                           \
      POPGATE_STATUS_CONCAT_(popgate_statusor_, __LINE__), lhs, expr)

#endif  // POPGATE_CORE_STATUS_MACROS_H_
