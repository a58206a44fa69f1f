"""Shared by the check_bench_*_json.py scripts."""
import json
import math
import os
import re
import subprocess
import sys


def fail(msg, proc=None):
    """Prints FAIL (with the bench's output when given) and exits 1."""
    print(f"FAIL: {msg}")
    if proc is not None:
        print("--- stdout\n" + proc.stdout + "--- stderr\n" + proc.stderr)
    sys.exit(1)


def run_rows(cmd, usage, timeout=None):
    """Runs the bench command line `cmd`; it must exit 0 and print only JSON
    objects, one per stdout line. Returns (proc, [(line number, line, row)])."""
    if not cmd:
        fail(f"usage: {usage}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        fail(f"exit code {proc.returncode}", proc)
    lines = proc.stdout.splitlines()
    if not lines:
        fail("no output on stdout", proc)
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"stdout line {n} is not JSON ({e}): {line!r}", proc)
        if not isinstance(row, dict):
            fail(f"stdout line {n} is not a JSON object: {line!r}", proc)
        rows.append((n, line, row))
    return proc, rows


def positive(row, keys, n):
    """Each of `keys` in `row` is a finite number > 0."""
    for k in keys:
        v = row[k]
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            fail(f"line {n}: {k} = {v!r} is not a positive number")


def scratch_removed(proc, fail=fail):
    """The temporary file the bench announced on stderr ("... data to PATH (")
    and its directory are gone; returns PATH (fail() otherwise)."""
    m = re.search(r"data to (\S+) \(", proc.stderr)
    if not m:
        fail("stderr does not name the temporary file", proc)
    path = m.group(1)
    if os.path.exists(path) or os.path.exists(os.path.dirname(path)):
        fail(f"the temporary file {path} (or its directory) was not removed")
    return path
