// faultline CLI — the RADOS read bench (`faultline bench --file rados://...`):
// first touch of every page of a RADOS file through a faultline mapping vs
// direct RadosBackend::read of the same objects. Built only with librados
// (FAULTLINE_HAVE_RADOS).
#pragma once
#include <cstdint>
#include <string>

#include "bench/measure.hpp"
#include "faultline/engine.hpp"

namespace faultline::cli {

/// The largest Backend::read the rados-read method issues for sequential
/// order (the backend splits it into read_split pieces, max_in_flight at once).
inline constexpr uint64_t kRadosSeqReadBytes = uint64_t{4} << 20;

/// The file's size as a fresh read-only backend for `uri` reports it; also the
/// backend's object size, read_split and max_in_flight (for the table header).
struct RadosFileInfo {
  uint64_t size = 0;
  uint64_t object_size = 0;
  uint64_t read_split = 0;
  unsigned max_in_flight = 0;
  std::string identity;
};
RadosFileInfo rados_file_info(const std::string& uri);

/// faultline: a fresh read-only backend + Engine + File untimed; map + touch
/// timed; teardown untimed. plan.path is the URI.
/// frame_size: 4 KiB frames (method faultline) or 2 MiB frames (faultline-2M).
Sample measure_rados_faultline(const ReadPlan& plan, const EngineConfig& config,
                               FrameSize frame_size = FrameSize::k4K);
/// rados-read: a fresh read-only backend untimed; timed: sequential order reads
/// kRadosSeqReadBytes per Backend::read call, random order one page-sized
/// Backend::read per page; one 8-byte load per page summed as for the others.
Sample measure_rados_direct(const ReadPlan& plan);

}  // namespace faultline::cli
