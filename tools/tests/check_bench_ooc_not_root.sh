#!/bin/sh
# `faultline bench --out-of-core` without root: the kernel rows need a memory
# cgroup, which only root can make; the bench must say it skips them and exit
# 0 (never hang, never run them unlimited). As root the run drops to nobody
# (setpriv); when nobody cannot run the binary (a private build tree) the test
# is skipped (exit 77), saying so.
#   check_bench_ooc_not_root.sh FAULTLINE_CLI [bench args...]
cli="$1"
shift
if [ "$(id -u)" = 0 ]; then
  drop="setpriv --reuid=65534 --regid=65534 --clear-groups"
  if ! $drop test -x "$cli"; then
    echo "skipped: user nobody cannot run $cli (its directory is private)"
    exit 77
  fi
  set -- $drop "$cli" "$@"
else
  set -- "$cli" "$@"
fi
out=$(timeout 120 "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" != 0 ]; then
  echo "FAIL: exit code $rc (want 0: the rows are skipped, not failed)"
  exit 1
fi
if ! printf '%s\n' "$out" | grep -q "skipping the mmap and mmap-random rows: not root"; then
  echo "FAIL: no stated skip of the kernel rows"
  exit 1
fi
if printf '%s\n' "$out" | grep -qE "^(mmap|mmap-random) +uniform +1 +[0-9]"; then
  echo "FAIL: a kernel row ran without its memory cgroup"
  exit 1
fi
echo "OK"
