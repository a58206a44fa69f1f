// faultline CLI — throwing std::system_error from errno with context (a path,
// the failing call). what() reads "<context>: <strerror>".
#pragma once
#include <cerrno>
#include <string>
#include <system_error>

namespace faultline::cli {

[[noreturn]] inline void throw_errno(int err, const std::string& context) {
  throw std::system_error(err, std::generic_category(), context);
}
[[noreturn]] inline void throw_errno(const std::string& context) { throw_errno(errno, context); }

}  // namespace faultline::cli
