#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for faultline's RADOS tests.
#
#   scripts/ceph-cluster.sh start DIR [POOL]   one mon + one OSD on 127.0.0.1
#   scripts/ceph-cluster.sh stop DIR           stop them (OSD first, by pid)
#   scripts/ceph-cluster.sh kill-osd DIR       SIGKILL the OSD only (error tests)
#
# Everything lives under DIR: DIR/ceph.conf (pass it to clients as
# conf=DIR/ceph.conf), the mon and OSD data, logs, pid files and admin sockets.
# Debian's Ceph 16 packages (ceph-mon, ceph-osd, ceph-common): see
# scripts/setup-rados.sh. Settings: memstore objectstore (RAM only), auth none,
# pool size 1, paxos propose interval 0.05, no mgr. Ports are chosen free per
# cluster, so several clusters (parallel tests) can run at once.
#
# Environment:
#   CEPH_MEMSTORE_BYTES   memstore device size (default 512 MiB; memstore uses
#                         several times the stored data in RAM and blocks writes
#                         silently at 95% full: size it for the test)
#   CEPH_EXTRA_CONF       extra lines appended to [global] (e.g. osd max object size)
#   CEPH_START_TIMEOUT    seconds to wait for the cluster to serve I/O (default 60)
#   CEPH_STOP_SIGNAL      signal for stop (default KILL; TERM for a clean shutdown)
set -euo pipefail

usage() { echo "usage: $0 start|stop|kill-osd|pause-osd|resume-osd DIR [POOL]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
pool=${3:-faultline}
conf=$dir/ceph.conf

die() { echo "ceph-cluster: $*" >&2; exit 1; }

free_port() {  # a TCP port nobody listens on now (the kernel picks it)
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_of() { [ -s "$dir/run/$1.pid" ] && cat "$dir/run/$1.pid" || true; }

alive() {  # a zombie counts as gone (here PID 1 reaps daemons only every ~1.5 s)
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_daemon() {  # stop_daemon NAME SIGNAL: kill by pid, wait until it is gone
  local name=$1 sig=$2 pid i
  pid=$(pid_of "$name")
  [ -n "$pid" ] || return 0
  if alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 200); do alive "$pid" || break; sleep 0.02; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.1; fi
  fi
  rm -f "$dir/run/$name.pid"
}

start() {
  for b in ceph-mon ceph-osd ceph monmaptool rados ceph-authtool; do
    command -v "$b" >/dev/null || die "$b not found: run scripts/setup-rados.sh"
  done
  # A cluster left in DIR by an aborted run: stop it (OSD first) and start afresh.
  stop_daemon osd.0 KILL
  stop_daemon mon.a KILL
  rm -rf "$dir"/{mon,osd,run,log,monmap,keyring,ceph.conf}
  mkdir -p "$dir"/{mon,osd,run,log}
  local t0 fsid port osd_lo uuid i
  t0=$(date +%s.%N)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  port=$(free_port)
  # The OSD binds its messengers (public, cluster, two heartbeat) to the first
  # free ports of its range; a random range keeps parallel clusters apart.
  osd_lo=$(( 20000 + (RANDOM % 2000) * 10 ))
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms bind msgr1 = false
ms bind port min = $osd_lo
ms bind port max = $((osd_lo + 99))
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
mon osd min down reporters = 1
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-536870912}
osd op num shards = 1
osd op num threads per shard = 2
osd max object name len = 460
osd max object namespace len = 64
${CEPH_EXTRA_CONF:-}
[mon.a]
mon data = $dir/mon
[osd.0]
osd data = $dir/osd
EOF
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/keyring" \
    >"$dir/log/mkfs-mon.out" 2>&1 || die "ceph-mon --mkfs failed: $(tail -5 "$dir/log/mkfs-mon.out")"
  ceph-mon -c "$conf" -i a >"$dir/log/mon.out" 2>&1 || die "ceph-mon failed: $(tail -5 "$dir/log/mon.out")"
  uuid=$(cat /proc/sys/kernel/random/uuid)
  local id
  id=$(timeout 30 ceph -c "$conf" --connect-timeout 20 osd new "$uuid") ||
    die "ceph osd new failed (mon not reachable on port $port?): $(tail -5 "$dir/log/mon.a.log" 2>/dev/null)"
  [ "$id" = 0 ] || die "unexpected OSD id $id"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >"$dir/log/mkfs-osd.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -5 "$dir/log/mkfs-osd.out")"
  ceph-osd -c "$conf" -i 0 >"$dir/log/osd.out" 2>&1 || die "ceph-osd failed: $(tail -5 "$dir/log/osd.out")"
  timeout 30 ceph -c "$conf" osd pool create "$pool" 8 8 >/dev/null 2>&1 || die "pool create failed"
  # Wait until the pool serves I/O (no mgr, so no PG statistics to poll).
  local deadline=$(( $(date +%s) + ${CEPH_START_TIMEOUT:-60} ))
  until timeout 5 rados -c "$conf" -p "$pool" put .faultline-probe /dev/null 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "cluster in $dir does not serve I/O (see $dir/log)"
    sleep 0.1
  done
  rados -c "$conf" -p "$pool" rm .faultline-probe 2>/dev/null || true
  echo "ceph-cluster: up in $(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')") s: conf=$conf pool=$pool mon=127.0.0.1:$port"
}

case $cmd in
  start)
    if ! start; then
      stop_daemon osd.0 TERM; stop_daemon mon.a TERM
      exit 1
    fi ;;
  stop)
    # The OSD first: a mon stopped first makes the OSD wait for it (seconds).
    # SIGKILL by default: the store is in RAM and thrown away anyway, and a
    # clean SIGTERM shutdown costs ~1.5 s (OSD) + ~2 s (mon) here.
    stop_daemon osd.0 "${CEPH_STOP_SIGNAL:-KILL}"
    stop_daemon mon.a "${CEPH_STOP_SIGNAL:-KILL}" ;;
  kill-osd)
    stop_daemon osd.0 KILL ;;
  pause-osd)   # the OSD stops answering (SIGSTOP) but keeps its memstore
    pid=$(pid_of osd.0); [ -n "$pid" ] && kill -STOP "$pid" ;;
  resume-osd)
    pid=$(pid_of osd.0); [ -n "$pid" ] && kill -CONT "$pid" ;;
  *) usage ;;
esac
