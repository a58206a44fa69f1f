#!/usr/bin/env bash
# Builds faultline and runs the whole test suite (the README's test command;
# .ci/run calls it): installs the Debian packages, then
#   0. a default build's library (FAULTLINE_TESTING OFF, as users build it):
#      checks it holds no schedule point or rule breaker;
#   1. the normal build, with the race harness (-DFAULTLINE_TESTING=ON): every
#      test, the rule-breaker check, and the race catalogue repeated 20 times
#      (ctest -L race --repeat until-fail:20);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build: every test;
#   3. a ThreadSanitizer build: every test.
# The RADOS tests start their own throwaway Ceph cluster on 127.0.0.1.
# As root it also reserves a small 2 MiB huge page pool for the 2 MiB-frame
# tests (label frames2m, verify.frames2m_*, the bench's faultline-2M rows) and
# sets FAULTLINE_REQUIRE_HUGEPAGES=1, so they fail rather than skip when no pool
# can be had. Not root: they skip, saying how to reserve a pool.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-rados.sh
# Free 2 MiB pages the tests need: two tests at once (ctest -j2 on this
# 2-core machine; more with more cores) and the largest are the frames2m suite
# (48 at SetUp) and cli.bench.json (a 64 MiB file in 2 MiB frames: 32), so
# 48 + 32 = 80 per pair of tests; 128 leaves room for the race/verify ones.
hugepages_need=$(( 64 * ($(nproc) > 2 ? $(nproc) : 2) ))
if [ "$(id -u)" -eq 0 ]; then
  free_now=$(awk '/HugePages_Free/ {f=$2} /HugePages_Rsvd/ {r=$2} END {print f-r}' /proc/meminfo)
  total_now=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$free_now" -lt "$hugepages_need" ]; then
    want=$(( total_now + hugepages_need - free_now ))
    echo "== running as root: reserving a 2 MiB huge page pool for the 2 MiB-frame tests:" \
         "scripts/setup.sh --hugepages $want ($hugepages_need free pages needed, $free_now free now)"
    ./scripts/setup.sh --hugepages "$want" ||
      echo "== warning: could not reserve the pool; the 2 MiB-frame tests will fail" >&2
  else
    echo "== running as root: the 2 MiB huge page pool has $free_now free pages" \
         "(>= $hugepages_need needed by the 2 MiB-frame tests); left as it is"
  fi
  export FAULTLINE_REQUIRE_HUGEPAGES=1
  echo "== FAULTLINE_REQUIRE_HUGEPAGES=1: the 2 MiB-frame tests fail (not skip) without a pool"
else
  echo "== not root: no huge page pool reserved; without one the 2 MiB-frame tests skip" \
       "(sudo scripts/setup.sh --hugepages $hugepages_need to run them)"
fi
jobs=$(nproc)
start=$(date +%s)
run() {  # run <build-dir> <sanitizer> [extra ctest args]
  local dir=$1 san=$2; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFAULTLINE_SANITIZE="$san" \
        -DFAULTLINE_REQUIRE_RADOS=ON -DFAULTLINE_TESTING=ON \
        -DFAULTLINE_BUILD_BENCH=$([ -z "$san" ] && echo ON || echo OFF) >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j"$jobs" "$@")
}
echo "== default build (FAULTLINE_TESTING OFF, what a user installs): the library holds no race harness"
cmake -S . -B build-default -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFAULTLINE_BUILD_BENCH=OFF >/dev/null
cmake --build build-default -j"$jobs" --target faultline faultline_shared
(cd build-default && ctest --output-on-failure -R '^ProductionSafety[.]')
echo "== normal build (FAULTLINE_TESTING ON): every test, and each rule breaker against the race catalogue"
run build ""
echo "== the race catalogue, repeated: ctest -L race --repeat until-fail:20"
(cd build && ctest -L '^race$' --repeat until-fail:20 --output-on-failure -j"$jobs")
echo "== the race catalogue for 2 MiB frames, repeated: ctest -R '^Race2M\.' --repeat until-fail:5"
(cd build && ctest -R '^Race2M\.' --repeat until-fail:5 --output-on-failure -j"$jobs")
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
ASAN_OPTIONS=detect_leaks=1 run build-asan address -LE 'race-breakers'
echo "== ThreadSanitizer build (without the rados label: TSan cannot see the synchronisation inside"
echo "   Debian's uninstrumented Ceph libraries and reports races in them; rados runs in the other two;"
echo "   and without verify --frames 2M, ~10x too slow under TSan: it runs in the other two builds)"
# TSan needs an address space layout it knows: run without ASLR randomisation.
# (The child shell gets the job count and set -e too: a failed build must stop the run.)
TSAN_OPTIONS="halt_on_error=1" setarch "$(uname -m)" -R \
  bash -c "set -euo pipefail; jobs=$jobs; $(declare -f run); run build-tsan thread -LE 'race-breakers|rados' -E '^verify[.]frames2m_'"
echo "== all test suites passed in $(( $(date +%s) - start )) s"
