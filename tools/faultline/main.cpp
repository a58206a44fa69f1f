// faultline — the command-line tool: `faultline bench`, `faultline checksum`.
// Exit codes: 0 ok, 1 a check found different data, 2 bad arguments or an
// error (message on stderr), 130/143 interrupted.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include <exception>

#include "bench/command.hpp"
#include "checksum/command.hpp"
#include "verify/options.hpp"
#include "common/interrupt.hpp"

namespace {

constexpr int kExitError = 2;

}  // namespace

int main(int argc, char** argv) {
  using namespace faultline::cli;
  CLI::App app{"faultline: a user-space page cache on userfaultfd — tools"};
  app.name("faultline");
  app.set_version_flag("--version", "faultline 0.1.0");
  app.require_subcommand(1);
  app.fallthrough(false);

  BenchOptions bench_opts;
  ChecksumOptions checksum_opts;
  VerifyOptions verify_opts;
  CLI::App* bench = add_bench_command(app, bench_opts);
  CLI::App* checksum = add_checksum_command(app, checksum_opts);
  CLI::App* verify = add_verify_command(app, verify_opts);

  // CLI11 reports a mistyped command as "A subcommand is required"; name it.
  if (argc > 1 && argv[1][0] != '-' && argv[1] != bench->get_name() &&
      argv[1] != checksum->get_name() && argv[1] != verify->get_name()) {
    fmt::print(stderr, "faultline: unknown command '{}' (commands: bench, checksum, verify; see --help)\n",
               argv[1]);
    return kExitError;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help / the error
    return rc == 0 ? 0 : kExitError;
  }

  const char* what = bench->parsed() ? "bench" : verify->parsed() ? "verify" : "checksum";
  try {
    if (bench->parsed()) return run_bench(bench_opts);
    if (checksum->parsed()) return run_checksum(checksum_opts);
    if (verify->parsed()) return run_verify(verify_opts);
  } catch (const Interrupted& e) {
    fmt::print(stderr, "faultline {}: {}\n", what, e.what());
    return 128 + e.signal;
  } catch (const std::exception& e) {
    fmt::print(stderr, "faultline {}: error: {}\n", what, e.what());
    return kExitError;
  }
  return kExitError;
}
