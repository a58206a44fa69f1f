#include "checksum/command.hpp"
#include "common/path_arg.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <stdexcept>
#include <vector>

#include "faultline/constants.hpp"
#include "faultline/engine.hpp"
#include "faultline/guarded.hpp"
#include "checksum/fnv1a.hpp"
#ifdef FAULTLINE_HAVE_RADOS
#include "faultline/rados_backend.hpp"
#endif
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

constexpr std::size_t kReadBuffer = std::size_t{1} << 20;

struct ReadResult {
  uint64_t digest = 0;
  uint64_t bytes = 0;
};

ReadResult checksum_read(int fd, const std::string& path) {
  Fnv1a64 h;
  std::vector<std::byte> buf(kReadBuffer);
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read '" + path + "'");
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  return {h.digest(), total};
}

std::string describe_bus(const BusError& bus, const std::string& path, const std::byte* base) {
  return fmt::format("SIGBUS ({}) reading '{}' through the faultline mapping at offset {}",
                     bus.code == BUS_MCEERR_AR ? "I/O error" : fmt::format("si_code {}", bus.code),
                     path, static_cast<const std::byte*>(bus.addr) - base);
}

uint64_t checksum_faultline(const std::string& path, uint64_t size, std::size_t frame_size) {
  Engine engine;
  FileOptions fo;
  if (frame_size == kHugePageSize) fo.frame_size = FrameSize::k2M;
  File file = engine.open(make_file_backend(path, /*writable=*/false), fo);
  if (file.page_size() != frame_size)
    throw std::runtime_error(fmt::format("the engine cached '{}' in {} frames, not the {} asked for",
                                         path, format_size(file.page_size()),
                                         format_size(frame_size)));
  if (file.size() != size)
    throw std::runtime_error(
        fmt::format("faultline sees '{}' as {} bytes, stat says {}", path, file.size(), size));
  Fnv1a64 h;
  if (size == 0) return h.digest();  // a mapping cannot be 0 bytes long
  Mapping m = file.map(0, size, Access::ReadOnly);
  const std::byte* base = m.data();
  const auto bus = guarded([&] { h.update(base, size); });
  if (bus) throw std::runtime_error(describe_bus(*bus, path, base));
  return h.digest();
}

#ifdef FAULTLINE_HAVE_RADOS
/// `checksum rados://...`: the mapping's bytes vs the backend's own reads
/// (Backend::read: read(2) does not apply to a RADOS object).
int run_checksum_rados(const ChecksumOptions& o, std::size_t frame_size) {
  RadosOptions ro = parse_rados_uri(o.path);
  ro.writable = false;
  ro.create = false;
  std::shared_ptr<RadosBackend> backend = make_rados_backend(ro);
  const int64_t ssize = backend->size();
  if (ssize < 0)
    throw std::system_error(static_cast<int>(-ssize), std::generic_category(),
                            "size of '" + o.path + "'");
  const auto size = static_cast<uint64_t>(ssize);

  // The backend's own reads, 4 MiB per call (page aligned, as Backend::read
  // requires); a short read is the object's end, zero-filled as the engine does.
  Fnv1a64 direct;
  {
    std::vector<std::byte> buf(std::size_t{4} << 20);
    for (uint64_t off = 0; off < size; off += buf.size()) {
      const std::size_t len = static_cast<std::size_t>(std::min<uint64_t>(buf.size(), size - off));
      const ssize_t n = backend->read(off, std::span(buf.data(), len));
      if (n < 0)
        throw std::system_error(static_cast<int>(-n), std::generic_category(),
                                fmt::format("RadosBackend::read of '{}' at {}", o.path, off));
      if (static_cast<std::size_t>(n) < len)
        std::memset(buf.data() + n, 0, len - static_cast<std::size_t>(n));
      direct.update(buf.data(), len);
    }
  }

  Fnv1a64 mapped;
  {
    Engine engine;
    FileOptions fo;
    if (frame_size == kHugePageSize) fo.frame_size = FrameSize::k2M;
    File file = engine.open(backend, fo);
    if (file.page_size() != frame_size)
      throw std::runtime_error(fmt::format("the engine cached '{}' in {} frames, not the {} asked "
                                           "for",
                                           o.path, format_size(file.page_size()),
                                           format_size(frame_size)));
    if (file.size() != size)
      throw std::runtime_error(fmt::format("faultline sees '{}' as {} bytes, the backend says {}",
                                           o.path, file.size(), size));
    if (size > 0) {
      Mapping m = file.map(0, size, Access::ReadOnly);
      const std::byte* base = m.data();
      const auto bus = guarded([&] { mapped.update(base, size); });
      if (bus) throw std::runtime_error(describe_bus(*bus, o.path, base));
    }
  }

  fmt::print("{:016x}  faultline  {}\n", mapped.digest(), o.path);
  fmt::print("{:016x}  backend    {}\n", direct.digest(), o.path);
  const bool same = mapped.digest() == direct.digest();
  fmt::print("{} bytes, fnv1a64, mapping vs RadosBackend::read (read(2) does not apply), {}\n",
             size, same ? "checksums match" : "CHECKSUMS DIFFER");
  return same ? 0 : 1;
}
#endif

}  // namespace

