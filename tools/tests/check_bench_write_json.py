#!/usr/bin/env python3
"""Runs `faultline bench --write ... --json` (the command line given as
arguments; expects --size 64M --reps 1) and checks its output: exit 0; every
stdout line is one JSON object with the required keys and sane values; the
methods are faultline, faultline-async, mmap and pwrite, plus faultline-2M
when the huge page pool is big enough (else stderr says why it was skipped);
faultline rows carry the write counters, consistent with one store per page
(pages_dirtied and pages_written_back >= the File's pages, needless = 4 KiB
blocks written back - blocks stored clamped at 0, write_amplification = bytes
written / bytes stored, write_faults >= 1); every page verified (data_ok, bad_pages 0);
every method x pattern x cache present; the temporary file removed."""
import sys

from bench_json_check import fail, positive, run_rows, scratch_removed

SIZE = 64 << 20
PAGE = 4096
FL = ("faultline", "faultline-async", "faultline-2M", "faultline-2M-async")
HUGE = 2 << 20
REQUIRED = ["op", "method", "pattern", "cache", "gib_per_s", "ns_per_page", "ratio_to_mmap",
            "ratio_baseline", "reps", "size_bytes", "pages", "page_size", "data_ok",
            "pages_stored", "bad_pages", "sync"]
FAULTLINE_ONLY = ["write_faults", "wp_faults", "missing_faults", "minor_faults", "pages_dirtied",
                  "pages_written_back", "needless_writebacks", "write_amplification",
                  "bytes_written", "write_errors", "mkwrite_errors"]


def main():
    cmd = sys.argv[1:]
    proc, rows = run_rows(cmd, "check_bench_write_json.py FAULTLINE bench --write ... --json")
    seen = set()
    pages = SIZE // PAGE
    for n, line, row in rows:
        missing = [k for k in REQUIRED if k not in row]
        if row.get("method") in FL:
            missing += [k for k in FAULTLINE_ONLY if k not in row]
        if missing:
            fail(f"line {n} lacks {missing}: {line!r}", proc)
        if row["op"] != "write" or row["ratio_baseline"] != "mmap" or row["sync"] != "fsync":
            fail(f"line {n}: op/ratio_baseline/sync not write/mmap/fsync: {line!r}")
        if row["method"] not in FL + ("mmap", "pwrite"):
            fail(f"line {n}: bad method {row['method']!r}")
        if row["pattern"] not in ("seq", "rand") or row["cache"] not in ("cold", "warm"):
            fail(f"line {n}: bad pattern/cache: {line!r}")
        positive(row, ("gib_per_s", "ns_per_page", "ratio_to_mmap"), n)
        if row["method"] == "mmap" and abs(row["ratio_to_mmap"] - 1) > 1e-6:
            fail(f"line {n}: mmap's ratio_to_mmap is {row['ratio_to_mmap']}, not 1")
        if row["reps"] != 1 or row["size_bytes"] != SIZE or row["pages"] != pages \
                or row["page_size"] != PAGE:
            fail(f"line {n}: reps/size_bytes/pages/page_size not 1/{SIZE}/{pages}/{PAGE}: {line!r}")
        if row["data_ok"] is not True or row["bad_pages"] != 0:
            fail(f"line {n}: the method left wrong data in the file: {line!r}")
        if row["pages_stored"] != pages:
            fail(f"line {n}: pages_stored {row['pages_stored']} != {pages}")
        if row["method"] in FL:
            if row["method"].endswith("-async") and row["wp_faults"] != 0:
                fail(f"line {n}: write-protect faults in async mode: {line!r}")
            if row["write_faults"] != row["wp_faults"] + row["missing_faults"] + row["minor_faults"]:
                fail(f"line {n}: write_faults is not wp + missing + minor: {line!r}")
            if row["write_faults"] < 1:
                fail(f"line {n}: no write faults: {line!r}")
            file_pages = SIZE // (HUGE if row["method"].startswith("faultline-2M") else PAGE)
            if row["pages_dirtied"] < file_pages or row["pages_written_back"] < file_pages:
                fail(f"line {n}: pages_dirtied/pages_written_back {row['pages_dirtied']}/"
                     f"{row['pages_written_back']}, expected >= {file_pages} each (one store per "
                     f"page, synced): {line!r}")
            if row["bytes_written"] < SIZE:
                fail(f"line {n}: bytes_written {row['bytes_written']} < {SIZE}: {line!r}")
            want_needless = max(0, row["bytes_written"] // PAGE - row["pages_stored"])
            if row["needless_writebacks"] != want_needless:
                fail(f"line {n}: needless_writebacks {row['needless_writebacks']} != "
                     f"{want_needless}")
            want_wamp = row["bytes_written"] / (row["pages_stored"] * PAGE)
            if abs(row["write_amplification"] - want_wamp) > 1e-3:
                fail(f"line {n}: write_amplification {row['write_amplification']} != {want_wamp}")
            if row["write_errors"] != 0 or row["mkwrite_errors"] != 0:
                fail(f"line {n}: write/mkwrite errors: {line!r}")
        elif any(k in row for k in FAULTLINE_ONLY):
            fail(f"line {n}: a {row['method']} row carries faultline counters: {line!r}")
        key = (row["method"], row["pattern"], row["cache"])
        if key in seen:
            fail(f"line {n}: duplicate result {key}")
        seen.add(key)
    methods = ("faultline", "faultline-async", "mmap", "pwrite")
    if "skipping the faultline-2M rows" not in proc.stderr:
        methods += ("faultline-2M", "faultline-2M-async")
    want = {(m, p, c) for m in methods for p in ("seq", "rand") for c in ("cold", "warm")}
    if seen != want:
        fail(f"results missing: {sorted(want - seen)}, unexpected: {sorted(seen - want)}", proc)
    path = scratch_removed(proc, fail)
    print(f"ok: {len(rows)} JSON write-result lines, every page verified; temporary file {path} "
          "removed")


if __name__ == "__main__":
    main()
