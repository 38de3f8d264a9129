// Status helpers shared by every module. Debian 12's abseil has Status and
// StatusOr but not the propagation macros, so they live here.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SR_CONCAT_INNER(a, b) a##b
#define SR_CONCAT(a, b) SR_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status sr_status_ = (expr);               \
    if (!sr_status_.ok()) return sr_status_;          \
  } while (0)

#define SR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  SR_ASSIGN_OR_RETURN_IMPL(SR_CONCAT(sr_statusor_, __LINE__), lhs, expr)
