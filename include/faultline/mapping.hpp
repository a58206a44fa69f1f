// faultline — Mapping: a registered view of a File (the kernel's vma).
//
// Loads and stores on [data(), data()+size()) are served by the engine. A view
// may extend past EOF; access beyond the page holding EOF gets SIGBUS (see
// faultline/guarded.hpp to turn that into an error return). A backend read
// error, or a store page_mkwrite refused, also gets SIGBUS for the faulting
// access; that page keeps raising SIGBUS in this view until the range is
// invalidated, punched or truncated. The si_code is BUS_MCEERR_AR on kernels
// that report UFFDIO_POISON as a hardware error and BUS_ADRERR on others
// (6.18 among them), where it does not tell an I/O error from an access past
// EOF: Stats::sigbus_sent counts the errors. Last resort: if the kernel
// refuses the poison 8 times in a row for one page of one view (never seen on
// 6.18), the access is left waiting instead, until the view is unmapped or
// the page is installed again, and EngineConfig::log says so.
//
// RAII: destruction (or unmap()) waits for in-flight faults on the view, then
// munmaps it (which also unregisters it) and wakes any waiters (DESIGN R13).
// Views carry MADV_DONTFORK: a forked child does not inherit them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace faultline {

namespace detail {
class MappingImpl;
}

enum class Access { ReadOnly, ReadWrite };
enum class Sharing { Shared, Private };
/// Access-pattern hints for a view (madvise-like): Sequential reads
/// readahead_max_pages per fault and grows write-around at once; Random turns
/// both off and reads only the faulting page (cached neighbours are still
/// mapped); Normal adapts to what the faults show (EngineConfig::
/// fault_around_pages).
enum class Advice { Normal, Sequential, Random };

class Mapping {
 public:
  Mapping() = default;
  ~Mapping();
  Mapping(Mapping&&) noexcept;
  Mapping& operator=(Mapping&&) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  std::byte* data() const noexcept { return addr_; }
  std::size_t size() const noexcept { return len_; }
  uint64_t offset() const noexcept { return off_; }
  bool valid() const noexcept { return impl_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  /// msync(2) for this view: writes the dirty pages of [addr, addr+len) back.
  /// flags: MS_SYNC (write and wait; throws std::system_error with a
  /// write-back error this view has not yet seen, R8) or MS_ASYNC (start it in
  /// the background and return). EINVAL for an unaligned addr or bad flags,
  /// ENOMEM for a range outside the view, as msync(2).
  void msync(void* addr, std::size_t len, int flags);

  /// Steers readahead and write-around for this view.
  void advise(Advice advice);

  /// Tears the view down now (idempotent).
  void unmap();

 private:
  friend class File;
  explicit Mapping(std::shared_ptr<detail::MappingImpl> impl);
  std::shared_ptr<detail::MappingImpl> impl_;
  std::byte* addr_ = nullptr;
  std::size_t len_ = 0;
  uint64_t off_ = 0;
};

}  // namespace faultline
