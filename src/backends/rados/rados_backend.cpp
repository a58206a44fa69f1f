// The RADOS backend: connection, header object, chunked AIO reads and writes,
// truncate, punch_hole, sync. Watch / notify live in rados_coherence.cpp.
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>

#include "backends/rados/rados_impl.hpp"
#include "faultline/constants.hpp"

namespace faultline {

namespace {

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "rados: " + what);
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// One extent of a request inside one chunk object.
struct Extent {
  uint64_t index;     // chunk index
  uint64_t obj_off;   // offset inside the object
  uint64_t len;
  uint64_t buf_off;   // offset inside the caller's buffer
};

std::vector<Extent> split(uint64_t off, uint64_t len, uint64_t obj_size, uint64_t max_piece) {
  std::vector<Extent> v;
  uint64_t done = 0;
  while (done < len) {
    const uint64_t pos = off + done;
    const uint64_t in = pos % obj_size;
    const uint64_t n = std::min({len - done, obj_size - in, max_piece});
    v.push_back({pos / obj_size, in, n, done});
    done += n;
  }
  return v;
}

}  // namespace

RadosBackend::Impl::Impl(const RadosOptions& o) : opt(o) {
  if (auto why = rados::check_name(opt.name); !why.empty())
    fail(EINVAL, "bad file name '" + opt.name + "': " + why);
  if (opt.pool.empty()) fail(EINVAL, "no pool given");
  if (opt.object_size == 0 || opt.object_size % kBasePageSize)
    fail(EINVAL, "object_size " + std::to_string(opt.object_size) + " is not a multiple of " +
                     std::to_string(kBasePageSize));
  if (opt.max_in_flight == 0) opt.max_in_flight = 1;
  if (opt.read_split < kBasePageSize) opt.read_split = kBasePageSize;
  hdr_oid = rados::header_name(opt.name);
  token = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  rados::Header h;
  try {
    connect();
    open_header(h);
  } catch (...) {
    disconnect();  // the destructor does not run for a constructor that throws
    throw;
  }
  obj_size = h.object_size;
  size = h.size;
  header_size = h.size;
}

void RadosBackend::Impl::disconnect() {
  if (io) rados_ioctx_destroy(io);
  io = nullptr;
  if (cluster) rados_shutdown(cluster);
  cluster = nullptr;
}

void RadosBackend::Impl::connect() {
  const std::string where = "cluster '" + opt.cluster + "'" +
                            (opt.conf.empty() ? std::string() : " (conf " + opt.conf + ")");
  if (int r = rados_create2(&cluster, opt.cluster.c_str(), opt.user.c_str(), 0); r < 0) {
    cluster = nullptr;
    fail(-r, "cannot create a handle for " + where + " as " + opt.user);
  }
  if (!opt.conf.empty() && ::access(opt.conf.c_str(), R_OK) != 0) {
    const int e = errno;
    fail(e, "cannot read ceph.conf '" + opt.conf + "'");
  }
  // No conf given: librados's default search; finding none is not an error.
  if (int r = rados_conf_read_file(cluster, opt.conf.empty() ? nullptr : opt.conf.c_str());
      r < 0 && !opt.conf.empty())
    fail(-r, "cannot parse ceph.conf '" + opt.conf + "'");
  // These options exist in every librados (Debian 12's 16.2 and later) and the
  // values are numbers: a failure is a librados bug, and would leave only
  // Ceph's default (longer) timeouts.
  (void)rados_conf_set(cluster, "client_mount_timeout", num(opt.connect_timeout_s).c_str());
  (void)rados_conf_set(cluster, "rados_osd_op_timeout", num(opt.op_timeout_s).c_str());
  (void)rados_conf_set(cluster, "rados_mon_op_timeout", num(opt.op_timeout_s).c_str());
  if (int r = rados_connect(cluster); r < 0)
    fail(-r, "cannot connect to " + where + ": " + std::strerror(-r) +
                 (r == -ETIMEDOUT ? " (no monitor answered within " + num(opt.connect_timeout_s) + " s)"
                                  : std::string()));
  char fs[64] = {};
  if (rados_cluster_fsid(cluster, fs, sizeof fs) >= 0) fsid = fs;  // else: fsid stays unknown
  if (int r = rados_ioctx_create(cluster, opt.pool.c_str(), &io); r < 0) {
    io = nullptr;
    fail(-r, r == -ENOENT ? "pool '" + opt.pool + "' does not exist in " + where
                          : "cannot open pool '" + opt.pool + "': " + std::strerror(-r));
  }
}

