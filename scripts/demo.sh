#!/usr/bin/env bash
# Builds faultline and runs its main job: `faultline bench` with no arguments
# (it makes a 1 GiB file under /var/tmp, reads it through a faultline mapping,
# kernel mmap and pread, cold and warm, prints the table, removes the file).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target faultline-cli
exec ./build/tools/faultline bench "$@"
