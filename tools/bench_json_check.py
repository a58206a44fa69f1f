"""Shared by the check_bench_*_json.py scripts."""
import os
import re


def scratch_removed(proc, fail):
    """The temporary file the bench announced on stderr ("... data to PATH (")
    and its directory are gone; returns PATH (fail() otherwise)."""
    m = re.search(r"data to (\S+) \(", proc.stderr)
    if not m:
        fail("stderr does not name the temporary file", proc)
    path = m.group(1)
    if os.path.exists(path) or os.path.exists(os.path.dirname(path)):
        fail(f"the temporary file {path} (or its directory) was not removed")
    return path
