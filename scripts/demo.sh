#!/usr/bin/env bash
# Builds faultline and runs its main job: `faultline bench` with no arguments
# (it makes a 1 GiB file under /var/tmp, reads it through a faultline mapping,
# kernel mmap and pread, cold and warm, prints the table and a one-line
# summary, removes the file). Arguments are passed to the bench.
#
# 2 MiB frames, the fastest path, need free 2 MiB huge pages. As root this
# script raises vm.nr_overcommit_hugepages just enough for the bench's
# faultline-2M rows: the kernel then allocates those pages on demand and
# frees them when the bench closes its files (no standing reservation, unlike
# vm.nr_hugepages). It prints what it changed and the command that undoes it.
# Not root: it changes nothing and says what it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target faultline-cli

# The bench file's size (--size, default 1G) in 2 MiB pages, plus 8 for the
# device row's buffers.
size=1G frames=both
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --size) size=${args[i + 1]:-1G} ;;
    --size=*) size=${args[i]#*=} ;;
    --frames) frames=${args[i + 1]:-both} ;;
    --frames=*) frames=${args[i]#*=} ;;
  esac
done
bytes=$(numfmt --from=iec "${size^^}" 2>/dev/null || echo $((1 << 30)))
need=$(((bytes + (2 << 20) - 1) / (2 << 20) + 8))

hp=/sys/kernel/mm/hugepages/hugepages-2048kB
if [[ $frames != 4K && $frames != 4k && -r $hp/free_hugepages ]]; then
  free=$(<"$hp/free_hugepages") rsvd=$(<"$hp/resv_hugepages")
  over=$(<"$hp/nr_overcommit_hugepages") surp=$(<"$hp/surplus_hugepages")
  headroom=$((over > surp ? over - surp : 0))
  avail=$((free - rsvd + headroom))
  if ((avail >= need)); then
    echo "demo: 2 MiB frames: the huge page pool already has $avail free 2 MiB pages (the bench needs $need); nothing changed"
  elif [[ $(id -u) -eq 0 ]]; then
    new=$((over + need - avail))
    echo "$new" > "$hp/nr_overcommit_hugepages"
    echo "demo: 2 MiB frames: set vm.nr_overcommit_hugepages $over -> $(<"$hp/nr_overcommit_hugepages")" \
         "(the kernel may now allocate up to that many 2 MiB pages on demand for the faultline-2M rows;" \
         "no memory is held until a frame is filled, and the pages are freed when the bench closes its files)."
    echo "demo: undo with: sysctl vm.nr_overcommit_hugepages=$over"
  else
    echo "demo: not root: skipped raising vm.nr_overcommit_hugepages, so the bench skips its faultline-2M" \
         "rows (2 MiB frames, the fastest path): they need $need free 2 MiB huge pages and the machine has $avail." \
         "To include them: sudo sysctl vm.nr_overcommit_hugepages=$((over + need - avail)), then run this again."
  fi
fi
exec ./build/tools/faultline bench "$@"
