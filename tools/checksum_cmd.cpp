#include "checksum_cmd.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

#include "faultline/constants.hpp"
#include "faultline/engine.hpp"
#include "faultline/guarded.hpp"
#include "fnv1a.hpp"
#include "size_arg.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

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

uint64_t checksum_faultline(const std::string& path, uint64_t size, std::size_t frame_size) {
  Engine engine;
  File file = engine.open(path, /*writable=*/false);
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
  if (bus)
    throw std::runtime_error(fmt::format(
        "SIGBUS ({}) reading '{}' through the faultline mapping at offset {}",
        bus->code == BUS_MCEERR_AR ? "I/O error" : fmt::format("si_code {}", bus->code), path,
        static_cast<const std::byte*>(bus->addr) - base));
  return h.digest();
}

}  // namespace

CLI::App* add_checksum_command(CLI::App& app, ChecksumOptions& o) {
  auto* cmd = app.add_subcommand(
      "checksum",
      "Hash a file (64-bit FNV-1a of its bytes) through a read-only faultline mapping and "
      "through read(2); exit 0 if equal, 1 if they differ, 2 on error");
  cmd->add_option("path", o.path, "The file to check")->required();
  cmd->add_option("--frames", o.frames, "Frame (page) size of the faultline cache; only 4K exists")
      ->capture_default_str();
  return cmd;
}

int run_checksum(const ChecksumOptions& o) {
  const auto frames = parse_size(o.frames);
  if (!frames) throw std::invalid_argument("--frames: '" + o.frames + "' is not a size");
  if (*frames != kBasePageSize)
    throw std::invalid_argument(fmt::format("--frames {}: this engine caches in {} frames only",
                                            o.frames, format_size(kBasePageSize)));

  UniqueFd fd(::open(o.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno(o.path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(o.path);
  if (S_ISDIR(st.st_mode)) throw_errno(EISDIR, o.path);
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(o.path + ": not a regular file");
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
