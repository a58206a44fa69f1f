#!/usr/bin/env bash
# check_library_harness.sh <ON|OFF> <library>...: the race harness's schedule
# points and rule breakers are in the library only when it was built with
# FAULTLINE_TESTING=ON, and no build of the library reads FAULTLINE_BREAK from
# the environment (only the race test executables do).
set -euo pipefail
testing=$1; shift
for lib in "$@"; do
  syms=$(nm -C "$lib" 2>/dev/null; nm -C -D "$lib" 2>/dev/null || true)
  harness=$(grep -E 'faultline::detail::(sched_point|g_points_live|g_broken_rules)|faultline::testing::' \
            <<<"$syms" | sort -u || true)
  if strings -a "$lib" | grep -q 'FAULTLINE_BREAK'; then
    echo "FAIL: $lib holds the string FAULTLINE_BREAK: the library must not read it"
    exit 1
  fi
  if [ "$testing" = ON ]; then
    # Sanity: the check sees the harness when it is compiled in.
    if ! grep -q 'sched_point' <<<"$harness"; then
      echo "FAIL: FAULTLINE_TESTING=ON but no schedule point in $lib (is nm looking at the right file?)"
      exit 1
    fi
    echo "ok: $lib (FAULTLINE_TESTING=ON) has the harness and does not read FAULTLINE_BREAK"
    continue
  fi
  if [ -n "$harness" ]; then
    echo "FAIL: $lib was built with FAULTLINE_TESTING=OFF but holds race harness symbols:"
    echo "$harness"
    exit 1
  fi
  echo "ok: $lib (FAULTLINE_TESTING=OFF) holds no schedule point and no rule breaker"
done
