// faultline CLI — the write bench (`faultline bench --write`): one 8-byte store
// per 4 KiB page, in sequential or random page order, to an existing file,
// made durable at the end, through a faultline mapping (page_mkwrite mode),
// the kernel's mmap, or pwrite; then the file is read back with pread and
// every page checked (its stamp in the first 8 bytes, the rest unchanged).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/measure.hpp"
#include "faultline/engine.hpp"

namespace faultline::cli {

/// What to store: the file, the page unit and order, and a stamp generation
/// (distinct per measurement, so a stale stamp of an earlier method is caught).
struct WritePlan {
  std::string path;
  uint64_t size = 0;                 ///< a multiple of page_size
  std::size_t page_size = 0;
  uint64_t pages = 0;
  const std::vector<uint32_t>* order = nullptr;  ///< null = sequential
  uint64_t generation = 0;
};

/// The 8 bytes stored at the start of page `page` by measurement `generation`.
uint64_t page_stamp(uint64_t generation, uint64_t page);

/// A hash of each page's bytes after its first 8 (what the stores must not
/// change), read with pread. Throws std::system_error.
std::vector<uint64_t> page_tail_hashes(const std::string& path, uint64_t size,
                                       std::size_t page_size);

/// Reads the file back with pread and counts the pages whose first 8 bytes are
/// not plan's stamp or whose tail hash differs from `tails`. Sets
/// s.data_ok / s.bad_pages; returns a description of the first bad page ("" if
/// none).
std::string verify_written(const WritePlan& plan, const std::vector<uint64_t>& tails, Sample& s);

/// faultline: fresh Engine + writable File untimed; timed: map (shared,
/// read-write) + the stores + Mapping::msync(MS_SYNC) over the whole view +
/// File::fsync() (the file backend's sync is fsync(2)); teardown untimed.
Sample measure_write_faultline(const WritePlan& plan, const EngineConfig& config,
                               DirtyTracking tracking = DirtyTracking::Mkwrite);
/// kernel: timed: mmap(MAP_SHARED, PROT_READ|PROT_WRITE) + the stores +
/// msync(MS_SYNC) + fsync(2); open and munmap untimed.
Sample measure_write_mmap(const WritePlan& plan);
/// pwrite: timed: one 8-byte pwrite(2) per page (the same store) + fsync(2).
Sample measure_write_pwrite(const WritePlan& plan);

Sample measure_write(Method m, const WritePlan& plan, const EngineConfig& config);

}  // namespace faultline::cli
