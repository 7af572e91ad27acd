#ifndef CLAA_ENGINE_UTIL_STATUS_MACROS_H_
#define CLAA_ENGINE_UTIL_STATUS_MACROS_H_

// Abseil does not export RETURN_IF_ERROR / ASSIGN_OR_RETURN, so we keep our own.
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CLAA_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status claa_status_ = (expr);           \
    if (!claa_status_.ok()) return claa_status_;    \
  } while (0)

#define CLAA_STATUS_CONCAT_INNER_(a, b) a##b
#define CLAA_STATUS_CONCAT_(a, b) CLAA_STATUS_CONCAT_INNER_(a, b)

#define CLAA_ASSIGN_OR_RETURN(lhs, expr) \
  CLAA_ASSIGN_OR_RETURN_IMPL_(CLAA_STATUS_CONCAT_(claa_statusor_, __LINE__), lhs, expr)

#define CLAA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return statusor.status();          \
  lhs = std::move(statusor).value()

#endif  // CLAA_ENGINE_UTIL_STATUS_MACROS_H_
