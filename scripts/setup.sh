#!/usr/bin/env bash
# Installs the Debian 12 packages faultline's build needs (idempotent).
#
# Options:
#   --hugepages N   also reserve a pool of N 2 MiB huge pages (sysctl
#                   vm.nr_hugepages; needs root) for Files opened with
#                   FileOptions::frame_size = FrameSize::k2M (2 MiB frames) and
#                   the frames2m tests. The library itself never changes it.
#                   N = 0 releases the pool. Not persistent across reboots (add
#                   vm.nr_hugepages = N to /etc/sysctl.d/ for that).
set -euo pipefail
hugepages=""
while (($#)); do
  case "$1" in
    --hugepages) hugepages="${2:?--hugepages needs a page count}"; shift 2 ;;
    --hugepages=*) hugepages="${1#*=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $1" >&2; exit 2 ;;
  esac
done
pkgs=(build-essential cmake g++ googletest libgtest-dev libgmock-dev libbenchmark-dev
      libcli11-dev libfmt-dev liburing-dev pkg-config clang)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
echo "setup: all build dependencies present"
if [[ -n "$hugepages" ]]; then
  [[ "$hugepages" =~ ^[0-9]+$ ]] || { echo "setup: --hugepages wants a number" >&2; exit 2; }
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: reserving huge pages needs root: sudo $0 --hugepages $hugepages" >&2
    exit 1
  fi
  echo "$hugepages" > /proc/sys/vm/nr_hugepages
  got=$(cat /proc/sys/vm/nr_hugepages)
  free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
  echo "setup: vm.nr_hugepages = $got (asked $hugepages; $free free 2 MiB pages)"
  if [ "$got" -lt "$hugepages" ]; then
    echo "setup: the kernel found only $got contiguous 2 MiB pages (memory fragmented);" \
         "retry after freeing memory, or reserve at boot (hugepages=N on the kernel command line)" >&2
    exit 1
  fi
fi
