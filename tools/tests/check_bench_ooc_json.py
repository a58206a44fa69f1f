#!/usr/bin/env python3
"""Runs `faultline bench --out-of-core ... --json` (the command line given as
arguments; it must name --limit and --workload/--threads as it wants them
checked) and checks its output: exit 0; every stdout line is one JSON object
with the required keys and sane values; nothing else on stdout; a row for
every method x workload x thread count asked for, except the stated skips
(mmap / mmap-random without a memory cgroup, faultline-2M without a huge page
pool: each said on stderr; direct runs once per workload at its own depth and
not for scan+hot); scan+hot rows carry hot_kept; faultline rows carry the
engine's counters; and the temporary file the bench announced is gone."""
import math
import re
import sys

from bench_json_check import fail, run_rows, scratch_removed

REQUIRED = ["method", "workload", "threads", "touches_per_s", "read_amplification",
            "peak_mem_bytes", "limit_bytes", "hit_ratio", "file_bytes", "p50_ns", "p99_ns",
            "touches", "device_read_bytes", "peak_frames_bytes", "peak_kernel_cache_bytes",
            "cgroup"]
ENGINE = ["cache_hits", "cache_misses", "pages_reclaimed", "reclaim_runs", "pages_filled",
          "backend_read_amplification", "readaround_hits", "readaround_misses"]
METHODS = ("faultline", "faultline-self", "faultline-2M", "mmap", "mmap-random", "direct")
ENGINE_METHODS = ("faultline", "faultline-self", "faultline-2M")
WORKLOADS = ("uniform", "hotset", "zipf", "scan", "scan+hot")


def arg(cmd, name, default):
    return cmd[cmd.index(name) + 1] if name in cmd else default


def size(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def number(row, k, n, line, lo=0.0, hi=math.inf):
    v = row[k]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
            or not lo <= v <= hi:
        fail(f"line {n}: {k} = {v!r} is not a number in [{lo}, {hi}]: {line!r}")
    return v


def main():
    cmd = sys.argv[1:]
    proc, rows = run_rows(cmd, "check_bench_ooc_json.py FAULTLINE bench --out-of-core ... --json",
                          timeout=900)
    limit = size(arg(cmd, "--limit", "256M"))
    workloads = arg(cmd, "--workload", "all")
    workloads = list(WORKLOADS) if workloads == "all" else workloads.split(",")
    threads = [int(t) for t in arg(cmd, "--threads", "1,2").split(",")]
    seen = set()
    for n, line, row in rows:
        missing = [k for k in REQUIRED if k not in row]
        if row.get("method") in ENGINE_METHODS:
            missing += [k for k in ENGINE if k not in row]
        if row.get("workload") == "scan+hot":
            missing += [k for k in ("hot_kept", "hot_before_per_s", "hot_during_per_s")
                        if k not in row]
        if missing:
            fail(f"line {n} lacks {missing}: {line!r}", proc)
        if row["method"] not in METHODS or row["workload"] not in WORKLOADS:
            fail(f"line {n}: bad method/workload: {line!r}")
        if row["limit_bytes"] != limit:
            fail(f"line {n}: limit_bytes {row['limit_bytes']} is not {limit}: {line!r}")
        if row["file_bytes"] != 8 * limit and "--file-size" not in cmd:
            fail(f"line {n}: the default file is not 8 x the limit: {line!r}")
        # (a rate may be 0 on a loaded machine: kernel mmap reads 8 MiB per
        # fault here, a 0.25 s window can end before its next fault)
        number(row, "touches_per_s", n, line)
        number(row, "read_amplification", n, line)
        number(row, "hit_ratio", n, line, hi=1.0)
        number(row, "peak_mem_bytes", n, line)
        p50, p99 = number(row, "p50_ns", n, line), number(row, "p99_ns", n, line)
        if p99 < p50:
            fail(f"line {n}: p99 {p99} below p50 {p50}: {line!r}")
        if row["peak_mem_bytes"] != row["peak_frames_bytes"] + row["peak_kernel_cache_bytes"]:
            fail(f"line {n}: peak_mem_bytes is not frames + kernel cache: {line!r}")
        if row["method"] == "direct":
            if row["hit_ratio"] != 0 or row["peak_frames_bytes"] != 0:
                fail(f"line {n}: the direct method has no cache: {line!r}")
        elif row["peak_mem_bytes"] <= 0:
            fail(f"line {n}: a cached method reports no memory: {line!r}")
        if row["method"] in ("mmap", "mmap-random"):
            if row["cgroup"] not in ("v1", "v2") or row.get("cgroup_peak_bytes", -1) < 0:
                fail(f"line {n}: a kernel row outside a memory cgroup: {line!r}")
            if row["cgroup_peak_bytes"] > row["cgroup_limit_bytes"]:
                fail(f"line {n}: the cgroup's peak passed its limit: {line!r}")
        if row["method"] in ENGINE_METHODS:
            for k in ENGINE:
                number(row, k, n, line)
        if row["workload"] == "scan+hot":
            number(row, "hot_kept", n, line)
            number(row, "hot_before_per_s", n, line)
        key = (row["method"], row["workload"], row["threads"])
        if key in seen:
            fail(f"line {n}: duplicate result {key}")
        seen.add(key)
    want = set()
    kernel_skipped = "skipping the mmap and mmap-random rows" in proc.stderr
    pool_skipped = re.search(r"faultline-2M .*skipped: .*huge pages", proc.stderr) is not None
    no_engine = "no faultline engine here" in proc.stderr  # no userfaultfd: stated skip
    for w in workloads:
        for t in threads:
            if not no_engine:
                want |= {("faultline", w, t), ("faultline-self", w, t)}
            if not pool_skipped and not no_engine:
                want.add(("faultline-2M", w, t))
            if not kernel_skipped:
                want |= {("mmap", w, t), ("mmap-random", w, t)}
    got_direct = {(m, w) for (m, w, t) in seen if m == "direct"}
    want_direct = {("direct", w) for w in workloads if w != "scan+hot"}
    if got_direct != want_direct:
        fail(f"direct rows {sorted(got_direct)}, want {sorted(want_direct)}", proc)
    rest = {k for k in seen if k[0] != "direct"}
    if rest != want:
        fail(f"results missing {sorted(want - rest)}, unexpected {sorted(rest - want)}", proc)
    path = scratch_removed(proc, fail)
    print(f"ok: {len(rows)} JSON result lines{' (kernel rows skipped: no cgroup)' if kernel_skipped else ''}"
          f"{' (2M rows skipped: no pool)' if pool_skipped else ''}; temporary file {path} removed")


if __name__ == "__main__":
    main()
