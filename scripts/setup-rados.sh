#!/usr/bin/env bash
# Installs the Debian 12 (Ceph 16) packages the RADOS backend and its tests need
# (idempotent): librados-dev to build, ceph-mon / ceph-osd / ceph-common for the
# throwaway test cluster (scripts/ceph-cluster.sh).
set -euo pipefail
pkgs=(librados-dev ceph-mon ceph-osd ceph-common)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup-rados: ceph packages present (ceph-mon $(dpkg-query -W -f='${Version}' ceph-mon))"
