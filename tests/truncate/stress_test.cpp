// Issue 4 item 6: the stress test. Writers store through two shared writable
// views and through File::write, readers load through both views and
// File::read, a private-view thread stores its own copies and reads pages it
// never stores to, while a chaos thread truncates up and down, punches and
// invalidates at random.
//
// Every store writes a stamp into an 8-byte word: (writer << 60) | (word << 40)
// | tick, tick from one global clock, so a read can tell the version it saw.
// Each word has one owning writer (its stores are sequential); the chaos
// thread is the only source of "zero events" (punch, shrink past the word,
// extend over it). Per word the model keeps the start/end ticks of the last
// completed store and of the last zero event; a read (bracketed by snapshots)
// fails when it returns a stamp older than a store that completed before the
// read began, a stamp that a later zero event completed before the read
// wiped, zeros where a store completed after the last zero event, a stamp of
// another word or writer, or a private view's store. SIGBUS is accepted only
// past EOF (or when a shrink raced). Afterwards both shared views, read(), and
// the backend (after sync) agree byte for byte with each other and the model,
// the memfd's size is i_size rounded up, and after invalidating everything the
// memfd holds no data at all (no frame outside the index).
//
// Runs with 4 KiB frames (File, Memory) and with 2 MiB frames (File2M,
// Memory2M: a hugetlb File; no private view, since 2 MiB Files refuse them;
// 16 frames at most; the memfd's allocated bytes come from st_blocks, as
// hugetlbfs has no SEEK_DATA). Words are owned, picked and read per 4 KiB
// block: a 4 KiB page is one block; in a 2 MiB frame half the picks go to a
// few hot blocks (the frame's edges and middle) so words still collide.
//
// Duration: FAULTLINE_STRESS_SECONDS (seconds per pair of instantiations,
// File + Memory, of one frame size; default 40: 20 s each).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "hugepage_pool.hpp"
#include "tr_util.hpp"

