#!/usr/bin/env python3
"""Runs `faultline bench ... --json` (the command line given as arguments) and
checks its output: exit 0; every stdout line is one JSON object with the
required keys and sane values (faultline rows carry the engine counters);
nothing else on stdout; every method x pattern x cache combination present
(a `device` row, O_DIRECT, for each pattern in the cold state, and every other
cold row carrying ratio_to_device = its GiB/s over the device's)
(faultline-2M rows, with cache resident too, when the bench ran them: it skips
them, saying so on stderr, without a huge page pool; with
FAULTLINE_REQUIRE_HUGEPAGES=1 they must be there); every row reports its
memory; and the temporary file the bench announced on stderr is gone
afterwards."""
import math
import os
import sys

from bench_json_check import fail, positive, run_rows, scratch_removed

REQUIRED = ["method", "pattern", "cache", "gib_per_s", "ns_per_page", "ratio_to_mmap", "reps",
            "size_bytes"]
FAULTLINE_ONLY = ["missing_faults", "minor_faults", "pages_filled", "frame_size", "fill_ns",
                  "install_ns"]
FAULTLINE = ("faultline", "faultline-2M")
MEMORY = ["mem_bytes", "mem_frames_bytes", "mem_kernel_cache_bytes"]


def main():
    cmd = sys.argv[1:]
    proc, rows = run_rows(cmd, "check_bench_json.py FAULTLINE bench ... --json")
    seen = set()
    for n, line, row in rows:
        missing = [k for k in REQUIRED + MEMORY if k not in row]
        if row.get("method") in FAULTLINE:
            missing += [k for k in FAULTLINE_ONLY if k not in row]
        if missing:
            fail(f"line {n} lacks {missing}: {line!r}", proc)
        if row["method"] not in FAULTLINE + ("mmap", "pread", "device"):
            fail(f"line {n}: bad method {row['method']!r}")
        if row["method"] == "device" and row["cache"] != "cold":
            fail(f"line {n}: a device row outside the cold state: {line!r}")
        if row["cache"] == "cold" and row["method"] != "device" \
                and "no device rows" not in proc.stderr:
            v = row.get("ratio_to_device")
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                fail(f"line {n}: a cold row without a positive ratio_to_device: {line!r}")
        elif "ratio_to_device" in row:
            fail(f"line {n}: ratio_to_device outside cold rows or on the device row: {line!r}")
        if row["pattern"] not in ("seq", "rand") or row["cache"] not in ("cold", "warm", "resident"):
            fail(f"line {n}: bad pattern/cache: {line!r}")
        if row["cache"] == "resident" and row["method"] != "faultline-2M":
            fail(f"line {n}: only faultline-2M has resident rows: {line!r}")
        if row["method"] in FAULTLINE:
            want_fs = 2 << 20 if row["method"] == "faultline-2M" else 4096
            if row["frame_size"] != want_fs:
                fail(f"line {n}: frame_size {row['frame_size']} is not {want_fs}: {line!r}")
            if row["mem_frames_bytes"] < row["size_bytes"]:
                fail(f"line {n}: the File holds fewer frame bytes than the file: {line!r}")
        if row["mem_bytes"] != row["mem_frames_bytes"] + row["mem_kernel_cache_bytes"]:
            fail(f"line {n}: mem_bytes is not frames + kernel cache: {line!r}")
        positive(row, ("gib_per_s", "ns_per_page", "ratio_to_mmap"), n)
        if row["method"] == "mmap" and abs(row["ratio_to_mmap"] - 1) > 1e-6:
            fail(f"line {n}: mmap's ratio_to_mmap is {row['ratio_to_mmap']}, not 1")
        if row["reps"] != 1 or row["size_bytes"] != 64 << 20:
            fail(f"line {n}: reps/size_bytes {row['reps']}/{row['size_bytes']} not 1/{64 << 20}")
        if row.get("data_ok") is False:
            fail(f"line {n}: the method read different data than pread: {line!r}")
        if row["method"] in FAULTLINE:
            if row["cache"] == "resident":
                if row["pages_filled"] != 0:
                    fail(f"line {n}: a resident row filled pages in its timed part: {line!r}")
            elif row["pages_filled"] <= 0:
                fail(f"line {n}: a faultline row filled no pages: {line!r}")
            elif row["fill_ns"] <= 0 or row["install_ns"] <= 0:
                fail(f"line {n}: a faultline row that filled pages reports no fill/install "
                     f"time: {line!r}")
        key = (row["method"], row["pattern"], row["cache"])
        if key in seen:
            fail(f"line {n}: duplicate result {key}")
        seen.add(key)
    want = {(m, p, c) for m in ("faultline", "mmap", "pread") for p in ("seq", "rand")
            for c in ("cold", "warm")}
    if "no device rows" not in proc.stderr:
        want |= {("device", p, "cold") for p in ("seq", "rand")}
    skipped = "skipping the faultline-2M rows" in proc.stderr
    if skipped and os.environ.get("FAULTLINE_REQUIRE_HUGEPAGES") == "1":
        fail("FAULTLINE_REQUIRE_HUGEPAGES=1 but the bench skipped the faultline-2M rows", proc)
    if not skipped:
        want |= {("faultline-2M", p, c) for p in ("seq", "rand")
                 for c in ("cold", "warm", "resident")}
    elif "scripts/setup.sh --hugepages" not in proc.stderr:
        fail("the bench skipped the 2M rows without saying how to reserve a pool", proc)
    if seen != want:
        fail(f"results missing: {sorted(want - seen)}", proc)
    path = scratch_removed(proc, fail)
    print(f"ok: {len(rows)} JSON result lines; temporary file {path} removed")


if __name__ == "__main__":
    main()
