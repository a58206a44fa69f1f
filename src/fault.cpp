// The fault path: userfaultfd MISSING / MINOR / WP events on a File's views.
//
// Read fault (DESIGN section 2): lock the faulting page (R1), recheck that it
// is still this page and below EOF (R2), try-lock a window of neighbours
// (R12), fill what is not uptodate (R10), recheck EOF, install with
// UFFDIO_CONTINUE (write-protected where the first store must be noticed),
// and only then unlock.
#include <algorithm>
#include <cerrno>
#include <sys/mman.h>
#include <vector>

#include "engine_core.hpp"
#include "file_impl.hpp"
#include "mapping_impl.hpp"

namespace faultline::detail {

void FileImpl::wake(MappingImpl& m, uintptr_t addr) {
  core->uffd.wake(addr & ~(uintptr_t{page_size()} - 1), page_size());
  (void)m;
}

void FileImpl::send_sigbus(MappingImpl& m, uintptr_t addr) {
  const uintptr_t a = addr & ~(uintptr_t{page_size()} - 1);
  // POISON refuses any PTE marker, WP markers included: clear it first
  // (DESIGN section 2), without waking the thread.
  if (m.tracks_writes()) core->uffd.writeprotect(a, page_size(), false, true);
  int e = core->uffd.poison(a, page_size());
  if (e == EEXIST && m.shared) {
    // A present PTE (a store to an installed page was refused): drop this
    // view's PTE — the frame stays in the memfd — then poison.
    ::madvise(reinterpret_cast<void*>(a), page_size(), MADV_DONTNEED);
    if (m.tracks_writes()) core->uffd.writeprotect(a, page_size(), false, true);
    e = core->uffd.poison(a, page_size());
  }
  if (e == 0) count(&Counters::sigbus_sent);
  else wake(m, addr);
}

void FileImpl::handle_fault(MappingImpl& m, uintptr_t addr, uint64_t flags) {
  const uint64_t pg = m.pgoff + ((addr - m.start) >> page_shift_);
  if (flags & UFFD_PAGEFAULT_FLAG_WP) {
    count(&Counters::wp_faults);
    wp_fault(m, pg, addr);
    return;
  }
  count((flags & UFFD_PAGEFAULT_FLAG_MINOR) ? &Counters::minor_faults : &Counters::missing_faults);
  read_fault(m, pg, addr, (flags & UFFD_PAGEFAULT_FLAG_WRITE) && m.tracks_writes());
}

void FileImpl::read_fault(MappingImpl& m, uint64_t pg, uintptr_t addr, bool write) {
  // Choose the window: a stream continuing where the last window ended grows
  // (readahead); anything else gets an aligned fault-around window.
  const auto& cfg = core->cfg;
  const uint64_t fa = std::max<uint64_t>(1, cfg.fault_around_pages);
  const bool sequential = m.ra_next.load(std::memory_order_relaxed) == pg;
  uint64_t ws, we;
  if (sequential) {
    const uint64_t cur = std::max<uint64_t>(fa, m.ra_pages.load(std::memory_order_relaxed));
    const uint64_t next = std::min<uint64_t>(std::max<uint64_t>(cfg.readahead_max_pages, 1), cur * 2);
    m.ra_pages.store(static_cast<uint32_t>(next), std::memory_order_relaxed);
    ws = pg;
    we = pg + next;
  } else {
    m.ra_pages.store(static_cast<uint32_t>(fa), std::memory_order_relaxed);
    ws = pg - (pg % fa);
    we = ws + fa;
  }
  ws = std::max(ws, m.pgoff);
  we = std::min(we, m.pgoff + m.npages);

  if (write) {
    // R5: page_mkwrite is called with the page unlocked.
    if (int e = backend().page_mkwrite(pg << page_shift_, page_size()); e < 0) {
      count(&Counters::mkwrite_errors);
      send_sigbus(m, addr);
      return;
    }
  }
  Page* p = index_.get(pg);
  for (;;) {
    const uint32_t gen = p->gen.load(std::memory_order_acquire);
    p->lock();  // R1: held from lookup until the PTE is installed
    if (p->gen.load(std::memory_order_acquire) != gen) {  // R2: not the page we looked up
      p->unlock();
      continue;
    }
    break;
  }
  if (pg >= eof_pages()) {  // R2: past EOF — the refault meets the memfd's end: SIGBUS
    p->unlock();
    wake(m, addr);
    return;
  }
  const bool installed = install_window(m, ws, we, pg, write);
  if (!installed) return;
  m.ra_next.store(we, std::memory_order_relaxed);
  if (sequential && we < m.pgoff + m.npages && we < eof_pages()) {
    // Asynchronous readahead: the faulting thread already runs; fill and map
    // the next window now, so the stream rarely waits for a round trip.
    const uint64_t next_we = std::min<uint64_t>(we + (we - ws), m.pgoff + m.npages);
    if (index_.get(we)->trylock()) {
      if (install_window(m, we, next_we, we, false)) m.ra_next.store(next_we, std::memory_order_relaxed);
    }
  }
}

bool FileImpl::install_window(MappingImpl& m, uint64_t ws, uint64_t we, uint64_t must, bool write) {
  // `must` is locked by the caller. R12: the others only try-locked, ascending.
  const uint64_t n = we - ws;
  std::vector<Page*> locked(n, nullptr);
  locked[must - ws] = index_.find(must);
  for (uint64_t i = 0; i < n; ++i) {
    if (ws + i == must) continue;
    Page* q = index_.get(ws + i);
    if (q->trylock()) locked[i] = q;
  }
  // EOF again, now that the window is locked (R2; truncate sets i_size before
  // it locks pages, R3).
  const uint64_t eof = eof_pages();
  for (uint64_t i = 0; i < n; ++i) {
    if (locked[i] && ws + i >= eof) {
      locked[i]->unlock();
      locked[i] = nullptr;
    }
  }
  bool must_ok = locked[must - ws] != nullptr;
  bool must_installed = false;
  bool must_error = false;

  // Fill contiguous runs of locked pages that are not uptodate (R10: the
  // index's flag decides, never MISSING vs MINOR).
  for (uint64_t i = 0; i < n;) {
    if (!locked[i] || locked[i]->test(PG_uptodate)) {
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && locked[j] && !locked[j]->test(PG_uptodate)) ++j;
    if (fill(ws + i, j - i) == 0) {
      count(&Counters::pages_filled, j - i);
      for (uint64_t k = i; k < j; ++k) {
        locked[k]->clear(PG_error);
        locked[k]->set(PG_uptodate);
      }
    } else {
      count(&Counters::read_errors);
      for (uint64_t k = i; k < j; ++k) {
        locked[k]->set(PG_error);
        if (ws + k == must) must_error = true;
        if (ws + k != must) {  // neighbours: just not installed
          locked[k]->unlock();
          locked[k] = nullptr;
        }
      }
    }
    i = j;
  }

  // Install runs of uptodate pages with one CONTINUE each; the mode is passed
  // explicitly every time (WP markers stick).
  auto wp_mode = [&](uint64_t i) {
    if (!m.tracks_writes()) return false;
    if (ws + i == must && write) return false;
    return !locked[i]->test(PG_dirty);  // clean pages: the first store must fault
  };
  if (must_ok && write && !must_error) {
    // R6: the page is marked dirty and made writable under its lock.
    if (locked[must - ws]->test_and_set(PG_dirty)) count(&Counters::pages_dirtied);
  }
  for (uint64_t i = 0; i < n;) {
    if (!locked[i] || (ws + i == must && must_error)) {
      ++i;
      continue;
    }
    const bool mode = wp_mode(i);
    uint64_t j = i + 1;
    while (j < n && locked[j] && !(ws + j == must && must_error) && wp_mode(j) == mode) ++j;
    uint64_t done = 0;
    const uint64_t len = (j - i) << page_shift_;
    while (done < len) {
      const auto r = core->uffd.continue_range(m.addr_of(ws + i) + done, len - done, mode);
      if (r.err == 0) {
        count(&Counters::pages_installed, (len - done) >> page_shift_);
        done = len;
      } else if (r.err == EAGAIN && r.done > 0) {  // stopped at a page already mapped
        count(&Counters::pages_installed, static_cast<uint64_t>(r.done) >> page_shift_);
        done += static_cast<uint64_t>(r.done);
      } else if (r.err == EEXIST || r.err == EAGAIN) {  // this page is mapped: skip it
        done += page_size();
      } else {
        break;  // EINVAL past the memfd's end, ENOENT view gone: give up the run
      }
    }
    // EEXIST counts: the page is mapped in this view either way.
    if (must >= ws + i && must < ws + j && ((must - ws - i) << page_shift_) < done)
      must_installed = true;
    i = j;
  }
  uint64_t around = 0;
  for (uint64_t i = 0; i < n; ++i)
    if (locked[i] && ws + i != must) ++around;
  count(&Counters::pages_fault_around, around);

  // Error on the faulting page: SIGBUS for this access, the rest of the file
  // keeps working.
  if (must_error) send_sigbus(m, m.addr_of(must));
  for (uint64_t i = 0; i < n; ++i)
    if (locked[i]) locked[i]->unlock();  // R1: unlock only after the PTEs are in
  if (!must_installed && !must_error) wake(m, m.addr_of(must));
  return must_installed;
}

void FileImpl::wp_fault(MappingImpl& m, uint64_t pg, uintptr_t addr) {
  Page* p = index_.find(pg);
  if (!p) {
    wake(m, addr);
    return;
  }
  // R5: page_mkwrite with the page unlocked; the backend may refuse.
  if (int e = backend().page_mkwrite(pg << page_shift_, page_size()); e < 0) {
    count(&Counters::mkwrite_errors);
    send_sigbus(m, addr);
    return;
  }
  const uint32_t gen = p->gen.load(std::memory_order_acquire);
  p->lock();
  // R5: recheck under the lock — still this page, uptodate, below EOF — else
  // let the access retry the whole fault.
  if (p->gen.load(std::memory_order_acquire) != gen || !p->test(PG_uptodate) ||
      pg >= eof_pages()) {
    p->unlock();
    wake(m, addr);
    return;
  }
  // R6: mark dirty and make the PTE writable under the lock, then unlock.
  if (p->test_and_set(PG_dirty)) count(&Counters::pages_dirtied);
  core->uffd.writeprotect(addr & ~(uintptr_t{page_size()} - 1), page_size(), false);
  p->unlock();
}

}  // namespace faultline::detail
