// faultline CLI — one timed bench measurement: read every 4 KiB page of a file
// once (one 8-byte load per page, summed so nothing is optimized out) in a
// given order, through a faultline mapping, the kernel's mmap, or pread.
// The write bench (bench/write.hpp) and the RADOS read bench (bench/rados.hpp)
// reuse these types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "faultline/engine.hpp"
#include "faultline/stats.hpp"

namespace faultline::cli {

/// Pwrite: the write bench's pwrite row. RadosRead: direct RadosBackend::read
/// of the same objects (the RADOS bench's baseline). Faultline2M: a faultline
/// mapping of a File opened with FileOptions::frame_size = FrameSize::k2M
/// (method name "faultline-2M").
/// Device: the file read with O_DIRECT, kDeviceInFlight reads of
/// kDeviceReadBytes in flight into 2 MiB huge pages where the pool has them
/// (the device's own limit, no page cache; read bench, cold only). Measured
/// here: 4 KiB-page buffers cap a request at max_segments (254 x 4 KiB), which
/// halved the rate (1.0-1.6 GB/s vs 5-7.8 GB/s into huge pages).
enum class Method {
  Faultline, Mmap, Pread, Pwrite, RadosRead, Faultline2M, FaultlineAsync, Device, Faultline2MAsync,
  UmapApi,  ///< umap-api: the same loop through UMap's API (umap/umap.h) on faultline (--umap-api)
};
inline constexpr unsigned kDeviceInFlight = 4;
inline constexpr uint64_t kDeviceReadBytes = uint64_t{2} << 20;
enum class Pattern { Seq, Rand };
/// NotApplicable: no kernel page cache involved (RADOS files). Resident: the
/// engine already holds every frame (faultline-2M only: a first Mapping touched
/// every page untimed; the timed region is a second Mapping of the same File);
/// its baseline is kernel mmap warm.
enum class CacheState { Cold, Warm, NotApplicable, Resident };

/// faultline, faultline-async, faultline-2M or faultline-2M-async.
inline bool is_faultline(Method m) {
  return m == Method::Faultline || m == Method::Faultline2M || m == Method::FaultlineAsync ||
         m == Method::Faultline2MAsync;
}

const char* to_string(Method m);
const char* to_string(Pattern p);
const char* to_string(CacheState c);

/// What to read: the file, its length, the page unit and the page order.
struct ReadPlan {
  std::string path;
  uint64_t size = 0;
  std::size_t page_size = 0;            ///< the unit of one load (kBasePageSize)
  uint64_t pages = 0;                   ///< ceil(size / page_size)
  const std::vector<uint32_t>* order = nullptr;  ///< page indices; null = sequential
};

struct Sample {
  double ns = 0;             ///< the timed region, wall clock
  uint64_t word_sum = 0;     ///< sum of the first 8 bytes of every page (same for all methods)
  double resident_before = 0;  ///< kernel page cache residency set before the method
  Stats stats{};             ///< the File's counters (faultline only)
  bool data_ok = true;       ///< write bench: the file held every stamp afterwards
  uint64_t bad_pages = 0;    ///< write bench: pages whose contents were wrong
  uint64_t pages_stored = 0; ///< write bench: pages stored to (one store each)
  /// Write bench: where the timed region went — the stores (faults, fills,
  /// write notification), msync (write-back to the file) and fsync (the file to disk).
  double store_ns = 0, msync_ns = 0, fsync_ns = 0;
  bool have_rados = false;   ///< RADOS bench: the counters below are set
  uint64_t rados_objects_read = 0;
  uint64_t rados_max_in_flight = 0;
  /// Memory the method holds right after the timed region (before teardown):
  /// the File's frames (faultline: pages filled x frame size, net of pages
  /// dropped) and the file's bytes in the kernel's page cache (mincore).
  bool have_memory = false;
  uint64_t mem_frames_bytes = 0;
  uint64_t mem_kernel_cache_bytes = 0;
  /// faultline-2M: 2 MiB huge pages taken from the pool (HugePages_Free before
  /// the Engine was made minus after the timed region; other users of the pool
  /// disturb it).
  int64_t hugepages_used = -1;
  std::size_t frame_size = 0;  ///< faultline: the File's page_size()
};

/// 2 MiB huge pages a File can take: free - reserved + overcommit headroom
/// (faultline/hugepages.hpp; -1 when it cannot be read).
int64_t hugepages_free();

/// A fresh Engine + File are made untimed; map + touch is timed; the Mapping,
/// File and Engine are torn down untimed. A SIGBUS during the touch becomes a
/// std::runtime_error.
/// frame_size k2M: the File caches in 2 MiB frames (needs the huge page pool).
/// resident: map + touch of every page untimed first (the engine then holds
/// every frame), that Mapping unmapped, then a second Mapping of the same File
/// + touch timed; stats are those of the timed part only.
Sample measure_faultline(const ReadPlan& plan, const EngineConfig& config,
                         FrameSize frame_size = FrameSize::k4K, bool resident = false);
/// umap(UMAP_PRIVATE, PROT_READ) + touch timed, as a UMap program does (its
/// settings from the UMAP_* environment); uunmap untimed. Frames held: the
/// region's resident pages (mincore) before uunmap.
Sample measure_umap_api(const ReadPlan& plan);
/// mmap(MAP_SHARED, PROT_READ) + touch timed (no MAP_POPULATE, no madvise);
/// open and munmap untimed.
Sample measure_mmap(const ReadPlan& plan);
/// One pread of a page per page, in the plan's order, timed; open untimed.
Sample measure_pread(const ReadPlan& plan);

Sample measure(Method m, const ReadPlan& plan, const EngineConfig& config,
               CacheState cache = CacheState::Cold);

}  // namespace faultline::cli