void RadosBackend::Impl::open_header(rados::Header& h) {
  int r = read_header(h);
  if (r == -ENOENT && opt.create) {
    if (!opt.writable) fail(EROFS, "cannot create '" + opt.name + "' read-only");
    // Exclusive create: two engines creating at once agree on one header.
    const std::string text = rados::encode_header({opt.object_size, 0});
    rados_write_op_t op = rados_create_write_op();
    rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, nullptr);
    rados_write_op_write_full(op, text.data(), text.size());
    r = rados_write_op_operate(op, io, hdr_oid.c_str(), nullptr, 0);
    rados_release_write_op(op);
    if (r < 0 && r != -EEXIST)
      fail(-r, "cannot create header object '" + hdr_oid + "' in pool '" + opt.pool + "': " +
                   std::strerror(-r));
    r = read_header(h);
  }
  if (r == -ENOENT)
    fail(ENOENT, "no file '" + opt.name + "' in pool '" + opt.pool + "' (header object '" +
                     hdr_oid + "' missing; use create=1)");
  if (r == -EINVAL)
    fail(EINVAL, "object '" + hdr_oid + "' in pool '" + opt.pool +
                     "' is not a faultline-rados header (wrong format)");
  if (r < 0) fail(-r, "cannot read header object '" + hdr_oid + "': " + std::strerror(-r));
}

RadosBackend::Impl::~Impl() {
  stop_watch();
  if (io) {
    rados_aio_flush(io);
    rados_ioctx_destroy(io);
  }
  if (cluster) rados_shutdown(cluster);
}

int RadosBackend::Impl::read_header(rados::Header& h) {
  char buf[4097];
  const int r = rados_read(io, hdr_oid.c_str(), buf, 4096, 0);
  if (r < 0) return r;
  auto d = rados::decode_header(std::string(buf, static_cast<size_t>(r)));
  if (!d) return -EINVAL;
  h = *d;
  return 0;
}

int RadosBackend::Impl::write_header(uint64_t sz) {
  const std::string text = rados::encode_header({obj_size, sz});
  return rados_write_full(io, hdr_oid.c_str(), text.data(), text.size());
}

int RadosBackend::Impl::run(std::vector<Op>& ops) {
  int first = 0;
  std::deque<std::pair<rados_completion_t, size_t>> inflight;
  auto reap = [&] {
    auto [c, i] = inflight.front();
    inflight.pop_front();
    rados_aio_wait_for_complete(c);
    const int r = rados_aio_get_return_value(c);
    rados_aio_release(c);
    const int e = ops[i].done(r);
    if (e < 0 && !first) first = e;
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    while (inflight.size() >= opt.max_in_flight) reap();
    rados_completion_t c;
    if (int r = rados_aio_create_completion2(nullptr, nullptr, &c); r < 0) {
      if (!first) first = r;
      break;
    }
    if (int r = ops[i].issue(c); r < 0) {
      rados_aio_release(c);
      if (!first) first = r;
      break;
    }
    inflight.emplace_back(c, i);
    uint64_t m = ctr.max_in_flight.load();
    while (inflight.size() > m && !ctr.max_in_flight.compare_exchange_weak(m, inflight.size())) {
    }
  }
  while (!inflight.empty()) reap();
  return first;
}

static double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool RadosBackend::Impl::is_dead(uint64_t index) {
  std::lock_guard l(dead_mu);
  auto it = dead_until.find(index);
  if (it == dead_until.end()) return false;
  if (steady_now() < it->second) return true;
  dead_until.erase(it);
  return false;
}

void RadosBackend::Impl::mark(uint64_t index, int r) {
  if (r != -ETIMEDOUT) return;
  std::lock_guard l(dead_mu);
  dead_until[index] = steady_now() + opt.op_timeout_s;
}

// ---- RadosBackend ----

RadosBackend::RadosBackend(const RadosOptions& options) : impl_(std::make_unique<Impl>(options)) {}
RadosBackend::~RadosBackend() = default;

std::string RadosBackend::identity() const {
  return "rados:" + impl_->fsid + "/" + impl_->opt.pool + "/" + impl_->opt.name;
}
bool RadosBackend::writable() const { return impl_->opt.writable; }
int64_t RadosBackend::size() { return static_cast<int64_t>(impl_->size.load()); }
uint64_t RadosBackend::object_size() const { return impl_->obj_size; }
const RadosOptions& RadosBackend::options() const { return impl_->opt; }
std::string RadosBackend::header_object() const { return impl_->hdr_oid; }
std::string RadosBackend::chunk_object(uint64_t index) const {
  return rados::chunk_name(impl_->opt.name, index);
}

