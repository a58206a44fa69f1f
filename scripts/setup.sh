#!/usr/bin/env bash
# Installs the Debian 12 packages faultline's build needs (idempotent).
set -euo pipefail
pkgs=(build-essential cmake g++ googletest libgtest-dev libgmock-dev libbenchmark-dev
      libcli11-dev libfmt-dev)
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
