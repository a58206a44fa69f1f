// faultline CLI — `faultline verify`: options, weights and the replay line.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace faultline::cli {

/// The operations of `faultline verify` (the order of the weight flags).
enum class VerifyOp : int {
  Read, Write, MapRead, MapWrite, Truncate, Punch, Invalidate, Sync, DropCache, Reopen, Remap,
  EofJunk, Reclaim, Teardown, Count
};
inline constexpr int kVerifyOps = static_cast<int>(VerifyOp::Count);
const char* verify_op_name(VerifyOp op);

struct VerifyOptions {
  uint64_t ops = 100000;
  std::string seed_text;   ///< "" = random
  uint64_t seed = 0;       ///< resolved by validate_verify_options
  std::string size_text;    ///< "" = 1M (8M with --frames 2M)
  uint64_t size = 0;       ///< maximum file size, resolved
  std::string max_len_text; ///< "" = 64K (3M with --frames 2M)
  uint64_t max_len = 0;    ///< largest single read/write/map access
  std::string backend = "file";
  std::string frames_text = "4K";  ///< --frames: 4K or 2M (FileOptions::frame_size)
  uint64_t frame = 0;              ///< the frame (page) size, resolved (4096 or 2 MiB)
  unsigned threads = 1;
  std::string inject;
  std::string keep_log;
  std::string dir = "/var/tmp";
  unsigned views = 2;      ///< Mappings of each kind (shared RO, shared RW, private)
  std::array<unsigned, kVerifyOps> weights{};
  std::array<bool, kVerifyOps> weight_given{};
  bool self_test_corrupt = false;  ///< hidden: flips one model byte mid-run
  bool quiet = false;
  bool strict_poison = false;  ///< a poisoned page must keep raising SIGBUS (mapping.hpp)
};

/// Adds the `verify` subcommand (options bound to `opts`) to `app`.
CLI::App* add_verify_command(CLI::App& app, VerifyOptions& opts);

/// Checks and resolves the options (sizes, seed, frames; for 2M frames, that
/// the huge page pool is big enough). Returns "" or a message.
std::string validate_verify_options(VerifyOptions& opts);

/// `faultline verify --seed S --ops K ...` reproducing a run up to op K.
std::string replay_command(const VerifyOptions& opts, uint64_t ops);

/// Runs it. 0: the model held; 1: a mismatch (reported); 2: bad options or an
/// error (the caller prints exceptions).
int run_verify(VerifyOptions& opts);

}  // namespace faultline::cli