RadosCounters RadosBackend::counters() const {
  auto& c = impl_->ctr;
  RadosCounters r;
  r.objects_read = c.objects_read;
  r.objects_written = c.objects_written;
  r.max_in_flight = c.max_in_flight;
  r.notifies_sent = c.notifies_sent;
  r.notify_timeouts = c.notify_timeouts;
  r.notifies_received = c.notifies_received;
  r.notifies_own = c.notifies_own;
  r.ranges_received = c.ranges_received;
  r.watch_errors = c.watch_errors;
  return r;
}

ssize_t RadosBackend::read(uint64_t off, std::span<std::byte> buf) {
  Impl& m = *impl_;
  std::shared_lock g(m.layout_mu);
  const uint64_t sz = m.size.load();
  if (off >= sz || buf.empty()) return 0;
  const uint64_t len = std::min<uint64_t>(buf.size(), sz - off);
  auto ext = split(off, len, m.obj_size, m.opt.read_split);
  std::vector<std::string> oids(ext.size());
  std::vector<Impl::Op> ops(ext.size());
  for (size_t i = 0; i < ext.size(); ++i) {
    oids[i] = rados::chunk_name(m.opt.name, ext[i].index);
    char* dst = reinterpret_cast<char*>(buf.data() + ext[i].buf_off);
    const Extent e = ext[i];
    ops[i].issue = [&m, &oids, i, dst, e](rados_completion_t c) {
      if (m.is_dead(e.index)) return -ETIMEDOUT;
      m.ctr.objects_read++;
      return rados_aio_read(m.io, oids[i].c_str(), c, dst, e.len, e.obj_off);
    };
    ops[i].done = [&m, dst, e](int r) {
      m.mark(e.index, r);
      if (r == -ENOENT) r = 0;  // absent chunk: a hole
      if (r < 0) return r;
      if (static_cast<uint64_t>(r) < e.len) std::memset(dst + r, 0, e.len - r);  // short object
      return 0;
    };
  }
  if (int r = m.run(ops); r < 0) return r;
  return static_cast<ssize_t>(len);
}

int RadosBackend::write(uint64_t off, std::span<const std::byte> buf) {
  Impl& m = *impl_;
  if (!m.opt.writable) return -EROFS;
  if (buf.empty()) return 0;
  std::shared_lock g(m.layout_mu);
  {
    std::lock_guard l(m.mu);
    ++m.active_writes;
  }
  auto ext = split(off, buf.size(), m.obj_size, m.obj_size);
  std::vector<std::string> oids(ext.size());
  std::vector<Impl::Op> ops(ext.size());
  for (size_t i = 0; i < ext.size(); ++i) {
    oids[i] = rados::chunk_name(m.opt.name, ext[i].index);
    const char* src = reinterpret_cast<const char*>(buf.data() + ext[i].buf_off);
    const Extent e = ext[i];
    ops[i].issue = [&m, &oids, i, src, e](rados_completion_t c) {
      if (m.is_dead(e.index)) return -ETIMEDOUT;
      m.ctr.objects_written++;
      return rados_aio_write(m.io, oids[i].c_str(), c, src, e.len, e.obj_off);
    };
    ops[i].done = [&m, e](int r) {
      m.mark(e.index, r);
      return r < 0 ? r : 0;
    };
  }
  const int r = m.run(ops);
  {
    std::lock_guard l(m.mu);
    // Even a failed write may have reached some objects: peers must re-read.
    m.changed.add(off, buf.size());
    if (r == 0) {
      uint64_t s = m.size.load();
      while (off + buf.size() > s && !m.size.compare_exchange_weak(s, off + buf.size())) {
      }
    }
    if (--m.active_writes == 0) m.idle_cv.notify_all();
  }
  return r;
}

