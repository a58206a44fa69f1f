// Internal: the core's error convention (issue 13 item 3), and the public
// facade's one way to throw.
//
// The core (src/mm, src/os) reports errors the way the kernel, liburing and
// the backends (faultline/backend.hpp) do: a function that can fail returns 0
// or -errno (int), or a count or -errno (ssize_t), and says so in its comment.
// A core entry point the public facade calls returns a Status: the -errno and
// what failed, the message of the exception the facade throws (a value and an
// error travelling together). Only the facade (File, Engine, Mapping in
// src/mm/file.cpp, engine.cpp, mapping.cpp) throws std::system_error:
// throw_if_error(status), or throw_errno for its own argument checks.
//
// The one exception: constructors of objects that own OS resources
// (FileImpl: its memfd and alias view; EngineCore: its userfaultfd, eventfd
// and epoll set; Userfaultfd) throw, so that no object exists half made
// (the alternative is a two-phase init at every construction). They throw
// only while nothing else is held; the facade lets their exceptions through.
#pragma once
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

namespace faultline::detail {

[[noreturn]] inline void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}
[[noreturn]] inline void throw_errno(const std::string& what) { throw_errno(errno, what); }

/// A core entry point's result: ok, or -errno and what failed (the message
/// the facade's std::system_error carries, as it was thrown before).
class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(int neg_errno, std::string what) : err_(neg_errno), what_(std::move(what)) {}
  /// -errno as a failed syscall left it.
  static Status from_errno(std::string what) { return {-errno, std::move(what)}; }
  bool ok() const { return err_ == 0; }
  int err() const { return err_; }  // 0 or -errno
  const std::string& what() const { return what_; }

 private:
  int err_ = 0;
  std::string what_;
};

/// The facade: throws s as std::system_error(-s.err(), s.what()); nothing if ok.
inline void throw_if_error(const Status& s) {
  if (!s.ok()) throw_errno(-s.err(), s.what());
}

}  // namespace faultline::detail
