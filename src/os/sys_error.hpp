// Internal: throwing std::system_error with an errno and context.
#pragma once
#include <cerrno>
#include <string>
#include <system_error>

namespace faultline::detail {

[[noreturn]] inline void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}
[[noreturn]] inline void throw_errno(const std::string& what) { throw_errno(errno, what); }

}  // namespace faultline::detail
