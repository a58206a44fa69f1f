// Helpers for the issue-4 tests (truncate, punch_hole, invalidate, poison,
// private views): one backing store abstraction over the file backend (a temp
// file under /var/tmp, checked with plain pread/stat) and the memory backend
// (checked through the backend object itself, never through the engine).
#pragma once
#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "faultline/faultline.hpp"
#include "faultline/forwarding_backend.hpp"
#include "test_util.hpp"
#include "testing/testing.hpp"

namespace tr {

namespace fl = faultline;
inline constexpr std::size_t kPs = fl::kBasePageSize;

enum class Kind { File, Memory };

inline std::string kind_name(const ::testing::TestParamInfo<Kind>& i) {
  return i.param == Kind::File ? "File" : "Memory";
}

/// The backing object of a test: a pattern-filled temp file or memory object.
class Store {
 public:
  Store(Kind kind, const std::string& name, uint64_t size, uint32_t seed = 1) : kind_(kind) {
    if (kind == Kind::File) {
      dir_ = std::make_unique<ft::TempDir>();
      path_ = dir_->make_file(name, size, seed);
      be_ = fl::make_file_backend(path_, true);
    } else {
      be_ = fl::make_memory_backend(name + "-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter()++),
                                    0);
      auto d = ft::pattern(0, size, seed);
      if (!d.empty()) be_->write(0, d);
    }
  }
  Kind kind() const { return kind_; }
  const std::shared_ptr<fl::Backend>& backend() const { return be_; }
  const std::string& path() const { return path_; }

  /// The object's bytes, read around the engine.
  std::vector<std::byte> bytes(uint64_t off, size_t len) const {
    if (kind_ == Kind::File) return ft::pread_file(path_, off, len);
    std::vector<std::byte> v(len);
    const ssize_t r = be_->read(off, v);
    v.resize(r > 0 ? static_cast<size_t>(r) : 0);
    return v;
  }
  /// The object's size, around the engine (stat for the file).
  uint64_t size() const {
    if (kind_ == Kind::File) return ft::file_size(path_);
    return static_cast<uint64_t>(be_->size());
  }
  /// Changes the object underneath the engine (another process writes it:
  /// pwrite on the file's own descriptor).
  void write_under(uint64_t off, std::span<const std::byte> d) const {
    if (kind_ == Kind::File) {
      ft::pwrite_file(path_, off, d);
    } else {
      be_->write(off, d);
    }
  }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  Kind kind_;
  std::unique_ptr<ft::TempDir> dir_;
  std::string path_;
  std::shared_ptr<fl::Backend> be_;
};

/// One byte loaded through a view, or the SIGBUS it raised.
struct Load {
  std::optional<fl::BusError> bus;
  std::byte value{0};
  bool ok() const { return !bus.has_value(); }
};
inline Load load(const std::byte* p) {
  Load l;
  volatile unsigned char v = 0;
  l.bus = fl::guarded([&] { v = *reinterpret_cast<const volatile unsigned char*>(p); });
  l.value = static_cast<std::byte>(v);
  return l;
}
/// A store through a view; the SIGBUS if it raised one.
inline std::optional<fl::BusError> store(std::byte* p, std::byte v) {
  return fl::guarded([&] { *reinterpret_cast<volatile unsigned char*>(p) = static_cast<unsigned char>(v); });
}
/// Copies [p, p+len) out of a view with a guarded scope; nullopt on SIGBUS.
inline std::optional<std::vector<std::byte>> copy_out(const std::byte* p, size_t len) {
  std::vector<std::byte> v(len);
  std::byte* dst = v.data();
  auto bus = fl::guarded([&] {
    for (size_t i = 0; i < len; ++i)
      dst[i] = static_cast<std::byte>(reinterpret_cast<const volatile unsigned char*>(p)[i]);
  });
  if (bus) return std::nullopt;
  return v;
}
/// Fills [p, p+len) of a view with `v` in a guarded scope; false on SIGBUS.
inline bool fill_view(std::byte* p, size_t len, std::byte v) {
  auto bus = fl::guarded([&] {
    for (size_t i = 0; i < len; ++i)
      reinterpret_cast<volatile unsigned char*>(p)[i] = static_cast<unsigned char>(v);
  });
  return !bus;
}

inline std::vector<std::byte> read_file(fl::File& f, uint64_t off, size_t len) {
  std::vector<std::byte> v(len);
  v.resize(f.read(off, v));
  return v;
}

inline std::vector<std::byte> filled(size_t n, char c) {
  return std::vector<std::byte>(n, static_cast<std::byte>(c));
}

inline bool is_zero(const std::vector<std::byte>& v) { return ft::all_zero(v.data(), v.size()); }

/// Where two byte ranges differ first ("" when equal).
inline std::string diff(const std::vector<std::byte>& got, const std::vector<std::byte>& want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
  const int64_t d = ft::first_diff(got.data(), want.data(), got.size());
  if (d < 0) return "";
  return "first difference at +" + std::to_string(d) + ": got " +
         std::to_string(static_cast<int>(got[d])) + " want " +
         std::to_string(static_cast<int>(want[d]));
}

/// The memfd that holds a File's frames: the /proc/self/fd entry whose link
/// is "/memfd:faultline:<identity>..."; -1 when not found.
inline int find_memfd(const std::string& identity) {
  const std::string want = "/memfd:faultline:" + identity;
  int found = -1;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    char link[512];
    const std::string p = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = ::readlink(p.c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    link[n] = 0;
    std::string s(link);
    // "/memfd:faultline:<key> (deleted)"
    if (s.rfind(want, 0) == 0 && (s.size() == want.size() || s[want.size()] == ' ')) {
      found = std::atoi(e->d_name);
      break;
    }
  }
  ::closedir(d);
  return found;
}

/// The allocated (data) ranges of fd, by SEEK_DATA / SEEK_HOLE, as
/// [begin, end) byte pairs.
inline std::vector<std::pair<uint64_t, uint64_t>> data_ranges(int fd) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  off_t pos = 0;
  for (;;) {
    const off_t d = ::lseek(fd, pos, SEEK_DATA);
    if (d < 0) break;  // ENXIO: no data past pos
    const off_t h = ::lseek(fd, d, SEEK_HOLE);
    if (h < 0 || h <= d) break;
    out.emplace_back(static_cast<uint64_t>(d), static_cast<uint64_t>(h));
    pos = h;
  }
  return out;
}

