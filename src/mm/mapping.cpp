// Mapping (vma): creation in File::map, teardown per R13.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <chrono>
#include <thread>

#include "mm/engine_core.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "testing/sched.hpp"
#include "os/uffd.hpp"
#include "os/sys_error.hpp"

namespace faultline {
namespace detail {

MappingImpl::MappingImpl(std::shared_ptr<EngineCore> c, std::shared_ptr<FileImpl> f, uintptr_t s,
                         size_t l, uint64_t pg, bool w, bool sh, Userfaultfd* u)
    : core(std::move(c)),
      file(std::move(f)),
      start(s),
      len(l),
      pgoff(pg),
      npages(l >> file->page_shift()),
      writable(w),
      shared(sh),
      uffd(u) {}

bool MappingImpl::async_wp() const { return tracks_writes() && file->async(); }

MappingImpl::~MappingImpl() { teardown(); }

uintptr_t MappingImpl::addr_of(uint64_t pg) const {
  return start + ((pg - pgoff) << file->page_shift());
}

void MappingImpl::teardown() {
  std::call_once(torn_down_, [this] {
    // Stop new handler references, then wait for the in-flight ones: a
    // handler never works on a view that is gone (or on a new view that
    // reuses its addresses).
    core->remove_mapping(this);
    // (Polled with back-off: a handler's decrement is its last access to the
    // view, engine.cpp dispatch, so it cannot notify.)
    for (unsigned i = 0; inflight.load(std::memory_order_acquire) != 0; ++i) {
      if (i < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(i < 2000 ? 50 : 1000));
    }
    // Async dirty tracking: the written PTEs are the only record of stores
    // through this view; make those pages dirty before munmap drops them.
    if (async_wp()) {
      file->harvest_view(*this);
      // Out of the reverse map before munmap: no scan or protect may reach
      // the address range once it is gone (it could be reused). Its PTEs
      // are zapped and its faults are no longer served, so nothing is missed.
      file->remove_mapping(this);
    }
    if (!FL_RULE(13)) {  // breaker: unregister first, the view stays mapped a while
      uffdio_range r{start, len};
      (void)::ioctl(uffd->fd(), UFFDIO_UNREGISTER, &r);  // the breaker's wrong order: any result
    }
    FL_POINT("mapping.before_munmap");
    // R13: munmap, which also unregisters; never UNREGISTER while mapped.
    // R15: in the same step the view leaves the reverse map (under its lock):
    // no rmap walk reaches the range once another mmap may own it.
    // (munmap of the view's own page-aligned range fails only for a bad
    // range: nothing to undo.)
    file->unmap_view(this, [this] { (void)::munmap(reinterpret_cast<void*>(start), len); });
    core->mapping_unmapped(this);
    // R13: then wake any thread still waiting on the range: its retry finds no
    // mapping (SIGSEGV, as for any access to an unmapped range). UFFDIO_WAKE
    // fails only for a range it rejects (EINVAL; the view's own range was
    // accepted by UFFDIO_REGISTER) or a uffd closed meanwhile (the engine
    // closing: closing the uffd wakes every waiter): nothing left to do.
    if (!core->closed()) (void)uffd->wake(start, len);
  });
}

}  // namespace detail

Mapping::Mapping(std::shared_ptr<detail::MappingImpl> impl) : impl_(std::move(impl)) {
  addr_ = reinterpret_cast<std::byte*>(impl_->start);
  len_ = impl_->len;
  off_ = impl_->pgoff << impl_->file->page_shift();
}

Mapping::~Mapping() { unmap(); }

Mapping::Mapping(Mapping&& o) noexcept
    : impl_(std::move(o.impl_)), addr_(o.addr_), len_(o.len_), off_(o.off_) {
  o.addr_ = nullptr;
  o.len_ = 0;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    unmap();
    impl_ = std::move(o.impl_);
    addr_ = o.addr_;
    len_ = o.len_;
    off_ = o.off_;
    o.addr_ = nullptr;
    o.len_ = 0;
  }
  return *this;
}

void Mapping::msync(void* addr, std::size_t len, int flags) {
  if (!impl_) detail::throw_errno(ENOMEM, "faultline: msync of an unmapped view");
  auto& m = *impl_;
  detail::throw_if_error(m.core->check_open());
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  const size_t ps = m.file->page_size();
  if ((a & (ps - 1)) || (flags & ~(MS_SYNC | MS_ASYNC | MS_INVALIDATE)) ||
      ((flags & MS_SYNC) && (flags & MS_ASYNC)))
    detail::throw_errno(EINVAL, "faultline: msync with an unaligned address or bad flags");
  if (len == 0) return;
  if (a < m.start || a + len < a || a + len > m.start + m.len)
    detail::throw_errno(ENOMEM, "faultline: msync range outside the view");
  if (!m.shared) return;  // private copies are never written back
  const uint64_t first = m.pgoff + ((a - m.start) >> m.file->page_shift());
  const uint64_t last = m.pgoff + ((a + len - m.start + ps - 1) >> m.file->page_shift());
  if (flags & MS_ASYNC) {
    m.core->kick_flusher();  // start it; the flusher writes dirty pages back
    return;
  }
  m.file->writeback(first, last);
  if (int e = m.file->check_wb_error(*m.errseq))
    detail::throw_errno(-e, "faultline: msync write-back of " + m.file->key);
}

void Mapping::advise(Advice advice) {
  if (!impl_) detail::throw_errno(EINVAL, "faultline: advise on an unmapped view");
  impl_->advice.store(static_cast<int>(advice), std::memory_order_relaxed);
}

void Mapping::unmap() {
  if (impl_) impl_->teardown();
  impl_.reset();
  addr_ = nullptr;
  len_ = 0;
}

}  // namespace faultline
