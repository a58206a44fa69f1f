#!/bin/sh
# lint.thread_safety (issue 13): the locking contract checked by the compiler.
# Compiles the library's sources with clang++ -fsyntax-only -Wthread-safety
# -Werror=thread-safety (src/mm/thread_annotations.hpp), two at a time, and
# fails on any thread-safety warning. The production configuration: without
# FAULTLINE_TESTING, whose rule breakers break the contract on purpose.
#
# Usage: check_thread_safety.sh <clang++ | none> <source dir> <source file>...
# Exits 77 (CTest's skip) only when clang++ is missing.
set -u
cxx=$1 src=$2
shift 2
if [ "$cxx" = none ] || ! command -v "$cxx" >/dev/null 2>&1; then
  echo "lint.thread_safety: SKIPPED: clang++ not found (Debian: apt-get install clang," \
       "scripts/setup.sh installs it; then re-run cmake)"
  exit 77
fi
[ $# -gt 0 ] || { echo "lint.thread_safety: no source files given" >&2; exit 2; }
echo "lint.thread_safety: $("$cxx" --version | head -n 1), $# files"
printf '%s\n' "$@" | xargs -P 2 -n 1 "$cxx" -std=c++20 -fsyntax-only \
  -Wthread-safety -Werror=thread-safety -I"$src/include" -I"$src/src"
rc=$?
if [ $rc -ne 0 ]; then
  echo "lint.thread_safety: FAILED: a lock is not held where the contract needs it (or clang++ failed)"
  exit 1
fi
echo "lint.thread_safety: passed"
