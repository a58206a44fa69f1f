#!/usr/bin/env bash
# Builds faultline and runs the whole test suite (the README's test command;
# .ci/run calls it): installs the Debian packages, then
#   1. the normal build: every test, the rule-breaker check, and the race
#      catalogue repeated 20 times (ctest -L race --repeat until-fail:20);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build: every test;
#   3. a ThreadSanitizer build: every test.
# The RADOS tests start their own throwaway Ceph cluster on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-rados.sh
jobs=$(nproc)
start=$(date +%s)
run() {  # run <build-dir> <sanitizer> [extra ctest args]
  local dir=$1 san=$2; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFAULTLINE_SANITIZE="$san" \
        -DFAULTLINE_REQUIRE_RADOS=ON \
        -DFAULTLINE_BUILD_BENCH=$([ -z "$san" ] && echo ON || echo OFF) >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j"$jobs" "$@")
}
echo "== normal build: every test, and each rule breaker against the race catalogue"
run build ""
echo "== the race catalogue, repeated: ctest -L race --repeat until-fail:20"
(cd build && ctest -L '^race$' --repeat until-fail:20 --output-on-failure -j"$jobs")
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
ASAN_OPTIONS=detect_leaks=1 run build-asan address -LE 'race-breakers'
echo "== ThreadSanitizer build"
# TSan needs an address space layout it knows: run without ASLR randomisation.
# (The child shell gets the job count and set -e too: a failed build must stop the run.)
TSAN_OPTIONS="halt_on_error=1" setarch "$(uname -m)" -R \
  bash -c "set -euo pipefail; jobs=$jobs; $(declare -f run); run build-tsan thread -LE 'race-breakers'"
echo "== all test suites passed in $(( $(date +%s) - start )) s"
