// faultline CLI — `faultline checksum PATH`: the file's bytes hashed through a
// read-only faultline mapping and through read(2); they must agree.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

namespace faultline::cli {

struct ChecksumOptions {
  std::string path;
  std::string frames = "4K";
};

/// Adds the `checksum` subcommand (options bound to `opts`) to `app`.
CLI::App* add_checksum_command(CLI::App& app, ChecksumOptions& opts);

/// Runs it. Returns 0 when both checksums are equal, 1 when they differ;
/// throws on errors (the caller prints them and exits 2).
int run_checksum(const ChecksumOptions& opts);

}  // namespace faultline::cli