namespace tr {
namespace {

using Clock = std::chrono::steady_clock;

struct StressParam {
  Kind kind;
  bool huge;  // 2 MiB frames
};
std::string stress_name(const ::testing::TestParamInfo<StressParam>& i) {
  return std::string(i.param.kind == Kind::File ? "File" : "Memory") + (i.param.huge ? "2M" : "");
}
// ctest's test names carry gtest's print of the parameter: no padding bytes.
void PrintTo(const StressParam& p, std::ostream* os) {
  *os << (p.kind == Kind::File ? "File" : "Memory") << (p.huge ? ", 2 MiB frames" : ", 4 KiB frames");
}
class Stress : public ::testing::TestWithParam<StressParam> {};

/// The unit of word ownership, of picking words and of one read: 4 KiB (a
/// whole page with 4 KiB frames).
constexpr uint64_t kBlock = fl::kBasePageSize;
constexpr uint64_t kWordsPerBlock = kBlock / 8;
constexpr uint64_t kMaxPages4K = 64;  // 256 KiB
constexpr uint64_t kMaxPages2M = 16;  // 32 MiB
constexpr int64_t kPoolPages2M = 2 * kMaxPages2M;
constexpr int kWriters = 3;    // 1: view A, 2: view B, 3: File::write
constexpr uint64_t kPriv = 4;  // the private view's stores
// A stamp: writer (4 bits) | word (22 bits) | tick (38 bits).
constexpr unsigned kWordBits = 22, kTickBits = 38;
constexpr uint64_t kTickMask = (uint64_t{1} << kTickBits) - 1;
constexpr uint64_t kWordMask = (uint64_t{1} << kWordBits) - 1;
static_assert(kMaxPages2M * (fl::kHugePageSize / 8) <= kWordMask + 1, "word field too small");

/// The file's shape: page (frame) size and the largest size the test uses.
struct Geo {
  uint64_t ps, max_pages;
  uint64_t bpp = ps / kBlock;          // blocks per page
  uint64_t wpp = ps / 8;               // words per page
  uint64_t words = max_pages * wpp;
  uint64_t max_size = max_pages * ps;
  uint64_t blocks = max_size / kBlock;
  uint64_t round_up(uint64_t v) const { return (v + ps - 1) / ps * ps; }
  /// A block below `lim` blocks. 4 KiB frames: uniform (a page). 2 MiB
  /// frames: half the time one of a frame's hot blocks (its first two, the
  /// middle two, its last two), so that stores, reads and zero events meet
  /// on the same words and on both sides of frame boundaries.
  uint64_t pick_block(std::mt19937_64& rng, uint64_t lim) const {
    if (bpp == 1 || rng() % 2 == 0) return rng() % lim;
    const uint64_t hot[] = {0, 1, bpp / 2 - 1, bpp / 2, bpp - 2, bpp - 1};
    const uint64_t b = (rng() % ((lim + bpp - 1) / bpp)) * bpp + hot[rng() % 6];
    return b < lim ? b : lim - 1;
  }
};

uint64_t stamp(uint64_t writer, uint64_t word, uint64_t tick) {
  return (writer << 60) | (word << kTickBits) | (tick & kTickMask);
}
// Words of block p are split in three slices; slice k is owned by writer
// 1 + (k + p) % 3, so every block sees all three writers.
int owner(uint64_t w) {
  const uint64_t p = w / kWordsPerBlock, k = (w % kWordsPerBlock) * 3 / kWordsPerBlock;
  return 1 + static_cast<int>((k + p) % 3);
}
void slice_of(uint64_t p, int writer, uint64_t* b, uint64_t* e) {
  for (uint64_t k = 0; k < 3; ++k)
    if (1 + static_cast<int>((k + p) % 3) == writer) {
      *b = p * kWordsPerBlock + (k * kWordsPerBlock + 2) / 3;
      *e = p * kWordsPerBlock + ((k + 1) * kWordsPerBlock + 2) / 3;
    }
}

using AtomicVec = std::vector<std::atomic<uint64_t>>;

struct Model {
  explicit Model(const Geo& g)
      : ws(g.words), we(g.words), zs(g.words), zcs(g.words), ze(g.words), words(g.words),
        cut_begin(g.max_pages), cut_end(g.max_pages) {}
  std::atomic<uint64_t> clock{1};
  uint64_t tick() { return clock.fetch_add(1, std::memory_order_acq_rel); }
  // Per word: last completed store (start, end); zero events: start of the
  // latest begun (zs), start and end of the latest completed (zcs, ze).
  AtomicVec ws, we, zs, zcs, ze;
  const uint64_t words;
  // The size: `size` is always <= the engine's (lowered before a shrink,
  // raised after an extend); shrinks is bumped when a shrink begins and when
  // it ends (odd: one is running), read before `size`.
  std::atomic<uint64_t> size{0};
  std::atomic<uint64_t> shrinks{0};
  /// Whether a shrink ran (or was running) since `sh0` was read.
  bool shrank_since(uint64_t sh0) const { return (sh0 & 1) || shrinks.load() != sh0; }
  // Per page: shrinks that cut it (begun / ended), for the private copies.
  AtomicVec cut_begin, cut_end;