CLI::App* add_checksum_command(CLI::App& app, ChecksumOptions& o) {
  auto* cmd = app.add_subcommand(
      "checksum",
      "Hash a file (64-bit FNV-1a of its bytes) through a read-only faultline mapping and "
      "through read(2) (for a RADOS file: through the backend's own reads); exit 0 if equal, 1 "
      "if they differ, 2 on error");
  cmd->add_option("path", o.path,
                  "The file to check, or a RADOS file: rados://POOL/NAME?conf=PATH[&...]")
      ->required();
  cmd->add_option("--frames", o.frames,
                  "Frame (page) size of the faultline cache: 4K, or 2M (hugetlb frames; needs a "
                  "pool of 2 MiB huge pages, vm.nr_hugepages)")
      ->capture_default_str();
  return cmd;
}

int run_checksum(const ChecksumOptions& o) {
  const auto frames = parse_size(o.frames);
  if (!frames) throw std::invalid_argument("--frames: '" + o.frames + "' is not a size");
  if (*frames != kBasePageSize && *frames != kHugePageSize)
    throw std::invalid_argument(fmt::format("--frames {}: this engine caches in {} or {} frames",
                                            o.frames, format_size(kBasePageSize),
                                            format_size(kHugePageSize)));

  if (std::string_view(o.path).starts_with("rados://")) {
#ifdef FAULTLINE_HAVE_RADOS
    return run_checksum_rados(o, *frames);
#else
    throw std::runtime_error("'" + o.path + "': this faultline was built without librados "
                             "(RADOS URIs unsupported)");
#endif
  }

  // A regular file whose size is its length: anything else (a FIFO would
  // block the open, a /proc file's size is 0) is refused, saying what it is.
  UniqueFd fd = open_regular_file(o.path, O_RDONLY);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(o.path);
  const auto size = static_cast<uint64_t>(st.st_size);

  const ReadResult by_read = checksum_read(fd.get(), o.path);
  if (by_read.bytes != size)
    throw std::runtime_error(fmt::format("{}: read(2) returned {} bytes but the file has {} (did "
                                         "it change while being read?)",
                                         o.path, by_read.bytes, size));
  const uint64_t by_faultline = checksum_faultline(o.path, size, *frames);

  fmt::print("{:016x}  faultline  {}\n", by_faultline, o.path);
  fmt::print("{:016x}  read(2)    {}\n", by_read.digest, o.path);
  const bool same = by_faultline == by_read.digest;
  fmt::print("{} bytes, fnv1a64, {}\n", size, same ? "checksums match" : "CHECKSUMS DIFFER");
  return same ? 0 : 1;
}

}  // namespace faultline::cli
