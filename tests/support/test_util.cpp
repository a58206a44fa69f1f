#include "test_util.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <future>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace ft {

std::vector<std::byte> pattern(uint64_t off, std::size_t len, uint32_t seed) {
  std::vector<std::byte> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = pat(off + i, seed);
  return v;
}

int64_t first_diff(const std::byte* a, const std::byte* b, std::size_t len) {
  // (Empty vectors have null data(): memcmp must not see them, even for 0 bytes.)
  if (len == 0 || std::memcmp(a, b, len) == 0) return -1;
  for (std::size_t i = 0; i < len; ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

bool all_zero(const std::byte* p, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}

TempDir::TempDir() {
  char tmpl[] = "/var/tmp/faultline-test-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::make_file(const std::string& name, uint64_t size, uint32_t seed) const {
  const std::string p = file(name);
  const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + p);
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t off = 0; off < size; off += kChunk) {
    const auto n = std::min<uint64_t>(kChunk, size - off);
    auto d = pattern(off, n, seed);
    if (::pwrite(fd, d.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      const int e = errno;
      ::close(fd);
      throw std::system_error(e, std::generic_category(), "pwrite " + p);
    }
  }
  ::close(fd);
  return p;
}

void drop_cache(const std::string& path, uint64_t size, uint64_t from) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ::fsync(fd);
  ::posix_fadvise(fd, static_cast<off_t>(from & ~uint64_t{kPage - 1}), static_cast<off_t>(size),
                  POSIX_FADV_DONTNEED);
  ::close(fd);
}

uint64_t kernel_cached_pages(const std::string& path, uint64_t off, uint64_t len) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off));
  ::close(fd);
  EXPECT_NE(p, MAP_FAILED);
  if (p == MAP_FAILED) return ~uint64_t{0};
  std::vector<unsigned char> vec((len + kPage - 1) / kPage);
  EXPECT_EQ(::mincore(p, len, vec.data()), 0);
  ::munmap(p, len);
  uint64_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

std::vector<std::byte> pread_file(const std::string& path, uint64_t off, std::size_t len) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
  std::vector<std::byte> v(len);
  std::size_t done = 0;
  while (done < len) {
    const ssize_t r = ::pread(fd, v.data() + done, len - done, static_cast<off_t>(off + done));
    if (r <= 0) break;
    done += static_cast<std::size_t>(r);
  }
  ::close(fd);
  v.resize(done);
  return v;
}

void pwrite_file(const std::string& path, uint64_t off, std::span<const std::byte> data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
  const ssize_t r = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
  const int e = errno;
  ::close(fd);
  if (r != static_cast<ssize_t>(data.size()))
    throw std::system_error(e, std::generic_category(), "pwrite " + path);
}