inline uint64_t round_up(uint64_t v) { return (v + kPs - 1) / kPs * kPs; }

/// A backend wrapper whose writable() is false (a read-only object), for
/// EROFS checks with either backend; reads are forwarded (every read path).
class ReadOnlyBackend : public fl::ForwardingBackend {
 public:
  explicit ReadOnlyBackend(std::shared_ptr<fl::Backend> inner) : ForwardingBackend(std::move(inner)) {}
  std::string identity() const override { return inner_->identity() + ":ro"; }
  bool writable() const override { return false; }
  int write(uint64_t, std::span<const std::byte>) override { return -EROFS; }
  int write_aligned(uint64_t, std::span<const std::byte>) override { return -EROFS; }
  int page_mkwrite(uint64_t, size_t) override { return -EROFS; }
  int page_mkwrite(MkwritePage&) override { return -EROFS; }
  int truncate(uint64_t) override { return -EROFS; }
  int punch_hole(uint64_t, uint64_t) override { return -EROFS; }
  int sync() override { return 0; }
};

/// A backend wrapper without hole support: punch_hole fails EOPNOTSUPP.
class NoHoleBackend : public fl::ForwardingBackend {
 public:
  explicit NoHoleBackend(std::shared_ptr<fl::Backend> inner) : ForwardingBackend(std::move(inner)) {}
  std::string identity() const override { return inner_->identity() + ":nohole"; }
  int punch_hole(uint64_t, uint64_t) override { return -EOPNOTSUPP; }
  bool can_punch_hole() const override { return false; }
};

class TrTest : public ::testing::TestWithParam<Kind> {};

}  // namespace tr
