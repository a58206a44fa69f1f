// faultline verify — options, defaults, validation and the replay line.
#include "verify/options.hpp"

#include <fmt/format.h>

#include <fstream>
#include <random>
#include <stdexcept>

#include "faultline/constants.hpp"
#include "testing/faulty_backend.hpp"
#include "faultline/hugepages.hpp"
#include "common/size_arg.hpp"

namespace faultline::cli {

namespace {
struct OpInfo {
  const char* name;
  unsigned weight;
  const char* help;
};
constexpr OpInfo kOps[kVerifyOps] = {
    {"read", 10, "File::read, checked against the model"},
    {"write", 10, "File::write (extends the file past EOF)"},
    {"mapread", 10, "loads through a Mapping (shared RO / shared RW / private), SIGBUS past the EOF page"},
    {"mapwrite", 10, "stores through a shared RW or private Mapping (extends first, like fsx)"},
    {"truncate", 3, "File::truncate, shrink or extend"},
    {"punch", 2, "File::punch_hole"},
    {"invalidate", 2, "File::invalidate of a range"},
    {"sync", 3, "msync(2) of a view, File::sync or File::fsync"},
    {"dropcache", 1, "sync, then invalidate the whole file"},
    {"reopen", 1, "unmap every view and close the handle (the last close writes back data and "
                  "size), or close the whole Engine, with or without a sync first; open again, "
                  "remap; data and size must survive"},
    {"remap", 2, "unmap one Mapping and map it at a new address and offset"},
    {"eofjunk", 2, "store junk past EOF in the EOF page, probe SIGBUS beyond it"},
    {"reclaim", 2, "Engine::reclaim: evict clean pages (as under the memory limit); data unchanged"},
    {"teardown", 2, "map a second shared RW view of a few pages, store through it, unmap it (with "
                    "--threads: racing with other threads' sync, invalidate, flusher, reclaim)"},
};
}  // namespace

const char* verify_op_name(VerifyOp op) { return kOps[static_cast<int>(op)].name; }

CLI::App* add_verify_command(CLI::App& app, VerifyOptions& o) {
  CLI::App* c = app.add_subcommand(
      "verify",
      "fsx-style model checker: random operations on a faultline File, each result checked "
      "against an in-memory model; exit 1 on a mismatch with a replay command.\n"
      "Operations (weight flags --w-NAME): read write mapread mapwrite truncate punch invalidate "
      "sync dropcache reopen remap eofjunk reclaim teardown.\n"
      "Write-back: single thread runs with the flusher off (write-back only at sync ops, so a "
      "seed replays exactly); --threads > 1 runs a busy flusher (20 ms interval, 50 ms expiry).\n"
      "Not supported by the engine yet (left out): short writes in the Backend API (write:short "
      "injects a torn write: a prefix lands, then EIO), "
      "a second handle onto the same File (R8 per handle is checked for "
      "one handle plus per-view msync).\n"
      "--frames 2M: the File caches in 2 MiB hugetlb frames (needs a pool of free 2 MiB huge "
      "pages: scripts/setup.sh --hugepages N); pages, alignment and sizes are then 2 MiB, and "
      "private views are left out (the engine refuses them for 2 MiB Files).");
  for (int i = 0; i < kVerifyOps; ++i) o.weights[static_cast<size_t>(i)] = kOps[i].weight;
  c->add_option("--ops", o.ops, "operations to run (default 100000)");
  c->add_option("--seed", o.seed_text, "random seed (default: random; always printed)");
  c->add_option("--size", o.size_text, "maximum file size, page aligned (default 1M; 8M with --frames 2M)");
  c->add_option("--max-len", o.max_len_text, "largest single access (default 64K; 3M with --frames 2M)");
  c->add_option("--backend", o.backend, "file or memory (default file)")
      ->check(CLI::IsMember({"file", "memory"}));
  c->add_option("--frames", o.frames_text,
                "frame (page) size of the File: 4K or 2M (2 MiB hugetlb frames; needs a huge page "
                "pool; no private views) (default 4K)")
      ->check(CLI::IsMember({"4K", "2M", "4k", "2m"}));
  c->add_option("--threads", o.threads, "threads, each owning a page-aligned slice (default 1)");
  c->add_option("--inject", o.inject,
                "fault injection spec, e.g. read:eio:0.01,write:enospc:0.005,mkwrite:eio:0.01,seed=N "
                "or read:eio@OFFSET, write:eio=@N (see src/testing/faulty_backend.hpp)");
  c->add_option("--keep-log", o.keep_log, "write every operation to FILE");
  c->add_option("--dir", o.dir, "directory for the backing file (default /var/tmp)");
  c->add_option("--views", o.views, "Mappings of each kind (default 2)");
  for (int i = 0; i < kVerifyOps; ++i) {
    c->add_option(std::string("--w-") + kOps[i].name, o.weights[static_cast<size_t>(i)],
                  fmt::format("weight of {}: {} (default {})", kOps[i].name, kOps[i].help,
                              kOps[i].weight));
  }
  c->add_flag("--quiet", o.quiet, "print only the summary");
  c->add_flag("--strict-poison", o.strict_poison,
              "a page poisoned by an I/O error must keep raising SIGBUS in its view until "
              "invalidated/punched/truncated, as mapping.hpp documents (default: it may also come "
              "back with correct data, which the engine does today when a neighbouring fault's "
              "fault-around installs over the poison marker)");
  c->add_flag("--self-test-corrupt", o.self_test_corrupt)->group("");  // hidden
  return c;
}

std::string validate_verify_options(VerifyOptions& o) {
  const bool huge = o.frames_text == "2M" || o.frames_text == "2m";
  if (o.size_text.empty()) o.size_text = huge ? "8M" : "1M";
  if (o.max_len_text.empty()) o.max_len_text = huge ? "3M" : "64K";
  const auto size = parse_size(o.size_text);
  if (!size || *size == 0) return fmt::format("--size '{}' is not a positive size", o.size_text);
  o.frame = huge ? kHugePageSize : kBasePageSize;
  if (*size % o.frame)
    return fmt::format("--size {} is not a multiple of the page size ({})", *size, o.frame);
  if (*size > (uint64_t{1} << 34)) return "--size larger than 16 GiB";
  o.size = *size;
  const auto ml = parse_size(o.max_len_text);
  if (!ml || *ml == 0) return fmt::format("--max-len '{}' is not a positive size", o.max_len_text);
  o.max_len = std::min<uint64_t>(*ml, o.size);
  if (o.ops == 0) return "--ops must be at least 1";
  if (o.threads == 0 || o.threads > 64) return "--threads must be 1..64";
  if (o.size / o.frame < o.threads)
    return "--size too small: every thread needs a slice of at least one page";
  if (o.frame == kHugePageSize) {
    // The File needs one 2 MiB huge page per frame of its largest size.
    const uint64_t need = o.size / o.frame;
    const int64_t avail = hugepage_pool().available();  // incl. overcommit headroom
    if (avail < static_cast<int64_t>(need))
      return fmt::format("--frames 2M --size {} needs {} free 2 MiB huge pages; the pool has {} "
                         "(vm.nr_hugepages + vm.nr_overcommit_hugepages headroom): reserve one as root with `scripts/setup.sh "
                         "--hugepages {}`",
                         o.size, need, avail, need);
  }
  if (o.views == 0 || o.views > 16) return "--views must be 1..16";
  unsigned total = 0;
  for (unsigned w : o.weights) total += w;
  if (total == 0) return "every operation weight is 0";
  if (o.seed_text.empty()) {
    std::random_device rd;
    o.seed = (uint64_t{rd()} << 32 | rd()) % 1000000000000ull;
    o.seed_text = std::to_string(o.seed);
  } else {
    try {
      size_t used = 0;
      o.seed = std::stoull(o.seed_text, &used, 0);
      if (used != o.seed_text.size()) throw std::invalid_argument("x");
    } catch (...) {
      return fmt::format("--seed '{}' is not a number", o.seed_text);
    }
  }
  if (!o.inject.empty()) {
    try {
      (void)FaultSpec::parse(o.inject);
    } catch (const std::exception& e) {
      return fmt::format("bad --inject spec: {}", e.what());
    }
  }
  return "";
}

std::string replay_command(const VerifyOptions& o, uint64_t ops) {
  std::string s = fmt::format("faultline verify --seed {} --ops {} --size {} --backend {}", o.seed,
                              ops, o.size, o.backend);
  if (o.max_len != 65536) s += fmt::format(" --max-len {}", o.max_len);
  if (o.frame == kHugePageSize) s += " --frames 2M";
  if (o.threads != 1) s += fmt::format(" --threads {}", o.threads);
  if (o.views != 2) s += fmt::format(" --views {}", o.views);
  if (!o.inject.empty()) s += fmt::format(" --inject '{}'", o.inject);
  for (int i = 0; i < kVerifyOps; ++i)
    if (o.weights[static_cast<size_t>(i)] != kOps[i].weight)
      s += fmt::format(" --w-{} {}", kOps[i].name, o.weights[static_cast<size_t>(i)]);
  if (o.strict_poison) s += " --strict-poison";
  if (o.self_test_corrupt) s += " --self-test-corrupt";
  return s;
}

}  // namespace faultline::cli