  void zero_begin(uint64_t a, uint64_t b, uint64_t t) {
    for (uint64_t w = a; w < b; ++w) zs[w].store(t, std::memory_order_release);
  }
  void zero_end(uint64_t a, uint64_t b, uint64_t t0, uint64_t t1) {
    for (uint64_t w = a; w < b; ++w) {
      zcs[w].store(t0, std::memory_order_release);
      ze[w].store(t1, std::memory_order_release);
    }
  }
  void stored(uint64_t w, uint64_t t0, uint64_t t1) {
    we[w].store(t1, std::memory_order_release);
    ws[w].store(t0, std::memory_order_release);
  }
};

struct Pre {
  uint64_t ws, we, zcs;
};

struct Failures {
  std::mutex mu;
  std::vector<std::string> msgs;
  std::atomic<uint64_t> count{0};
  void add(const std::string& s) {
    count.fetch_add(1);
    std::lock_guard g(mu);
    if (msgs.size() < 20) msgs.push_back(s);
  }
};

/// Checks one word's value against the model: `pre` snapshotted before the
/// read began, zero-event state loaded after it ended.
std::string check_word(Model& md, uint64_t w, uint64_t v, const Pre& pre, const char* via) {
  const uint64_t zs = md.zs[w].load(std::memory_order_acquire);
  const uint64_t ze = md.ze[w].load(std::memory_order_acquire);
  const uint64_t wr = v >> 60, word = (v >> kTickBits) & kWordMask, t = v & kTickMask;
  const bool bad =
      v == 0 ? ze >= zs && pre.ws > ze
             : word != w || wr == kPriv || static_cast<int>(wr) != owner(w) ||
                   t < (pre.ws & kTickMask) || (t == (pre.ws & kTickMask) && pre.zcs > pre.we);
  if (!bad) return {};  // the common case, without building a stream
  std::ostringstream o;
  if (v == 0) {
    // The latest zero event, if completed, must not be older than a store
    // that completed before the read began.
    if (ze >= zs && pre.ws > ze)
      o << via << ": word " << w << " reads 0 but a store (tick " << pre.ws
        << ") completed after the last zero event (ended " << ze << ") and before the read";
    return o.str();
  }
  if (word != w) {
    o << via << ": word " << w << " holds word " << word << "'s stamp (writer " << wr << ")";
  } else if (wr == kPriv) {
    o << via << ": word " << w << " shows a private view's store";
  } else if (static_cast<int>(wr) != owner(w)) {
    o << via << ": word " << w << " holds writer " << wr << "'s stamp, owner " << owner(w);
  } else if (t < (pre.ws & kTickMask)) {
    o << via << ": word " << w << " stale: version " << t << " older than store " << pre.ws
      << " completed before the read";
  } else if (t == (pre.ws & kTickMask) && pre.zcs > pre.we) {
    o << via << ": word " << w << " stale: version " << t << " (store ended " << pre.we
      << ") was zeroed by an event (started " << pre.zcs << ") completed before the read";
  }
  return o.str();
}

uint64_t env_seconds() {
  if (const char* s = std::getenv("FAULTLINE_STRESS_SECONDS")) {
    const double v = std::atof(s);
    if (v > 0) return static_cast<uint64_t>(v * 1000);
  }
  return 40'000;
}

struct Counts {
  std::atomic<uint64_t> stores{0}, store_sigbus{0}, writes{0}, view_reads{0}, read_calls{0},
      read_sigbus{0}, words_checked{0}, priv_stores{0}, priv_checks{0}, priv_reads{0},
      truncates{0}, punches{0}, invalidates{0}, launder_failed{0};
};

/// Bytes the memfd holds (st_blocks: hugetlbfs counts its pages there but
/// has no SEEK_DATA/SEEK_HOLE; it reports all of [0, size) as data).
uint64_t allocated_bytes(int fd) {
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) return ~uint64_t{0};
  return static_cast<uint64_t>(sb.st_blocks) * 512;
}

TEST_P(Stress, ConcurrentTruncatePunchInvalidate) {
  const bool huge = GetParam().huge;
  if (huge) {
    if (const std::string why = ft::hugepage_pool_shortfall(kPoolPages2M); !why.empty()) {
      if (ft::hugepages_required()) FAIL() << why;
      GTEST_SKIP() << why;
    }
  }
  const Geo geo = huge ? Geo{fl::kHugePageSize, kMaxPages2M} : Geo{fl::kBasePageSize, kMaxPages4K};
  const uint64_t kMaxPages = geo.max_pages, kMaxSize = geo.max_size, kWords = geo.words;
  const uint64_t kPs = geo.ps, kWordsPerPage = geo.wpp;
  auto round_up = [&geo](uint64_t v) { return geo.round_up(v); };
  const auto duration = std::chrono::milliseconds(env_seconds() / 2);
  Store st(GetParam().kind, "stress", 0);
  fl::Engine eng;
  fl::FileOptions opts;
  if (huge) opts.frame_size = fl::FrameSize::k2M;
  auto f = eng.open(st.backend(), opts);
  ASSERT_EQ(f.page_size(), kPs);
  Model md(geo);
  Failures fails;
  Counts n;
  f.truncate(kMaxSize / 2);
  md.size.store(kMaxSize / 2);
  auto A = f.map(0, kMaxSize);
  auto B = f.map(0, kMaxSize);
  // 2 MiB Files refuse private views (hugetlb hole punch drops their copies).
  fl::Mapping P;
  if (huge) {
    EXPECT_ERRNO(EINVAL, f.map(0, kMaxSize, fl::Access::ReadWrite, fl::Sharing::Private));
  } else {
    P = f.map(0, kMaxSize, fl::Access::ReadWrite, fl::Sharing::Private);
  }
  std::shared_mutex size_mu;  // File::write never extends: it holds this shared
  std::atomic<bool> chaos_wants{false};  // glibc rwlocks prefer readers: back off
  std::atomic<bool> stop{false};
  const auto t_start = Clock::now();

  auto base = [&](int writer) { return writer == 1 ? A.data() : B.data(); };

  // --- view writers (1: A, 2: B) -------------------------------------------
  auto view_writer = [&](int id) {
    std::mt19937_64 rng(id * 7919);
    uint64_t* const v = reinterpret_cast<uint64_t*>(base(id));
    while (!stop.load(std::memory_order_relaxed)) {
      std::this_thread::yield();  // let the chaos thread in (2 cores, 8 workers)
      const uint64_t sh0 = md.shrinks.load();
      const uint64_t sz = md.size.load();
      // Mostly inside EOF, sometimes past it (SIGBUS or EOF-page junk).
      const uint64_t lim =
          rng() % 8 == 0 ? geo.blocks : std::max<uint64_t>(1, round_up(sz) / kBlock);
      const uint64_t p = geo.pick_block(rng, lim);
      uint64_t b = 0, e = 0;
      slice_of(p, id, &b, &e);
      const uint64_t w0 = b + rng() % (e - b);
      const uint64_t cnt = std::min<uint64_t>(e - w0, 1 + rng() % 16);
      const uint64_t t0 = md.tick();
      volatile uint64_t done = 0;
      auto bus = fl::guarded([&] {
        for (uint64_t i = 0; i < cnt; ++i) {
          // Relaxed atomics: plain 8-byte movs, and TSan knows the race is meant.
          __atomic_store_n(&v[w0 + i], stamp(id, w0 + i, t0), __ATOMIC_RELAXED);
          done = i + 1;
        }
      });
      const uint64_t t1 = md.tick();
      for (uint64_t i = 0; i < done; ++i) md.stored(w0 + i, t0, t1);
      n.stores.fetch_add(1, std::memory_order_relaxed);
      if (bus) {
        n.store_sigbus.fetch_add(1, std::memory_order_relaxed);
        const uint64_t off = (w0 + done) * 8;
        const uint64_t lo = std::min(sz, md.size.load());
        if (!md.shrank_since(sh0) && (off < round_up(lo) || bus->code != BUS_ADRERR))
          fails.add("store SIGBUS (code " + std::to_string(bus->code) + ") inside EOF at " +
                    std::to_string(off));
      }
    }
  };

  // --- File::write writer (3) ---------------------------------------------
  auto file_writer = [&] {
    std::mt19937_64 rng(31337);
    std::vector<uint64_t> buf(kWordsPerBlock);
    while (!stop.load(std::memory_order_relaxed)) {
      std::this_thread::yield();  // let the chaos thread in (2 cores, 8 workers)
      while (chaos_wants.load() && !stop.load()) std::this_thread::yield();
      std::shared_lock g(size_mu);
      const uint64_t sz = md.size.load();
      if (sz < kBlock) {
        g.unlock();
        std::this_thread::yield();
        continue;
      }
      const uint64_t p = geo.pick_block(rng, sz / kBlock);
      uint64_t b = 0, e = 0;
      slice_of(p, 3, &b, &e);
      const uint64_t w0 = b + rng() % (e - b);
      const uint64_t cnt = std::min<uint64_t>(e - w0, 1 + rng() % 64);
      const uint64_t t0 = md.tick();
      for (uint64_t i = 0; i < cnt; ++i) buf[i] = stamp(3, w0 + i, t0);
      try {
        f.write(w0 * 8, std::as_bytes(std::span(buf.data(), cnt)));
      } catch (const std::exception& ex) {
        fails.add(std::string("File::write threw: ") + ex.what());
        continue;
      }
      const uint64_t t1 = md.tick();
      for (uint64_t i = 0; i < cnt; ++i) md.stored(w0 + i, t0, t1);
      n.writes.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // --- readers: 0 = view A, 1 = view B, 2 = File::read ----------------------
  auto reader = [&](int which) {
    std::mt19937_64 rng(1000 + which);
    std::vector<Pre> pre(kWordsPerBlock);
    std::vector<uint64_t> got(kWordsPerBlock);
    const char* via = which == 0 ? "view A" : which == 1 ? "view B" : "read()";
    while (!stop.load(std::memory_order_relaxed)) {
      std::this_thread::yield();  // let the chaos thread in (2 cores, 8 workers)
      const uint64_t sh0 = md.shrinks.load();
      const uint64_t sz0 = md.size.load();
      const uint64_t lim =
          rng() % 8 == 0 ? geo.blocks : std::max<uint64_t>(1, round_up(sz0) / kBlock);
      const uint64_t p = geo.pick_block(rng, lim);
      const uint64_t w0 = p * kWordsPerBlock + rng() % kWordsPerBlock;
      const uint64_t cnt = std::min<uint64_t>((p + 1) * kWordsPerBlock - w0, 1 + rng() % 64);
      for (uint64_t i = 0; i < cnt; ++i) {
        const uint64_t w = w0 + i;
        pre[i].ws = md.ws[w].load(std::memory_order_acquire);
        pre[i].we = md.we[w].load(std::memory_order_acquire);
        pre[i].zcs = md.zcs[w].load(std::memory_order_acquire);
      }
      uint64_t valid = 0;
      if (which < 2) {
        const uint64_t* src =
            reinterpret_cast<const uint64_t*>(which == 0 ? A.data() : B.data());
        volatile uint64_t done = 0;
        uint64_t* dst = got.data();
        auto bus = fl::guarded([&] {
          for (uint64_t i = 0; i < cnt; ++i) {
            dst[i] = __atomic_load_n(&src[w0 + i], __ATOMIC_RELAXED);
            done = i + 1;
          }
        });
        valid = done;
        n.view_reads.fetch_add(1, std::memory_order_relaxed);
        if (bus) {
          n.read_sigbus.fetch_add(1, std::memory_order_relaxed);
          const uint64_t off = (w0 + done) * 8;
          const uint64_t sz1 = md.size.load();
          const bool raced = md.shrank_since(sh0);
          if (!raced && (off < round_up(std::min(sz0, sz1)) || bus->code != BUS_ADRERR)) {
            std::ostringstream o;
            o << via << ": SIGBUS (code " << bus->code << ") at " << off << " inside EOF "
              << std::min(sz0, sz1);
            fails.add(o.str());
          }
        }
      } else {
        size_t r = 0;
        try {
          r = f.read(w0 * 8, std::as_writable_bytes(std::span(got.data(), cnt)));
        } catch (const std::exception& ex) {
          fails.add(std::string("File::read threw: ") + ex.what());
          continue;
        }
        valid = r / 8;
        n.read_calls.fetch_add(1, std::memory_order_relaxed);
        const uint64_t sz1 = md.size.load();
        const bool raced = md.shrank_since(sh0);
        if (!raced && w0 * 8 + r < std::min<uint64_t>((w0 + cnt) * 8, std::min(sz0, sz1)))
          fails.add("read(): short read inside EOF at " + std::to_string(w0 * 8 + r));
      }
      // Only words below the model's size during the whole read are checked
      // (past EOF, inside the EOF page, junk stores are allowed).
      const uint64_t lo = std::min(sz0, md.size.load());
      for (uint64_t i = 0; i < valid; ++i) {
        const uint64_t w = w0 + i;
        if ((w + 1) * 8 > lo) break;
        auto msg = check_word(md, w, got[i], pre[i], via);
        if (!msg.empty()) fails.add(msg);
        n.words_checked.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  // --- the private view ------------------------------------------------------
  // Pages p % 4 == 0 take its stores (a copy each); the others must follow the
  // file and are checked like any reader's.
  auto priv = [&] {
    std::mt19937_64 rng(4242);
    struct Rec {
      uint64_t w, v, cut;
    };
    std::vector<Rec> recs;
    volatile uint64_t* pv = reinterpret_cast<volatile uint64_t*>(P.data());
    while (!stop.load(std::memory_order_relaxed)) {
      std::this_thread::yield();  // let the chaos thread in (2 cores, 8 workers)
      const int op = static_cast<int>(rng() % 3);
      if (op == 0) {
        const uint64_t p = (rng() % (kMaxPages / 4)) * 4;
        const uint64_t w = p * kWordsPerPage + rng() % kWordsPerPage;
        const uint64_t e0 = md.cut_end[p].load(), b0 = md.cut_begin[p].load();
        if (b0 != e0) continue;  // a shrink is cutting it
        const uint64_t v = stamp(kPriv, w, md.tick());
        auto bus = fl::guarded([&] { pv[w] = v; });
        n.priv_stores.fetch_add(1, std::memory_order_relaxed);
        if (bus) continue;
        std::erase_if(recs, [&](const Rec& r) { return r.w == w; });
        recs.push_back({w, v, b0});
      } else if (op == 1 && !recs.empty()) {
        const size_t i = rng() % recs.size();
        const Rec r = recs[i];
        volatile uint64_t got = 0;
        auto bus = fl::guarded([&] { got = pv[r.w]; });
        const uint64_t b1 = md.cut_begin[r.w / kWordsPerPage].load();
        if (b1 != r.cut) {  // cut by a shrink: the copy may be gone
          recs.erase(recs.begin() + static_cast<ptrdiff_t>(i));
          continue;
        }
        n.priv_checks.fetch_add(1, std::memory_order_relaxed);
        if (bus || got != r.v) {
          std::ostringstream o;
          o << "private view: word " << r.w << " lost its private copy: "
            << (bus ? "SIGBUS" : "value changed") << " (got " << std::hex << got << ")";
          fails.add(o.str());
          recs.erase(recs.begin() + static_cast<ptrdiff_t>(i));
        }
      } else {
        uint64_t p = rng() % kMaxPages;
        if (p % 4 == 0) p += 1 + rng() % 3;
        const uint64_t sh0 = md.shrinks.load();
        const uint64_t sz0 = md.size.load();
        if ((p + 1) * kPs > sz0) continue;
        const uint64_t w0 = p * kWordsPerPage + rng() % (kWordsPerPage - 8);
        Pre pre[8];
        uint64_t got[8];
        for (int i = 0; i < 8; ++i)
          pre[i] = {md.ws[w0 + i].load(), md.we[w0 + i].load(), md.zcs[w0 + i].load()};
        auto bus = fl::guarded([&] {
          for (int i = 0; i < 8; ++i) got[i] = pv[w0 + i];
        });
        n.priv_reads.fetch_add(1, std::memory_order_relaxed);
        if (bus) {
          if (!md.shrank_since(sh0))
            fails.add("private view: SIGBUS (code " + std::to_string(bus->code) +
                      ") inside EOF " + std::to_string(sz0) + " at page " + std::to_string(p));
          continue;
        }
        const uint64_t lo = std::min(sz0, md.size.load());
        for (int i = 0; i < 8; ++i) {
          if ((w0 + i + 1) * 8 > lo) break;
          auto msg = check_word(md, w0 + i, got[i], pre[i], "private view (untouched page)");
          if (!msg.empty()) fails.add(msg);
        }
      }
    }
    // Final: every copy no shrink cut still holds its store.
    for (const Rec& r : recs) {
      if (md.cut_begin[r.w / kWordsPerPage].load() != r.cut) continue;
      volatile uint64_t got = 0;
      auto bus = fl::guarded([&] { got = pv[r.w]; });
      if (bus || got != r.v) fails.add("private view: copy lost at the end, word " + std::to_string(r.w));
    }
  };

  // --- chaos -------------------------------------------------------------
  auto chaos = [&] {
    std::mt19937_64 rng(99);
    while (!stop.load(std::memory_order_relaxed)) {
      const int op = static_cast<int>(rng() % 10);
      const uint64_t sz = md.size.load();
      try {
        if (op < 3) {
          // Truncate to a word-aligned size, up or down.
          uint64_t ns = (rng() % (kMaxSize / 8 + 1)) * 8;
          if (rng() % 4 == 0) ns = ns / kPs * kPs;
          chaos_wants.store(true);
          std::unique_lock g(size_mu);
          chaos_wants.store(false);
          const uint64_t t0 = md.tick();
          if (ns < sz) {
            const uint64_t keep = (ns + kPs - 1) / kPs;
            // A word past the old EOF page is checked again only after the
            // extend that brings it back, a later zero event: 2 MiB frames
            // (4M words) mark only up to there, 4 KiB ones everything.
            const uint64_t zhi = huge ? std::min(kWords, round_up(sz) / 8) : kWords;
            md.shrinks.fetch_add(1);
            for (uint64_t p = keep; p < kMaxPages; ++p) md.cut_begin[p].fetch_add(1);
            md.size.store(ns);  // lowered first
            md.zero_begin(ns / 8, zhi, t0);
            f.truncate(ns);
            const uint64_t t1 = md.tick();
            md.zero_end(ns / 8, zhi, t0, t1);
            for (uint64_t p = keep; p < kMaxPages; ++p) md.cut_end[p].fetch_add(1);
            md.shrinks.fetch_add(1);  // even again: no shrink running
          } else {
            md.zero_begin(sz / 8, ns / 8, t0);
            f.truncate(ns);
            const uint64_t t1 = md.tick();
            md.zero_end(sz / 8, ns / 8, t0, t1);
            md.size.store(ns);  // raised after
          }
          const uint64_t fb = faultline::testing::FileAccess::frame_bytes(f);
          if (fb != round_up(ns))
            fails.add("memfd size " + std::to_string(fb) + " after truncate to " + std::to_string(ns));
          n.truncates.fetch_add(1, std::memory_order_relaxed);
        } else if (op < 6) {
          const uint64_t off = (rng() % (kMaxSize / 8)) * 8;
          uint64_t len = (1 + rng() % (4 * kPs / 8)) * 8;
          if (rng() % 3 == 0) {
            len = ((len + kPs - 1) / kPs) * kPs;
          }
          // File::write never extends, so the size is sz throughout.
          const uint64_t end = std::min(off + len, sz);
          const uint64_t t0 = md.tick();
          if (off < end) md.zero_begin(off / 8, end / 8, t0);
          f.punch_hole(off, len);
          const uint64_t t1 = md.tick();
          if (off < end) md.zero_end(off / 8, end / 8, t0, t1);
          n.punches.fetch_add(1, std::memory_order_relaxed);
        } else {
          const uint64_t off = rng() % kMaxSize;
          const uint64_t len = 1 + rng() % (kMaxPages / 4 * kPs);  // 4K: 16 pages
          auto failed = f.invalidate(off, len);
          if (!failed.empty()) {
            n.launder_failed.fetch_add(failed.size());
            fails.add("invalidate could not launder " + std::to_string(failed.size()) + " pages");
          }
          n.invalidates.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (const std::exception& ex) {
        fails.add(std::string("chaos op threw: ") + ex.what());
      }
      if (rng() % 4 == 0) std::this_thread::yield();
    }
  };

  std::vector<std::thread> th;
  th.emplace_back(view_writer, 1);
  th.emplace_back(view_writer, 2);
  th.emplace_back(file_writer);
  for (int r = 0; r < 3; ++r) th.emplace_back(reader, r);
  if (!huge) th.emplace_back(priv);
  th.emplace_back(chaos);
  std::this_thread::sleep_for(duration);
  stop.store(true);
  // A deadlock shows as threads that never finish: give them a bound.
  std::atomic<bool> joined{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 600 && !joined.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!joined.load()) {
      std::fprintf(stderr, "DEADLOCK: stress threads did not stop within 60 s\n");
      std::fflush(stderr);
      std::_Exit(3);
    }
  });
  for (auto& t : th) t.join();
  joined.store(true);
  watchdog.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t_start).count();

  // --- the quiescent checks --------------------------------------------------
  const uint64_t size = f.size();
  EXPECT_EQ(size, md.size.load());
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), round_up(size)) << "memfd size vs i_size";
  EXPECT_NO_THROW(f.sync());
  auto via_read = read_file(f, 0, kMaxSize);
  ASSERT_EQ(via_read.size(), size);
  auto a = copy_out(A.data(), size);
  auto b = copy_out(B.data(), size);
  ASSERT_TRUE(a && b) << "SIGBUS inside EOF after the run";
  EXPECT_EQ(diff(*a, via_read), "") << "view A vs read()";
  EXPECT_EQ(diff(*b, via_read), "") << "view B vs read()";
  EXPECT_EQ(st.size(), size) << "backend size";
  EXPECT_EQ(diff(st.bytes(0, kMaxSize), via_read), "") << "backend vs read()";
  if (round_up(size) < kMaxSize) {
    EXPECT_TRUE(load(A.data() + round_up(size)).bus.has_value()) << "no SIGBUS past the EOF page";
  }
  // Every word against the model, now that nothing runs.
  uint64_t final_bad = 0;
  for (uint64_t w = 0; w < size / 8; ++w) {
    uint64_t v;
    std::memcpy(&v, via_read.data() + w * 8, 8);
    const Pre pre{md.ws[w].load(), md.we[w].load(), md.zcs[w].load()};
    auto msg = check_word(md, w, v, pre, "final");
    if (!msg.empty() && final_bad++ < 5) ADD_FAILURE() << msg;
    // Quiescent: the last completed event decides exactly.
    const uint64_t ze = md.ze[w].load();
    const bool ambiguous = pre.ws <= ze && pre.we >= pre.zcs;  // store and zero overlapped
    const uint64_t want = pre.ws > ze ? stamp(owner(w), w, pre.ws) : 0;
    if (!ambiguous && v != want && final_bad++ < 5)
      ADD_FAILURE() << "final: word " << w << " = " << std::hex << v << " want " << want;
  }
  // Untouched private pages follow the file.
  for (uint64_t p = 0; !huge && p < size / kPs; ++p) {
    if (p % 4 == 0) continue;
    auto v = copy_out(P.data() + p * kPs, kPs);
    ASSERT_TRUE(v);
    EXPECT_EQ(diff(*v, std::vector<std::byte>(via_read.begin() + p * kPs,
                                              via_read.begin() + (p + 1) * kPs)),
              "")
        << "private view page " << p << " does not follow the file";
  }
  // No frame outside the index: the memfd's allocated pages lie below the
  // EOF page; after invalidating everything the memfd holds no data at all.
  // hugetlbfs has no SEEK_DATA: there, the allocated bytes (st_blocks).
  const int mfd = find_memfd(st.backend()->identity());
  ASSERT_GE(mfd, 0) << "memfd not found in /proc/self/fd";
  size_t resident_before = 0;
  if (!huge) {
    for (auto [lo, hi] : data_ranges(mfd)) EXPECT_LE(hi, round_up(size)) << "frame past EOF";
    resident_before = data_ranges(mfd).size();
  } else {
    const uint64_t held = allocated_bytes(mfd);
    EXPECT_LE(held, round_up(size)) << "frames past EOF";
    EXPECT_EQ(held % kPs, 0u) << "memfd holds a partial 2 MiB frame";
    resident_before = held / kPs;
  }
  EXPECT_TRUE(f.invalidate(0, kMaxSize).empty());
  if (!huge) {
    const auto left = data_ranges(mfd);
    for (auto [lo, hi] : left)
      ADD_FAILURE() << "frame outside the index after invalidate: [" << lo << ", " << hi << ")";
  } else {
    EXPECT_EQ(allocated_bytes(mfd), 0u) << "frames outside the index after invalidate";
  }
  // And the data comes back from the backend, identical.
  auto a2 = copy_out(A.data(), size);
  ASSERT_TRUE(a2);
  EXPECT_EQ(diff(*a2, via_read), "") << "after invalidate, view A vs the earlier read()";

  for (const auto& m : fails.msgs) ADD_FAILURE() << m;
  EXPECT_EQ(fails.count.load(), 0u);
  const auto s = f.stats();
  const uint64_t ops = n.stores + n.writes + n.view_reads + n.read_calls + n.priv_stores +
                       n.priv_reads + n.priv_checks + n.truncates + n.punches + n.invalidates;
  std::printf(
      "[stress %s] %.1f s, %" PRIu64 " ops: %" PRIu64 " view stores (%" PRIu64 " SIGBUS), %" PRIu64
      " File::write, %" PRIu64 " view reads + %" PRIu64 " read() (%" PRIu64 " SIGBUS), %" PRIu64
      " words checked; private: %" PRIu64 " stores, %" PRIu64 " checks, %" PRIu64
      " reads; chaos: %" PRIu64 " truncates, %" PRIu64 " punches, %" PRIu64
      " invalidates; engine: %" PRIu64 " faults (%" PRIu64 " missing, %" PRIu64 " minor, %" PRIu64
      " wp), %" PRIu64 " pages truncated, %" PRIu64 " invalidated, %" PRIu64
      " written back, %" PRIu64 " fault retries; final size %" PRIu64 ", %zu resident %s\n",
      stress_name({GetParam(), 0}).c_str(), secs, ops, n.stores.load(),
      n.store_sigbus.load(), n.writes.load(), n.view_reads.load(), n.read_calls.load(),
      n.read_sigbus.load(), n.words_checked.load(), n.priv_stores.load(), n.priv_checks.load(),
      n.priv_reads.load(), n.truncates.load(), n.punches.load(), n.invalidates.load(),
      s.missing_faults + s.minor_faults + s.wp_faults, s.missing_faults, s.minor_faults,
      s.wp_faults, s.pages_truncated, s.pages_invalidated, s.pages_written_back,
      s.fault_retries, size, resident_before, huge ? "frames" : "ranges");
  RecordProperty("ops", std::to_string(ops));
  RecordProperty("seconds", std::to_string(secs));
}

INSTANTIATE_TEST_SUITE_P(Tr, Stress,
                         ::testing::Values(StressParam{Kind::File, false},
                                           StressParam{Kind::Memory, false},
                                           StressParam{Kind::File, true},
                                           StressParam{Kind::Memory, true}),
                         stress_name);

}  // namespace
}  // namespace tr
