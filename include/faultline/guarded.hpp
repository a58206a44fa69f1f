// faultline — turning SIGBUS inside a scope into an error return.
//
// mmap users hate SIGBUS: guarded(fn) runs fn and, if fn's thread raises
// SIGBUS (an access past EOF, BUS_ADRERR; a backend I/O error or a refused
// page_mkwrite: BUS_MCEERR_AR, or BUS_ADRERR on kernels such as 6.18 that do
// not report UFFDIO_POISON as a hardware error), returns a BusError instead
// of dying. It is
// thread-safe (the jump buffer is per thread), nests, and chains any SIGBUS
// handler that was installed before: a SIGBUS outside a guarded scope goes to
// that handler (or the default action). Only a SIGBUS the kernel raises for an
// access of the guarded thread is caught; an asynchronous one (kill -BUS,
// tgkill, sigqueue) gets what it would get without the guard: the previous
// handler, ignored if SIGBUS was ignored, else the default action (the
// process ends). If fn throws, the exception propagates and the scope ends.
// An access the engine cannot answer with SIGBUS at all (mapping.hpp: the
// kernel refused the poison again and again) waits instead of returning.
//
// Caveat (as with any siglongjmp): objects with destructors created inside fn
// after the faulting access began are not destroyed; keep fn's body to plain
// loads and stores, or memcpy.
#pragma once
#include <functional>
#include <optional>

namespace faultline {

struct BusError {
  void* addr = nullptr;  ///< the faulting address
  int code = 0;          ///< si_code: BUS_ADRERR (past EOF; on 6.18 also an I/O error or a refused page_mkwrite), BUS_MCEERR_AR (those two, on kernels that report poison as a hardware error)
};

[[nodiscard]] std::optional<BusError> guarded(const std::function<void()>& fn);

}  // namespace faultline
