// faultline verify — the operations. Each one acts on the engine, checks what
// it saw against the model (Mismatch on a difference) and updates the model.
#include "verify/ops.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>

#include "faultline/constants.hpp"
#include "common/scratch_file.hpp"

namespace faultline::cli {

namespace {

constexpr uint64_t kWhole = uint64_t{1} << 40;

struct AccessResult {
  uint64_t done = 0;
  std::optional<BusError> err;
};

/// Copies n bytes between a view and buf page segment by page segment, in
/// ascending order, so a SIGBUS leaves whole segments done and the rest not.
AccessResult access(std::byte* base, uint64_t n, uint8_t* buf, bool store, uint64_t page) {
  volatile uint64_t done = 0;
  auto e = guarded([&] {
    uint64_t i = 0;
    while (i < n) {
      const uint64_t a = reinterpret_cast<uintptr_t>(base + i);
      const uint64_t k = std::min<uint64_t>(n - i, page - (a % page));
      if (store) std::memcpy(base + i, buf + i, k);
      else std::memcpy(buf + i, base + i, k);
      i += k;
      done = i;
    }
  });
  return {done, e};
}

Mismatch make_diff(const std::string& what, uint64_t fo, uint64_t first_diff,
                   const std::vector<int>& exp, const std::vector<int>& act) {
  Mismatch m;
  m.what = what;
  m.has_offset = true;
  m.offset = first_diff;
  const uint64_t start = first_diff >= fo + 8 ? first_diff - 8 : fo;
  m.dump_start = start;
  for (uint64_t o = start; o < start + 32 && o - fo < exp.size(); ++o) {
    m.expected.push_back(exp[o - fo]);
    m.actual.push_back(act[o - fo]);
  }
  return m;
}

const char* bus_name(int code) {
  return code == BUS_ADRERR ? "BUS_ADRERR" : code == BUS_MCEERR_AR ? "BUS_MCEERR_AR" : "other";
}

}  // namespace

Harness::Harness(VerifyOptions& o)
    : opts_(o), page_(o.frame ? o.frame : kBasePageSize), model_(o.size, page_) {
  if (page_ == kHugePageSize) fopts_.frame_size = FrameSize::k2M;
  if (!o.inject.empty())
    injector_ = std::make_shared<FaultInjector>(FaultSpec::parse(o.inject), o.seed ^ 0xfa17);
  if (o.backend == "memory") {
    memory_inner_ = make_memory_backend("verify-" + std::to_string(::getpid()), 0);
  } else {
    scratch_ = std::make_unique<ScratchFile>(o.dir, o.size * 2);
  }
  EngineConfig& cfg = ecfg_;
  cfg.log = [](std::string_view) {};  // write-back failures at close are expected with injection
  // Single thread: write-back only at sync operations, so a seed replays
  // exactly. Several threads: a busy flusher, to race with everything else.
  cfg.flusher = multi();
  if (!multi()) {  // backend calls in one order: replayable injection
    cfg.fault_threads = 1;
    cfg.max_fault_threads = 1;  // no second handler beside a fill (or its readahead)
  }
  cfg.flush_interval_ms = 20;
  cfg.dirty_expire_ms = 50;
  engine_ = std::make_unique<Engine>(cfg);
  file_ = engine_->open(open_backend(), fopts_);
  // Alignment and the model's pages follow the File's page size.
  if (file_.page_size() != page_)
    throw std::runtime_error(fmt::format("the engine cached the file in {}-byte pages, not the {} "
                                         "asked for with --frames",
                                         file_.page_size(), page_));
  // Private views of 2 MiB Files are refused (hugetlb hole punch drops private
  // copies): the private-view operations are left out then.
  std::vector<ViewKind> kinds{ViewKind::SharedRO, ViewKind::SharedRW};
  if (fopts_.frame_size != FrameSize::k2M) kinds.push_back(ViewKind::Private);
  for (ViewKind k : kinds) {
    for (unsigned i = 0; i < o.views; ++i) {
      View v;
      v.model.kind = k;
      v.model.off = 0;
      v.model.len = model_.pages() * page_ + page_;  // the whole file and a page past it
      views_.push_back(std::move(v));
    }
  }
  // The second and later views of each kind start at random offsets.
  Rng r(o.seed ^ 0x5eed);
  for (size_t i = 0; i < views_.size(); ++i) {
    if (i % o.views == 0 || multi()) continue;
    const uint64_t pg = r.below(model_.pages());
    views_[i].model.off = pg * page_;
    views_[i].model.len = (1 + r.below(model_.pages() + 1 - pg)) * page_;
  }
  for (auto& v : views_) map_view(v);
}

Harness::~Harness() {
  for (auto& v : views_) v.map.unmap();
  file_.close();
  engine_.reset();
}

std::string Harness::backend_desc() const {
  return opts_.backend == "memory" ? "memory" : "file " + scratch_->path();
}

std::shared_ptr<Backend> Harness::open_backend() {
  std::shared_ptr<Backend> b =
      memory_inner_ ? memory_inner_ : make_file_backend(scratch_->path(), true, false);
  if (injector_) b = std::make_shared<FaultyBackend>(std::move(b), injector_);
  return b;
}

void Harness::map_view(View& v) {
  v.model.reset(model_.pages() + 1);
  const Access a = v.model.kind == ViewKind::SharedRO ? Access::ReadOnly : Access::ReadWrite;
  const Sharing s = v.model.kind == ViewKind::Private ? Sharing::Private : Sharing::Shared;
  v.map = file_.map(v.model.off, v.model.len, a, s);
}

std::vector<ViewModel*> Harness::view_models() {
  std::vector<ViewModel*> r;
  for (auto& v : views_) r.push_back(&v.model);
  return r;
}

bool Harness::injected_since(uint64_t before) const {
  if (!injector_) return false;
  if (multi()) return true;  // another thread's injection may land in this op
  return injector_->injected_total() != before;
}

uint64_t Harness::write_faults() const {
  if (!injector_) return 0;
  const auto c = injector_->counters();
  return c.injected[static_cast<size_t>(FaultKind::WriteEio)] +
         c.injected[static_cast<size_t>(FaultKind::WriteEnospc)] +
         c.injected[static_cast<size_t>(FaultKind::WriteShort)];
}

// ---------------------------------------------------------------------------

void Harness::run_one(ThreadCtx& t, uint64_t n, std::string& d) {
  (void)n;
  unsigned total = 0;
  for (unsigned w : opts_.weights) total += w;
  uint64_t pick = t.rng.below(total);
  int op = 0;
  while (pick >= opts_.weights[static_cast<size_t>(op)]) pick -= opts_.weights[static_cast<size_t>(op++)];
  ++t.per_op[static_cast<size_t>(op)];
  // R8 bookkeeping: an injected write-back error in any op (invalidate's
  // launder, msync, a sync) must be reported by this handle's next sync.
  struct Pending {
    Harness& h;
    uint64_t wb;
    bool skip = false;
    ~Pending() {
      if (!skip && h.write_faults() != wb && h.injector_ && !h.multi()) h.wb_error_pending_ = true;
    }
  } pending{*this, write_faults()};
  if (static_cast<VerifyOp>(op) == VerifyOp::Sync || static_cast<VerifyOp>(op) == VerifyOp::DropCache ||
      static_cast<VerifyOp>(op) == VerifyOp::Reopen)
    pending.skip = true;  // these ops settle the flag themselves
  switch (static_cast<VerifyOp>(op)) {
    case VerifyOp::Read: return op_read(t, d);
    case VerifyOp::Write: return op_write(t, d);
    case VerifyOp::MapRead: return op_mapread(t, d);
    case VerifyOp::MapWrite: return op_mapwrite(t, d);
    case VerifyOp::Truncate: return op_truncate(t, d);
    case VerifyOp::Punch: return op_punch(t, d);
    case VerifyOp::Invalidate: return op_invalidate(t, d);
    case VerifyOp::Sync: return op_sync(t, d);
    case VerifyOp::DropCache: return op_dropcache(t, d);
    case VerifyOp::Reopen: return op_reopen(t, d);
    case VerifyOp::Remap: return op_remap(t, d);
    case VerifyOp::EofJunk: return op_eofjunk(t, d);
    case VerifyOp::Reclaim: return op_reclaim(t, d);
    case VerifyOp::Teardown: return op_teardown(t, d);
    case VerifyOp::Count: break;
  }
}

void Harness::op_read(ThreadCtx& t, std::string& d) {
  std::shared_lock lk(big_);
  const uint64_t size = model_.size();
  uint64_t off;
  if (size > t.lo && !t.rng.one_in(8)) off = t.lo + t.rng.below(std::min(size, t.hi) - t.lo);
  else off = t.lo + t.rng.below(t.hi - t.lo);
  const uint64_t len = std::min<uint64_t>(1 + t.rng.below(opts_.max_len), t.hi - off);
  d = fmt::format("read     0x{:x} len 0x{:x} (size 0x{:x})", off, len, size);
  t.buf.resize(len);
  const uint64_t inj = injected_total();
  size_t got;
  try {
    got = file_.read(off, std::span(reinterpret_cast<std::byte*>(t.buf.data()), len));
  } catch (const std::system_error& e) {
    if (injected_since(inj) && e.code().value() == EIO) {
      ++io_errors;
      d += " -> EIO (injected)";
      return;
    }
    throw Mismatch{fmt::format("File::read threw: {}", e.what())};
  }
  const uint64_t want = off >= size ? 0 : std::min<uint64_t>(len, size - off);
  if (got != want)
    throw Mismatch{fmt::format("File::read returned {} bytes, expected {}", got, want)};
  if (got != 0 && std::memcmp(t.buf.data(), model_.data() + off, got) != 0) {
    uint64_t i = 0;
    while (t.buf[i] == model_.data()[off + i]) ++i;
    std::vector<int> e(got), a(got);
    for (uint64_t k = 0; k < got; ++k) e[k] = model_.data()[off + k], a[k] = t.buf[k];
    throw make_diff("File::read returned wrong data", off, off + i, e, a);
  }
}

void Harness::resolve_failed_write(uint64_t off, uint64_t len, const uint8_t* old,
                                   const uint8_t* neu) {
  // A write that failed part way (a read before a partial-page write) may have
  // landed in part, and may have extended the file: accept old or new per byte.
  injector_->suspend(true);
  const uint64_t fsize = file_.size();
  if (fsize != model_.size()) {
    if (fsize < model_.size() || fsize > off + len) {
      injector_->suspend(false);
      throw Mismatch{fmt::format("after a failed write the size is 0x{:x}, expected 0x{:x}..0x{:x}",
                                 fsize, model_.size(), off + len)};
    }
    auto vm = view_models();
    model_.truncate(fsize, vm);
  }
  std::vector<uint8_t> got(len);
  size_t n = 0;
  try {
    n = file_.read(off, std::span(reinterpret_cast<std::byte*>(got.data()), len));
  } catch (const std::system_error& e) {
    injector_->suspend(false);
    throw Mismatch{fmt::format("reading back a failed write threw: {}", e.what())};
  }
  injector_->suspend(false);
  for (uint64_t i = 0; i < n; ++i) {
    if (got[i] == neu[i]) {
      model_.mutable_data()[off + i] = neu[i];
    } else if (got[i] != old[i]) {
      std::vector<int> e(n), a(n);
      for (uint64_t k = 0; k < n; ++k) e[k] = old[k], a[k] = got[k];
      throw make_diff("a failed write left bytes that are neither old nor new", off, off + i, e, a);
    }
  }
}

void Harness::op_write(ThreadCtx& t, std::string& d) {
  const uint64_t off = t.lo + t.rng.below(t.hi - t.lo);
  const uint64_t len = std::min<uint64_t>(1 + t.rng.below(opts_.max_len), t.hi - off);
  t.data.resize(len);
  t.rng.fill(t.data.data(), len);
  std::shared_lock sl(big_);
  std::unique_lock<std::shared_mutex> ul(big_, std::defer_lock);
  if (off + len > model_.size() && multi()) {
    sl.unlock();
    ul.lock();
  }
  d = fmt::format("write    0x{:x} len 0x{:x} (size 0x{:x})", off, len, model_.size());
  t.old.assign(model_.data() + off, model_.data() + off + len);
  const uint64_t inj = injected_total();
  try {
    file_.write(off, std::span(reinterpret_cast<const std::byte*>(t.data.data()), len));
  } catch (const std::system_error& e) {
    if (injected_since(inj) && e.code().value() == EIO) {
      ++io_errors;
      d += " -> EIO (injected)";
      resolve_failed_write(off, len, t.old.data(), t.data.data());
      return;
    }
    throw Mismatch{fmt::format("File::write threw: {}", e.what())};
  }
  model_.write(off, t.data.data(), len);
}

void Harness::check_bus(View& v, uint64_t fo, const BusError& e, bool may_inject,
                        const char* what) {
  const uint64_t pg = fo / page_;
  const Expect x = model_.expect(v.model, fo);
  const bool poisoned = pg < v.model.poisoned.size() && v.model.poisoned[pg];
  if (x.what == Expect::SigbusEof && (e.code == BUS_ADRERR || (poisoned && e.code == BUS_MCEERR_AR))) {
    ++sigbus_eof;
    return;
  }
  // DESIGN/guarded.hpp promise BUS_MCEERR_AR for I/O errors, but this kernel
  // (6.18) delivers a UFFDIO_POISON marker as BUS_ADRERR: accept both here and
  // tell them apart by the model (see the closing note of issue 6).
  const bool io_code = e.code == BUS_MCEERR_AR || e.code == BUS_ADRERR;
  if (x.what == Expect::SigbusPoison && io_code) {
    ++sigbus_io;
    return;
  }
  if (io_code && may_inject) {
    ++sigbus_io;
    v.model.poisoned[pg] = 1;  // stays until invalidated, punched or truncated
    return;
  }
  throw Mismatch{fmt::format(
      "{} through {} view at file offset 0x{:x} (page {}, size 0x{:x}): unexpected SIGBUS {} "
      "(expected {})",
      what, view_kind_name(v.model.kind), fo, pg, model_.size(), bus_name(e.code),
      x.what == Expect::SigbusEof ? "SIGBUS BUS_ADRERR past the EOF page"
      : x.what == Expect::SigbusPoison ? "SIGBUS BUS_MCEERR_AR (poisoned page)"
                                       : "data")};
}

void Harness::check_load(View& v, uint64_t fo, uint64_t n, const uint8_t* buf, uint64_t done,
                         const std::optional<BusError>& err, bool may_inject, const char* what) {
  // Bytes read must match; the first page that must fault must have faulted.
  for (uint64_t i = 0; i < done; i += 1) {
    Expect x = model_.expect(v.model, fo + i);
    if (x.what == Expect::SigbusPoison && !opts_.strict_poison) {
      // The poison went away (see --strict-poison): the data must be right.
      v.model.poisoned[(fo + i) / page_] = 0;
      x = model_.expect(v.model, fo + i);
    }
    if (x.what == Expect::Byte && x.value == buf[i]) continue;
    if (x.what == Expect::DontCare) continue;
    if (x.what == Expect::SigbusEof || x.what == Expect::SigbusPoison)
      throw Mismatch{fmt::format(
          "{} through {} view at file offset 0x{:x} (page {}, size 0x{:x}): expected SIGBUS ({}), "
          "got data",
          what, view_kind_name(v.model.kind), fo + i, (fo + i) / page_, model_.size(),
          x.what == Expect::SigbusEof ? "past the EOF page" : "poisoned by an earlier error")};
    std::vector<int> e(done), a(done);
    for (uint64_t k = 0; k < done; ++k) {
      const Expect y = model_.expect(v.model, fo + k, true);
      e[k] = y.what == Expect::Byte ? y.value : -1;
      a[k] = buf[k];
    }
    throw make_diff(fmt::format("{} through {} view (mapped at file 0x{:x}) saw wrong data", what,
                                view_kind_name(v.model.kind), v.model.off),
                    fo, fo + i, e, a);
  }
  if (!err) return;
  const uint64_t fault_fo =
      v.model.off + (reinterpret_cast<uintptr_t>(err->addr) - reinterpret_cast<uintptr_t>(v.map.data()));
  if (fault_fo / page_ != (fo + done) / page_)
    throw Mismatch{fmt::format("{}: SIGBUS at file offset 0x{:x}, outside the page being accessed (0x{:x})",
                               what, fault_fo, fo + done)};
  (void)n;
  check_bus(v, fo + done, *err, may_inject, what);
}

namespace {
/// A random sub-range of [a, b) of at most max_len bytes, biased to the EOF page.
std::pair<uint64_t, uint64_t> pick_range(Rng& r, uint64_t a, uint64_t b, uint64_t max_len,
                                         uint64_t size, uint64_t page) {
  uint64_t off;
  const uint64_t eofp = size / page * page;
  if (r.one_in(4) && eofp >= a && eofp < b) off = eofp + r.below(std::min<uint64_t>(b - eofp, 2 * page));
  else off = a + r.below(b - a);
  const uint64_t len = std::min<uint64_t>(1 + r.below(max_len), b - off);
  return {off, len};
}
}  // namespace

void Harness::op_mapread(ThreadCtx& t, std::string& d) {
  std::shared_lock lk(big_);
  View& v = views_[t.rng.below(views_.size())];
  const uint64_t a = std::max(v.model.off, t.lo);
  const uint64_t b = std::min(v.model.off + v.model.len, multi() ? t.hi : v.model.off + v.model.len);
  if (a >= b) {
    d = "mapread  (view outside this thread's slice: skipped)";
    return;
  }
  auto [off, len] = pick_range(t.rng, a, b, opts_.max_len, model_.size(), page_);
  d = fmt::format("mapread  {} view@0x{:x} 0x{:x} len 0x{:x} (size 0x{:x})",
                  view_kind_name(v.model.kind), v.model.off, off, len, model_.size());
  t.buf.resize(len);
  const uint64_t inj = injected_total();
  const auto r = access(v.map.data() + (off - v.model.off), len, t.buf.data(), false, page_);
  check_load(v, off, len, t.buf.data(), r.done, r.err, injected_since(inj), "mapread");
  if (r.err) d += fmt::format(" -> SIGBUS {} at 0x{:x}", bus_name(r.err->code), off + r.done);
}

void Harness::extend_for_store(uint64_t end, std::string& d) {
  // Like fsx's mapwrite: extend the file first so the store lands inside EOF.
  if (end <= model_.size()) return;
  file_.truncate(end);
  auto vm = view_models();
  model_.truncate(end, vm);
  d += fmt::format(" [extended to 0x{:x}]", end);
}

void Harness::op_mapwrite(ThreadCtx& t, std::string& d) {
  // Writable views: shared RW and private.
  std::vector<size_t> cands;
  for (size_t i = 0; i < views_.size(); ++i)
    if (views_[i].model.kind != ViewKind::SharedRO) cands.push_back(i);
  std::shared_lock sl(big_);
  View& v = views_[cands[t.rng.below(cands.size())]];
  const uint64_t a = std::max(v.model.off, t.lo);
  const uint64_t b = std::min({v.model.off + v.model.len, t.hi, model_.max_size()});
  if (a >= b) {
    d = "mapwrite (view outside this thread's slice: skipped)";
    return;
  }
  auto [off, len] = pick_range(t.rng, a, b, opts_.max_len, model_.size(), page_);
  t.data.resize(len);
  t.rng.fill(t.data.data(), len);
  std::unique_lock<std::shared_mutex> ul(big_, std::defer_lock);
  if (off + len > model_.size() && multi()) {
    sl.unlock();
    ul.lock();
  }
  d = fmt::format("mapwrite {} view@0x{:x} 0x{:x} len 0x{:x} (size 0x{:x})",
                  view_kind_name(v.model.kind), v.model.off, off, len, model_.size());
  const uint64_t inj = injected_total();
  extend_for_store(off + len, d);
  const auto r = access(v.map.data() + (off - v.model.off), len, t.data.data(), true, page_);
  for (uint64_t pg = off / page_; r.done && pg <= (off + r.done - 1) / page_; ++pg) {
    if (!v.model.poisoned[pg]) continue;
    if (opts_.strict_poison)
      throw Mismatch{fmt::format("mapwrite through {} view: a store to page {} (poisoned by an "
                                 "earlier error) went through, expected SIGBUS",
                                 view_kind_name(v.model.kind), pg)};
    v.model.poisoned[pg] = 0;
  }
  if (v.model.kind == ViewKind::Private) model_.private_store(v.model, off, t.data.data(), r.done);
  else model_.shared_store(off, t.data.data(), r.done);
  if (r.err) {
    d += fmt::format(" -> SIGBUS {} at 0x{:x}", bus_name(r.err->code), off + r.done);
    const uint64_t fault_fo = v.model.off + (reinterpret_cast<uintptr_t>(r.err->addr) -
                                             reinterpret_cast<uintptr_t>(v.map.data()));
    if (fault_fo / page_ != (off + r.done) / page_)
      throw Mismatch{fmt::format("mapwrite: SIGBUS at 0x{:x}, outside the page being stored to (0x{:x})",
                                 fault_fo, off + r.done)};
    check_bus(v, off + r.done, *r.err, injected_since(inj), "mapwrite");
  }
}

void Harness::op_truncate(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  const uint64_t size = model_.size(), max = model_.max_size();
  uint64_t ns;
  switch (t.rng.below(3)) {
    case 0: ns = t.rng.below(size + 1); break;
    case 1: ns = size + t.rng.below(max - size + 1); break;
    default: ns = t.rng.below(max + 1); break;
  }
  if (t.rng.one_in(4)) ns = ns / page_ * page_;
  d = fmt::format("truncate 0x{:x} -> 0x{:x}", size, ns);
  try {
    file_.truncate(ns);
  } catch (const std::system_error& e) {
    throw Mismatch{fmt::format("File::truncate threw: {}", e.what())};
  }
  auto vm = view_models();
  model_.truncate(ns, vm);
  if (file_.size() != ns)
    throw Mismatch{fmt::format("size after truncate is 0x{:x}, expected 0x{:x}", file_.size(), ns)};
}

void Harness::op_punch(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  const uint64_t size = model_.size();
  if (size == 0) {
    d = "punch    (empty file: skipped)";
    return;
  }
  const uint64_t off = t.rng.below(size);
  const uint64_t len = 1 + t.rng.below(2 * opts_.max_len);
  d = fmt::format("punch    0x{:x} len 0x{:x} (size 0x{:x})", off, len, size);
  try {
    file_.punch_hole(off, len);
  } catch (const std::system_error& e) {
    throw Mismatch{fmt::format("File::punch_hole threw: {}", e.what())};
  }
  auto vm = view_models();
  model_.punch(off, len, vm);
}

void Harness::op_invalidate(ThreadCtx& t, std::string& d) {
  // --threads: half of them invalidate this thread's slice only, beside the
  // other threads' ops (a view being torn down, sync, stores elsewhere).
  const bool local = multi() && t.rng.one_in(2);
  std::unique_lock<std::shared_mutex> ul(big_, std::defer_lock);
  std::shared_lock<std::shared_mutex> sl(big_, std::defer_lock);
  if (local) sl.lock();
  else ul.lock();
  uint64_t off = 0, len = kWhole;
  if (local) {
    off = t.lo + t.rng.below(t.hi - t.lo);
    len = 1 + t.rng.below(std::min<uint64_t>(4 * opts_.max_len, t.hi - off));
  } else if (!t.rng.one_in(4)) {
    off = t.rng.below(model_.max_size());
    len = 1 + t.rng.below(4 * opts_.max_len);
  } else if (t.rng.one_in(2)) {
    // The 2^64 edge: from off to 2^64 - 1 (issue 14 defect 5: it was a no-op).
    off = t.rng.one_in(2) ? 0 : t.rng.below(model_.max_size());
    len = ~uint64_t{0} - off;
  }
  d = fmt::format("invalidate{} 0x{:x} len 0x{:x}", local ? " (slice)" : "", off, len);
  const uint64_t wb = write_faults();
  std::vector<uint64_t> failed;
  try {
    failed = file_.invalidate(off, len);
  } catch (const std::system_error& e) {
    throw Mismatch{fmt::format("File::invalidate threw: {}", e.what())};
  }
  if (write_faults() != wb && !local) wb_error_pending_ = true;  // (local: --threads only)
  if (!failed.empty()) {
    d += fmt::format(" -> {} pages not laundered", failed.size());
    if (write_faults() == wb && !multi())
      throw Mismatch{fmt::format("File::invalidate could not launder {} pages (first 0x{:x}) with "
                                 "no write error injected",
                                 failed.size(), failed[0])};
  }
  auto vm = view_models();
  model_.invalidate(off, len, failed, vm);
}

void Harness::do_sync(bool fsync, uint64_t inj_before, std::string& d) {
  const uint64_t wb = write_faults();
  bool threw = false;
  try {
    if (fsync) file_.fsync();
    else file_.sync();
  } catch (const std::system_error& e) {
    threw = true;
    const int c = e.code().value();
    d += fmt::format(" -> {}", std::strerror(c));
    const bool allowed = wb_error_pending_ || write_faults() != wb || injected_since(inj_before);
    if (!allowed || (c != EIO && c != ENOSPC))
      throw Mismatch{fmt::format("{} threw with no injected error pending: {}",
                                 fsync ? "File::fsync" : "File::sync", e.what())};
  }
  // R8: an injected write-back error must reach this handle's next sync.
  const bool must_throw = wb_error_pending_ || write_faults() != wb;
  if (must_throw && !threw && !multi())
    throw Mismatch{"R8: a write-back error was injected since the last sync, but sync() "
                   "reported nothing (the error was silently dropped)"};
  if (!multi()) wb_error_pending_ = false;
  if (!threw) check_clean_after_sync(fsync ? "File::fsync" : "File::sync");
}

void Harness::op_sync(ThreadCtx& t, std::string& d) {
  const unsigned kind = static_cast<unsigned>(t.rng.below(3));
  std::unique_lock<std::shared_mutex> ul(big_, std::defer_lock);
  std::shared_lock<std::shared_mutex> sl(big_, std::defer_lock);
  // Syncs run beside data ops in multi-thread mode (write-back under load).
  if (multi()) sl.lock();
  else ul.lock();
  const uint64_t inj = injected_total();
  if (kind == 1 && t.rng.one_in(3) && !injector_) {
    // A range sync to the 2^64 edge (issue 14 defect 5: it wrote nothing).
    const uint64_t off = t.rng.one_in(2) ? 0 : t.rng.below(model_.max_size());
    const uint64_t len = ~uint64_t{0} - off;
    d = fmt::format("sync     0x{:x} len 0x{:x}", off, len);
    try {
      file_.sync(off, len);
    } catch (const std::system_error& e) {
      throw Mismatch{fmt::format("File::sync(0x{:x}, 0x{:x}) threw: {}", off, len, e.what())};
    }
    if (off == 0) check_clean_after_sync("File::sync(0, UINT64_MAX)");
    return;
  }
  if (kind == 0) {
    View& v = views_[t.rng.below(views_.size())];
    d = fmt::format("msync    {} view@0x{:x}", view_kind_name(v.model.kind), v.model.off);
    const uint64_t wb = write_faults();
    bool reported = false;
    struct SetPending {
      Harness& h;
      uint64_t wb;
      const bool& reported;
      ~SetPending() {
        if (!reported && h.write_faults() != wb && !h.multi()) h.wb_error_pending_ = true;
      }
    } set_pending{*this, wb, reported};
    try {
      v.map.msync(v.map.data(), v.map.size(), MS_SYNC);
    } catch (const std::system_error& e) {
      // A view reports through its handle's errseq cursor (R8, as msync
      // checks the vma's struct file): what it reports, file_'s next sync
      // does not report again.
      reported = true;
      if (!multi()) wb_error_pending_ = false;
      const int c = e.code().value();
      d += fmt::format(" -> {}", std::strerror(c));
      if (write_faults() == 0 || (c != EIO && c != ENOSPC))
        throw Mismatch{fmt::format("Mapping::msync threw with no injected write error: {}", e.what())};
    }
    return;
  }
  d = kind == 1 ? "sync" : "fsync";
  do_sync(kind == 2, inj, d);
}

void Harness::check_clean_after_sync(const char* what) {
  // Single thread: nothing stores between the sync and here, so no page may
  // be dirty (sync's promise; a page dirtied after it returned with no store
  // since would be rewritten needlessly, issue 14 defect 12). With injection
  // a failed write-back keeps its pages dirty.
  if (multi() || injector_) return;
  const uint64_t dirty = file_.stats().dirty_pages;
  if (dirty != 0)
    throw Mismatch{fmt::format("{} returned but {} pages are still (or again) dirty", what, dirty)};
}

void Harness::op_dropcache(ThreadCtx&, std::string& d) {
  std::unique_lock lk(big_);
  d = "dropcache";
  const uint64_t inj = injected_total();
  do_sync(false, inj, d);
  const uint64_t wb = write_faults();
  std::vector<uint64_t> failed;
  try {
    failed = file_.invalidate(0, kWhole);
  } catch (const std::system_error& e) {
    throw Mismatch{fmt::format("File::invalidate threw: {}", e.what())};
  }
  if (write_faults() != wb) wb_error_pending_ = true;
  if (!failed.empty()) {
    d += fmt::format(" ({} pages kept dirty)", failed.size());
    if (write_faults() == wb && !multi())
      throw Mismatch{fmt::format("dropcache: {} pages could not be laundered with no write error "
                                 "injected", failed.size())};
  }
  auto vm = view_models();
  model_.invalidate(0, kWhole, failed, vm);
}

void Harness::check_all(const char* why) {
  const uint64_t size = model_.size();
  if (file_.size() != size)
    throw Mismatch{fmt::format("{}: size 0x{:x}, expected 0x{:x}", why, file_.size(), size)};
  std::vector<uint8_t> got(size);
  if (injector_) injector_->suspend(true);
  size_t n = 0;
  try {
    n = file_.read(0, std::span(reinterpret_cast<std::byte*>(got.data()), size));
  } catch (const std::system_error& e) {
    if (injector_) injector_->suspend(false);
    throw Mismatch{fmt::format("{}: File::read threw: {}", why, e.what())};
  }
  if (injector_) injector_->suspend(false);
  if (n != size) throw Mismatch{fmt::format("{}: read {} bytes of {}", why, n, size)};
  if (size != 0 && std::memcmp(got.data(), model_.data(), size) != 0) {
    uint64_t i = 0;
    while (got[i] == model_.data()[i]) ++i;
    std::vector<int> e(size), a(size);
    for (uint64_t k = 0; k < size; ++k) e[k] = model_.data()[k], a[k] = got[k];
    throw make_diff(std::string(why) + ": File::read of the whole file differs from the model", 0,
                    i, e, a);
  }
}

void Harness::op_reopen(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  // Without injection the close itself must write everything back, data and
  // size (issue 14 defect 11: the size was lost): no sync first, and half
  // the time the whole Engine is closed. With injection a failed write-back
  // at close would lose pages by design: sync first until it succeeds.
  const bool sync_first = injector_ || t.rng.one_in(3);
  const bool engine_close = !injector_ && t.rng.one_in(2);
  d = fmt::format("reopen{}{}", sync_first ? "" : " (no sync)", engine_close ? " (engine close)" : "");
  bool ok = !sync_first;
  for (int i = 0; i < 20 && !ok; ++i) {
    try {
      file_.sync();
      ok = true;
    } catch (const std::system_error&) {
    }
  }
  wb_error_pending_ = false;
  if (!ok) {
    d += " (skipped: sync kept failing)";
    return;
  }
  if (engine_close) {
    // Engine::close writes every File back and tears the views down itself.
    engine_->close();
    for (auto& v : views_) v.map.unmap();
    file_.close();
    engine_ = std::make_unique<Engine>(ecfg_);
  } else {
    for (auto& v : views_) v.map.unmap();
    file_.close();  // the last handle and view: the File writes back as it goes
  }
  file_ = engine_->open(open_backend(), fopts_);
  ++reopens;
  for (auto& v : views_) map_view(v);
  if (file_.size() != model_.size())
    throw Mismatch{fmt::format("after reopen the size is 0x{:x}, expected 0x{:x}", file_.size(),
                               model_.size())};
  check_all("after reopen");
}

void Harness::op_remap(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  View& v = views_[t.rng.below(views_.size())];
  const uint64_t old = v.model.off;
  v.map.unmap();
  const uint64_t pages = model_.pages();
  if (t.rng.one_in(3) || multi()) {
    v.model.off = 0;
    v.model.len = (pages + 1) * page_;
  } else {
    const uint64_t pg = t.rng.below(pages);
    v.model.off = pg * page_;
    v.model.len = (1 + t.rng.below(pages + 1 - pg)) * page_;
  }
  map_view(v);
  d = fmt::format("remap    {} view 0x{:x} -> 0x{:x} len 0x{:x}", view_kind_name(v.model.kind), old,
                  v.model.off, v.model.len);
}

void Harness::op_reclaim(ThreadCtx& t, std::string& d) {
  // Runs beside other ops (shared): reclaim is what memory pressure does at
  // any moment. It must not change a byte: the model stays as it is (junk
  // stored past EOF may go back to zeros with its page: don't care already).
  std::shared_lock lk(big_);
  const uint64_t want = 1 + t.rng.below(64);  // in 4 KiB pages
  const uint64_t freed = engine_->reclaim(want);
  d = fmt::format("reclaim  {} pages -> {} freed", want, freed);
}

void Harness::op_teardown(ThreadCtx& t, std::string& d) {
  // A second, short-lived shared RW view of a few whole pages of this
  // thread's slice inside EOF: stores through it, then its teardown, which
  // with --threads races with the other threads' sync, slice invalidates,
  // the flusher and reclaim (issue 14 defects 1 and 7).
  std::shared_lock lk(big_);
  const uint64_t size = model_.size();
  const uint64_t a = t.lo / page_, b = std::min(t.hi, size) / page_;  // whole pages
  if (a >= b) {
    d = "teardown (no whole page of this slice inside EOF: skipped)";
    return;
  }
  const uint64_t first = a + t.rng.below(b - a);
  const uint64_t n = 1 + t.rng.below(std::min<uint64_t>(b - first, 16));
  const uint64_t off = first * page_ + t.rng.below(n * page_);
  const uint64_t len = 1 + t.rng.below(std::min<uint64_t>(opts_.max_len, (first + n) * page_ - off));
  d = fmt::format("teardown view@0x{:x} len 0x{:x}: store 0x{:x} len 0x{:x} (size 0x{:x})",
                  first * page_, n * page_, off, len, size);
  t.data.resize(len);
  t.rng.fill(t.data.data(), len);
  const uint64_t inj = injected_total();
  Mapping m = file_.map(first * page_, n * page_, Access::ReadWrite, Sharing::Shared);
  const auto r = access(m.data() + (off - first * page_), len, t.data.data(), true, page_);
  model_.shared_store(off, t.data.data(), r.done);
  m.unmap();
  if (r.err) {
    d += fmt::format(" -> SIGBUS {} at 0x{:x}", bus_name(r.err->code), off + r.done);
    // A fresh view holds no poison: only an injected error explains it (and
    // its poison goes with the view).
    if (!injected_since(inj))
      throw Mismatch{fmt::format("teardown: a store through a fresh view got SIGBUS at 0x{:x} with "
                                 "no injected error",
                                 off + r.done)};
  }
}

void Harness::op_eofjunk(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  const uint64_t size = model_.size();
  const uint64_t eofpg = size / page_;
  d = fmt::format("eofjunk  (size 0x{:x})", size);
  const uint64_t inj = injected_total();
  if (size % page_) {
    // Junk past EOF through a shared RW view holding the EOF page.
    for (auto& v : views_) {
      if (v.model.kind != ViewKind::SharedRW || !v.model.covers(eofpg, page_)) continue;
      if (v.model.poisoned[eofpg]) break;
      const uint64_t n = (eofpg + 1) * page_ - size;
      t.data.resize(n);
      t.rng.fill(t.data.data(), n);
      const auto r = access(v.map.data() + (size - v.model.off), n, t.data.data(), true, page_);
      if (r.done) model_.set_eof_junk();
      d += fmt::format(" junk 0x{:x} bytes via view@0x{:x}", n, v.model.off);
      if (r.err) {
        d += fmt::format(" -> SIGBUS {}", bus_name(r.err->code));
        check_bus(v, size + r.done, *r.err, injected_since(inj), "eofjunk store");
      }
      break;
    }
  }
  // Probe the first page past the EOF page: SIGBUS in every view.
  const uint64_t past = (size + page_ - 1) / page_;
  for (auto& v : views_) {
    if (!v.model.covers(past, page_)) continue;
    if (!t.rng.one_in(3)) continue;
    const uint64_t o = past * page_ + t.rng.below(page_);
    uint8_t b = 0x5a;
    const bool store = v.model.kind != ViewKind::SharedRO && t.rng.one_in(2);
    const auto r = access(v.map.data() + (o - v.model.off), 1, &b, store, page_);
    d += fmt::format(" probe{} {}@0x{:x}", store ? "-store" : "", view_kind_name(v.model.kind), o);
    if (!r.err) {
      throw Mismatch{fmt::format("{} through {} view at 0x{:x}, past the EOF page (size 0x{:x}): "
                                 "no SIGBUS",
                                 store ? "store" : "load", view_kind_name(v.model.kind), o, size)};
    }
    check_bus(v, o, *r.err, injected_since(inj), store ? "probe store" : "probe load");
  }
}

void Harness::corrupt_model(ThreadCtx& t, std::string& d) {
  std::unique_lock lk(big_);
  if (model_.size() == 0) {
    t.data.assign(page_, 0x11);
    file_.write(0, std::span(reinterpret_cast<const std::byte*>(t.data.data()), page_));
    model_.write(0, t.data.data(), page_);
  }
  const uint64_t o = t.rng.below(model_.size());
  model_.mutable_data()[o] ^= 0x40;
  d = fmt::format("self-test: flipped model byte 0x{:x}", o);
}

void Harness::final_check() {
  std::unique_lock lk(big_);
  if (injector_) injector_->suspend(true);
  bool ok = false;
  std::string err;
  for (int i = 0; i < 3 && !ok; ++i) {
    try {
      file_.fsync();
      ok = true;
    } catch (const std::system_error& e) {
      err = e.what();
    }
  }
  if (!ok) throw Mismatch{"final fsync kept failing with injection off: " + err};
  const uint64_t size = model_.size();
  std::vector<uint8_t> got(size + 1);
  uint64_t bsize = 0;
  size_t n = 0;
  if (memory_inner_) {
    bsize = static_cast<uint64_t>(memory_inner_->size());
    const ssize_t r = memory_inner_->read(0, std::span(reinterpret_cast<std::byte*>(got.data()), size));
    n = r < 0 ? 0 : static_cast<size_t>(r);
  } else {
    const int fd = ::open(scratch_->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Mismatch{"final check: cannot open the backing file"};
    bsize = static_cast<uint64_t>(::lseek(fd, 0, SEEK_END));
    while (n < size) {
      const ssize_t r = ::pread(fd, got.data() + n, size - n, static_cast<off_t>(n));
      if (r <= 0) break;
      n += static_cast<size_t>(r);
    }
    ::close(fd);
  }
  if (bsize != size)
    throw Mismatch{fmt::format("final check: the backend holds 0x{:x} bytes, the model 0x{:x}",
                               bsize, size)};
  if (n != size || (size != 0 && std::memcmp(got.data(), model_.data(), size) != 0)) {
    uint64_t i = 0;
    while (i < n && got[i] == model_.data()[i]) ++i;
    std::vector<int> e(size), a(size);
    for (uint64_t k = 0; k < size; ++k) e[k] = model_.data()[k], a[k] = k < n ? got[k] : -1;
    throw make_diff("final check: the backend itself (read(2) of the backing file / the memory "
                    "backend) differs from the model after fsync",
                    0, i, e, a);
  }
}

}  // namespace faultline::cli