int RadosBackend::truncate(uint64_t new_size) {
  Impl& m = *impl_;
  if (!m.opt.writable) return -EROFS;
  std::unique_lock g(m.layout_mu);
  const uint64_t old = std::max<uint64_t>(m.size.load(), m.header_size);
  std::vector<Impl::Op> ops;
  std::vector<std::string> oids;
  if (new_size < old) {
    const uint64_t first_gone = (new_size + m.obj_size - 1) / m.obj_size;
    const uint64_t last = (old + m.obj_size - 1) / m.obj_size;  // exclusive
    for (uint64_t i = first_gone; i < last; ++i) oids.push_back(rados::chunk_name(m.opt.name, i));
    for (size_t i = 0; i < oids.size(); ++i) {
      ops.push_back({[&m, &oids, i](rados_completion_t c) {
                       m.ctr.objects_written++;
                       return rados_aio_remove(m.io, oids[i].c_str(), c);
                     },
                     [](int r) { return r == -ENOENT ? 0 : r < 0 ? r : 0; }});
    }
    // The chunk holding the new EOF: cut it there (only if it is longer: a
    // truncate would extend a shorter object).
    if (const uint64_t keep = new_size % m.obj_size; keep != 0) {
      const std::string oid = rados::chunk_name(m.opt.name, new_size / m.obj_size);
      uint64_t osz = 0;
      time_t mt;
      int r = rados_stat(m.io, oid.c_str(), &osz, &mt);
      if (r == 0 && osz > keep) r = rados_trunc(m.io, oid.c_str(), keep);
      if (r < 0 && r != -ENOENT) return r;
    }
  }
  if (int r = m.run(ops); r < 0) return r;
  if (int r = m.write_header(new_size); r < 0) return r;
  std::lock_guard l(m.mu);
  if (new_size < old) m.changed.add(new_size, old - new_size);
  m.size = new_size;
  m.header_size = new_size;
  m.header_dirty = true;  // the next sync tells the peers
  return 0;
}

int RadosBackend::punch_hole(uint64_t off, uint64_t len) {
  Impl& m = *impl_;
  if (!m.opt.writable) return -EROFS;
  std::unique_lock g(m.layout_mu);
  const uint64_t sz = m.size.load();
  if (off >= sz || len == 0) return 0;
  const uint64_t end = std::min<uint64_t>(sz, off + len < off ? ~uint64_t{0} : off + len);
  auto ext = split(off, end - off, m.obj_size, m.obj_size);
  std::vector<std::string> oids(ext.size());
  std::vector<Impl::Op> ops;
  for (size_t i = 0; i < ext.size(); ++i) {
    oids[i] = rados::chunk_name(m.opt.name, ext[i].index);
    const Extent e = ext[i];
    const uint64_t cstart = e.index * m.obj_size;
    // The whole chunk (up to EOF) is covered: remove the object.
    const bool whole = e.obj_off == 0 && cstart + e.len >= std::min(cstart + m.obj_size, sz);
    ops.push_back({[&m, &oids, i, e, whole](rados_completion_t c) {
                     m.ctr.objects_written++;
                     rados_write_op_t op = rados_create_write_op();
                     rados_write_op_assert_exists(op);
                     if (whole) rados_write_op_remove(op);
                     else rados_write_op_zero(op, e.obj_off, e.len);
                     const int r = rados_aio_write_op_operate(op, m.io, c, oids[i].c_str(), nullptr, 0);
                     rados_release_write_op(op);
                     return r;
                   },
                   [](int r) { return r == -ENOENT ? 0 : r < 0 ? r : 0; }});
  }
  const int r = m.run(ops);
  std::lock_guard l(m.mu);
  m.changed.add(off, end - off);
  return r;
}

uint64_t RadosBackend::readahead_bytes() const { return 4 * object_size(); }

int RadosBackend::sync() {
  Impl& m = *impl_;
  if (!m.opt.writable) return 0;
  {
    // Every write in flight (other threads' write() calls) completes first.
    std::unique_lock l(m.mu);
    m.idle_cv.wait(l, [&] { return m.active_writes == 0; });
  }
  std::shared_lock g(m.layout_mu);  // no truncate / punch in between
  uint64_t sz;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  bool size_news;
  {
    std::lock_guard l(m.mu);
    sz = m.size.load();
    ranges = m.changed.ranges();
    m.changed.clear();
    size_news = m.header_dirty || sz != m.header_size;
    m.header_dirty = false;
  }
  auto restore = [&] {  // a failed sync keeps what it owes the peers
    std::lock_guard l(m.mu);
    for (auto [o, n] : ranges) m.changed.add(o, n);
    if (size_news) m.header_dirty = true;
  };
  if (sz != m.header_size) {
    if (int r = m.write_header(sz); r < 0) {
      restore();
      return r;
    }
    std::lock_guard l(m.mu);
    m.header_size = sz;
  }
  g.unlock();
  if (ranges.empty() && !size_news) return 0;
  if (int r = m.notify_peers(sz, ranges); r < 0) {
    restore();
    return r;
  }
  return 0;
}

std::shared_ptr<RadosBackend> make_rados_backend(const RadosOptions& options) {
  return std::make_shared<RadosBackend>(options);
}

std::shared_ptr<RadosBackend> make_rados_backend(std::string_view uri) {
  return make_rados_backend(parse_rados_uri(uri));
}

}  // namespace faultline
