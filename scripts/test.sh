#!/usr/bin/env bash
# Builds faultline and runs the whole test suite: the normal build, an
# AddressSanitizer+UBSan build and a ThreadSanitizer build (the README's test
# command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)
run() {  # run <build-dir> <sanitizer> [extra ctest args]
  local dir=$1 san=$2; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFAULTLINE_SANITIZE="$san" \
        -DFAULTLINE_BUILD_BENCH=$([ -z "$san" ] && echo ON || echo OFF) >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 300 "$@")
}
echo "== normal build"
run build ""
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
ASAN_OPTIONS=detect_leaks=1 run build-asan address
echo "== ThreadSanitizer build"
# TSan needs an address space layout it knows: run without ASLR randomisation.
# (The child shell gets the job count and set -e too: a failed build must stop the run.)
TSAN_OPTIONS="halt_on_error=1" setarch "$(uname -m)" -R \
  bash -c "set -euo pipefail; jobs=$jobs; $(declare -f run); run build-tsan thread"
echo "== all test suites passed"