uint64_t file_size(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    throw std::system_error(errno, std::generic_category(), "stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

// ---------------------------------------------------------------------------

WrapBackend::WrapBackend(std::shared_ptr<faultline::Backend> inner, std::string id_suffix)
    : ForwardingBackend(std::move(inner)), id_(inner_->identity() + id_suffix) {}

std::string WrapBackend::identity() const { return id_; }

bool WrapBackend::hits(const std::set<uint64_t>& pages, uint64_t off, uint64_t len) const {
  if (len == 0) return false;
  auto it = pages.lower_bound(off / kPage);
  return it != pages.end() && *it <= (off + len - 1) / kPage;
}

ssize_t WrapBackend::counted_read(uint64_t off, uint64_t len,
                                  const std::function<ssize_t()>& read_fn) {
  {
    std::lock_guard g(mu_);
    if (hits(bad_read_, off, len)) {
      read_calls.fetch_add(1);
      failed_reads.fetch_add(1);
      return -EIO;
    }
  }
  const ssize_t r = read_fn();
  if (r == -EOPNOTSUPP) return r;  // the engine falls back to read(), counted there
  read_calls.fetch_add(1);
  if (r > 0) read_bytes.fetch_add(static_cast<uint64_t>(r));
  return r;
}

ssize_t WrapBackend::read(uint64_t off, std::span<std::byte> buf) {
  return counted_read(off, buf.size(), [&] { return inner_->read(off, buf); });
}

ssize_t WrapBackend::read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) {
  return counted_read(off, len, [&] { return inner_->read_into_fd(off, len, fd, fd_off); });
}

ssize_t WrapBackend::read_aligned(uint64_t off, std::span<std::byte> buf) {
  return counted_read(off, buf.size(), [&] { return inner_->read_aligned(off, buf); });
}

int WrapBackend::counted_write(uint64_t off, uint64_t len, const std::function<int()>& write_fn) {
  {
    std::lock_guard g(mu_);
    if (hits(bad_write_, off, len)) {
      failed_writes.fetch_add(1);
      return -EIO;
    }
  }
  const int r = write_fn();
  if (r == 0) {
    write_calls.fetch_add(1);
    write_bytes.fetch_add(len);
    std::lock_guard g(mu_);
    writes_.push_back({off, len});
  }
  return r;  // -EOPNOTSUPP (write_aligned): the engine calls write(), counted there
}

int WrapBackend::write(uint64_t off, std::span<const std::byte> buf) {
  return counted_write(off, buf.size(), [&] { return inner_->write(off, buf); });
}

int WrapBackend::write_aligned(uint64_t off, std::span<const std::byte> buf) {
  return counted_write(off, buf.size(), [&] { return inner_->write_aligned(off, buf); });
}

int WrapBackend::mkwrite_check(uint64_t off, uint64_t len) {
  mkwrite_calls.fetch_add(1);
  std::lock_guard g(mu_);
  return hits(bad_mkwrite_, off, len) ? -ENOSPC : 0;
}

int WrapBackend::page_mkwrite(uint64_t off, size_t len) {
  if (int e = mkwrite_check(off, len)) return e;
  return inner_->page_mkwrite(off, len);
}

int WrapBackend::page_mkwrite(MkwritePage& page) {
  if (int e = mkwrite_check(page.offset(), page.size())) return e;
  return inner_->page_mkwrite(page);
}

void WrapBackend::fail_reads(std::set<uint64_t> pages) {
  std::lock_guard g(mu_);
  bad_read_ = std::move(pages);
}
void WrapBackend::fail_writes(std::set<uint64_t> pages) {
  std::lock_guard g(mu_);
  bad_write_ = std::move(pages);
}
void WrapBackend::fail_mkwrite(std::set<uint64_t> pages) {
  std::lock_guard g(mu_);
  bad_mkwrite_ = std::move(pages);
}

std::vector<WrapBackend::Range> WrapBackend::writes() const {
  std::lock_guard g(mu_);
  return writes_;
}

std::vector<uint64_t> WrapBackend::written_pages() const {
  std::vector<uint64_t> out;
  for (const Range& r : writes())
    for (uint64_t p = r.off / kPage; r.len && p <= (r.off + r.len - 1) / kPage; ++p)
      out.push_back(p);
  return out;
}

void WrapBackend::reset_counts() {
  read_calls = 0;
  read_bytes = 0;
  write_calls = 0;
  write_bytes = 0;
  failed_reads = 0;
  failed_writes = 0;
  mkwrite_calls = 0;
  std::lock_guard g(mu_);
  writes_.clear();
}

// ---------------------------------------------------------------------------

void run_with_timeout(const std::function<void()>& fn, std::chrono::seconds limit,
                      const char* what) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  std::thread t([fn, done] {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  if (fut.wait_for(limit) != std::future_status::ready) {
    // A deadlock: nothing can be torn down cleanly any more. Report and end
    // the process (ctest runs each test in its own process).
    ADD_FAILURE() << what << " did not finish within " << limit.count() << " s (deadlock?)";
    std::fprintf(stderr, "FATAL: %s timed out after %lld s (deadlock?)\n", what,
                 static_cast<long long>(limit.count()));
    std::fflush(nullptr);
    std::_Exit(1);
  }
  t.join();
  fut.get();
}

uint64_t touch_read(const std::byte* p, std::size_t len) {
  uint64_t sum = 0;
  const volatile unsigned char* v = reinterpret_cast<const volatile unsigned char*>(p);
  for (std::size_t i = 0; i < len; i += 64) sum += v[i];
  return sum;
}

int io_error_sigbus_code() {
  static const int code = [] {
    // zcat-free: /proc/config.gz needs gzip; ask the shell once.
    FILE* p = ::popen("zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null", "r");
    if (!p) return -1;
    std::string all;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) all.append(buf, n);
    ::pclose(p);
    if (all.find("CONFIG_MEMORY_FAILURE=y") != std::string::npos) return int{BUS_MCEERR_AR};
    if (all.find("CONFIG_MMU=y") != std::string::npos) return int{BUS_ADRERR};  // config read, no MEMORY_FAILURE
    return -1;
  }();
  return code;
}

bool io_error_code_ok(int code) {
  const int want = io_error_sigbus_code();
  return want == -1 ? (code == BUS_MCEERR_AR || code == BUS_ADRERR) : code == want;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

bool sanitizer_build() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

}  // namespace ft
