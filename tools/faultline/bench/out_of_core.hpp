// faultline CLI — `faultline bench --out-of-core`: a file several times larger
// than the memory allowed, touched (one 8-byte load per touched 4 KiB page)
// uniformly, on a hot set, with Zipf 0.99, by a sequential scan, and by a scan
// beside a hot-set thread; faultline (memory_limit_pages = the limit; 4 KiB
// and 2 MiB frames; default configuration, no advice) against the kernel's
// mmap (default and MADV_RANDOM) in a memory cgroup limited to the same bytes
// and O_DIRECT reads. Each measurement runs cold, in a child process.
#pragma once

namespace faultline::cli {

struct BenchOptions;

/// Runs it. Returns 0, or 1 when a measurement failed (not a stated skip).
int run_ooc_bench(const BenchOptions& opts);

}  // namespace faultline::cli
