// File: the public handle onto a FileImpl, with its own errseq cursor (R8).
// Part of the public facade: the core's errors (Status, -errno) become
// std::system_error here (os/sys_error.hpp).
#include "faultline/file.hpp"

#include <atomic>

#include <sys/mman.h>

#include "mm/engine_core.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "os/sys_error.hpp"

namespace faultline {

struct FileCursor {
  std::atomic<uint64_t> errseq{0};  // the File's errseq this handle has seen (R8)
};

File::File(std::shared_ptr<FileImpl> impl)
    : impl_(std::move(impl)), cursor_(std::make_shared<FileCursor>()) {
  cursor_->errseq.store(impl_->errseq_sample());  // R8: an unseen error is reported here too
}

File::File() = default;
File::~File() = default;
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;

FileImpl& File::impl() const {
  if (!impl_) detail::throw_errno(EBADF, "faultline: File is closed");
  detail::throw_if_error(impl_->core->check_open());
  return *impl_;
}

uint64_t File::size() const { return impl().i_size(); }
std::size_t File::page_size() const { return impl().page_size(); }
bool File::writable() const { return impl().backend().writable(); }
Stats File::stats() const {
  Stats s = impl().stats.snapshot();
  s.dirty_pages = impl().nr_dirty();
  s.cached_pages = impl().nr_cached();
  return s;
}

std::size_t File::read(uint64_t off, std::span<std::byte> buf) {
  std::size_t done = 0;
  detail::throw_if_error(impl().read(off, buf, done));
  return done;
}

std::size_t File::write(uint64_t off, std::span<const std::byte> buf) {
  detail::throw_if_error(impl().write(off, buf));
  return buf.size();
}

void File::sync() {
  FileImpl& f = impl();
  f.writeback_all();  // the backend must reach i_size even if its tail pages are clean
  // R8: report an error this handle has not seen, once.
  if (int e = f.check_wb_error(cursor_->errseq))
    detail::throw_errno(-e, "faultline: write-back of " + f.key);
}

void File::sync(uint64_t off, uint64_t len) {
  FileImpl& f = impl();
  if (len == 0 || off + len < off) detail::throw_errno(EINVAL, "faultline: sync of a bad range");
  const auto [first, last] = f.pages_of(off, len);  // never a wrapped, empty range (defect 5)
  (void)f.writeback(first, last);  // its errors are in errseq, reported once below (R8)
  if (int e = f.check_wb_error(cursor_->errseq))
    detail::throw_errno(-e, "faultline: write-back of " + f.key);
}

void File::fsync() {
  sync();
  if (int e = impl().backend().sync(); e < 0)
    detail::throw_errno(-e, "faultline: backend sync of " + impl().key);
}

void File::truncate(uint64_t new_size) { detail::throw_if_error(impl().truncate(new_size)); }

void File::punch_hole(uint64_t off, uint64_t len) {
  detail::throw_if_error(impl().punch_hole(off, len));
}

std::vector<uint64_t> File::invalidate(uint64_t off, uint64_t len) {
  std::vector<uint64_t> failed;
  detail::throw_if_error(impl().invalidate(off, len, failed));
  return failed;
}

namespace {
/// map()'s arguments checked against File f: EINVAL, EROFS with the reason.
/// Returns the view's length (len rounded up to f's pages).
uint64_t check_map(const FileImpl& f, uint64_t off, std::size_t len, bool writable, bool shared) {
  const uint64_t ps = f.page_size();
  if (len == 0) detail::throw_errno(EINVAL, "faultline: map of zero length");
  if (off & (ps - 1))
    detail::throw_errno(EINVAL, f.huge() ? "faultline: map offset not 2 MiB aligned (a 2 MiB-frame File)"
                                         : "faultline: map offset not page aligned");
  const uint64_t rlen = (static_cast<uint64_t>(len) + ps - 1) & ~(ps - 1);
  if (rlen < len || ((off + rlen) >> f.page_shift()) > detail::PageIndex::kMaxPages)
    detail::throw_errno(EINVAL, "faultline: map range too large");
  if (writable && shared && !f.backend().writable())
    detail::throw_errno(EROFS, "faultline: writable shared view of read-only " + f.key);
  // hugetlb PUNCH_HOLE drops private copy-on-write copies (probed on 6.18:
  // DESIGN F5 holds for shmem only), so punch_hole / invalidate would lose a
  // private view's own stores: refused.
  if (f.huge() && !shared)
    detail::throw_errno(EINVAL, "faultline: private views of a 2 MiB-frame File are not "
                                "supported (hugetlb hole punch drops private copies)");
  return rlen;
}

/// mmaps [off, off+rlen) of f's memfd as a view (not yet registered), never
/// inherited by a fork. Throws (nothing left mapped).
void* mmap_view(const FileImpl& f, uint64_t off, uint64_t rlen, bool writable, bool shared) {
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  // hugetlb: a view never allocates (holes fault to the engine), so no pool
  // reservation (MAP_NORESERVE); and it is made without PROT_WRITE first,
  // because a writable mmap of a hugetlbfs file extends its size to the
  // view's end (the memfd must stay i_size rounded up: SIGBUS past it).
  const int first_prot = f.huge() ? PROT_READ : prot;
  void* a = ::mmap(nullptr, rlen, first_prot,
                   (shared ? MAP_SHARED : MAP_PRIVATE) | (f.huge() ? MAP_NORESERVE : 0), f.memfd(),
                   static_cast<off_t>(off));
  if (a == MAP_FAILED) detail::throw_errno("faultline: mmap of a view");
  if (first_prot != prot && ::mprotect(a, rlen, prot) != 0) {
    const int e = errno;
    ::munmap(a, rlen);  // undoing our own fresh mmap: cannot fail
    detail::throw_errno(e, "faultline: mprotect of a view");
  }
  // No fork inherits a view (an unregistered child copy would bypass us).
  if (::madvise(a, rlen, MADV_DONTFORK) != 0) {
    const int e = errno;
    ::munmap(a, rlen);  // as above
    detail::throw_errno(e, "faultline: madvise(MADV_DONTFORK)");
  }
  return a;
}
}  // namespace

Mapping File::map(uint64_t off, std::size_t len, Access access, Sharing sharing) {
  FileImpl& f = impl();
  const bool writable = access == Access::ReadWrite;
  const bool shared = sharing == Sharing::Shared;
  const uint64_t rlen = check_map(f, off, len, writable, shared);
  void* a = mmap_view(f, off, rlen, writable, shared);
  uint64_t modes = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
  if (writable && shared) modes |= UFFDIO_REGISTER_MODE_WP;  // first store must fault
  // Async dirty tracking: shared writable views go on the WP_ASYNC uffd (a
  // store to a protected page is resolved by the kernel, found by scan).
  // (An async File's open made the async uffd.)
  detail::Userfaultfd* u = writable && shared && f.async() ? &f.core->async_uffd() : &f.core->uffd;
  if (int e = u->register_range(a, rlen, modes)) {
    ::munmap(a, rlen);  // as in mmap_view
    detail::throw_errno(-e, "faultline: UFFDIO_REGISTER");
  }
  auto m = std::make_shared<detail::MappingImpl>(f.core, impl_, reinterpret_cast<uintptr_t>(a),
                                                 rlen, off >> f.page_shift(), writable, shared, u);
  // R8: msync reports through this handle's cursor, as the kernel's msync
  // checks the vma's struct file (shared: the view may outlive the handle).
  m->errseq = std::shared_ptr<std::atomic<uint64_t>>(cursor_, &cursor_->errseq);
  f.add_mapping(m.get());
  f.core->add_mapping(m);
  return Mapping(std::move(m));
}

void File::close() {
  impl_.reset();
  cursor_.reset();
}

}  // namespace faultline
