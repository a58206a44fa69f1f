#!/usr/bin/env python3
"""The CLI on a RADOS file (label `rados`, needs the rados_cluster fixture):
   check_rados_cli.py FAULTLINE CONF POOL
Puts a file into the pool with the `rados` tool in faultline's layout (header
object + 1 MiB chunk objects, one chunk left absent: a hole reading zeros, the
last one short), then checks that
 - `faultline checksum rados://...` exits 0 ("checksums match": mapping vs
   backend reads) and its digest equals `faultline checksum` of the same bytes
   in a local file (so both sides agree with what `rados put` stored);
 - `faultline bench --file rados://... --reps 1 --json` prints faultline and
   rados-read rows for seq and rand, cache n/a, ratio_to_rados-read, data_ok,
   RADOS counters, and the faultline rows filled pages;
 - a missing RADOS file and a bad URI are clear errors (exit 2);
and removes the objects."""
import json
import os
import random
import subprocess
import sys
import tempfile

OBJ = 1 << 20
PAGE = 4096


def fail(msg, proc=None):
    print(f"FAIL: {msg}")
    if proc is not None:
        print("--- stdout\n" + proc.stdout + "--- stderr\n" + proc.stderr)
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def main():
    if len(sys.argv) != 4:
        fail("usage: check_rados_cli.py FAULTLINE CONF POOL")
    exe, conf, pool = sys.argv[1:]
    if not os.path.exists(conf):
        fail(f"no cluster: {conf} does not exist (the rados_cluster fixture writes it)")
    name = f"cli-test-{os.getpid()}-{random.randrange(1 << 30):08x}"
    size = 5 * OBJ + 3 * PAGE + 100  # 6 chunks, the last one short
    hole_chunk = 2
    rng = random.Random(1234)
    data = bytearray(rng.getrandbits(8) for _ in range(size))
    data[hole_chunk * OBJ:(hole_chunk + 1) * OBJ] = bytes(OBJ)
    uri = f"rados://{pool}/{name}?conf={conf}"
    objects = []
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "local.bin")
        with open(local, "wb") as f:
            f.write(data)

        def put(oid, payload):
            p = os.path.join(tmp, "obj")
            with open(p, "wb") as f:
                f.write(payload)
            r = run(["rados", "-c", conf, "-p", pool, "put", oid, p])
            if r.returncode != 0:
                fail(f"rados put {oid} failed", r)
            objects.append(oid)

        try:
            put(f"{name}.hdr", f"faultline-rados 1\nobject_size {OBJ}\nsize {size}\n".encode())
            for i in range((size + OBJ - 1) // OBJ):
                if i != hole_chunk:
                    put(f"{name}.{i:016x}", bytes(data[i * OBJ:(i + 1) * OBJ]))

            r = run([exe, "checksum", uri])
            if r.returncode != 0 or "checksums match" not in r.stdout:
                fail(f"checksum of {uri}: exit {r.returncode}", r)
            lines = r.stdout.splitlines()
            if not lines[0].split()[1] == "faultline" or lines[1].split()[1] != "backend":
                fail("checksum output lacks the faultline / backend lines", r)
            digest = lines[0].split()[0]
            rl = run([exe, "checksum", local])
            if rl.returncode != 0 or rl.stdout.split()[0] != digest:
                fail(f"the RADOS digest {digest} differs from the local copy's", rl)

            r = run([exe, "bench", "--file", uri, "--reps", "1", "--json"])
            if r.returncode != 0:
                fail(f"bench --file {uri}: exit {r.returncode}", r)
            seen = set()
            for n, line in enumerate(r.stdout.splitlines(), 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"bench stdout line {n} is not JSON ({e}): {line!r}", r)
                for k in ("method", "pattern", "cache", "gib_per_s", "ratio_to_rados-read",
                          "ratio_baseline", "data_ok", "size_bytes", "rados_objects_read",
                          "rados_max_in_flight"):
                    if k not in row:
                        fail(f"bench line {n} lacks {k}: {line!r}", r)
                if "ratio_to_mmap" in row or row["ratio_baseline"] != "rados-read":
                    fail(f"bench line {n}: the baseline is not rados-read: {line!r}")
                if row["cache"] != "n/a" or row["data_ok"] is not True or row["size_bytes"] != size:
                    fail(f"bench line {n}: cache/data_ok/size_bytes wrong: {line!r}", r)
                if not (row["gib_per_s"] > 0) or row["rados_objects_read"] <= 0:
                    fail(f"bench line {n}: no throughput or no object reads: {line!r}", r)
                if row["method"] == "rados-read" and abs(row["ratio_to_rados-read"] - 1) > 1e-6:
                    fail(f"bench line {n}: rados-read's ratio is not 1: {line!r}")
                if row["method"] == "faultline" and row.get("pages_filled", 0) <= 0:
                    fail(f"bench line {n}: the faultline row filled no pages: {line!r}")
                seen.add((row["method"], row["pattern"]))
            want = {(m, p) for m in ("faultline", "rados-read") for p in ("seq", "rand")}
            # faultline-2M rows come too when a pool of 2 MiB pages is there.
            want2m = want | {("faultline-2M", p) for p in ("seq", "rand")}
            if seen != want and seen != want2m:
                fail(f"bench rows: {sorted(seen)}, want {sorted(want)}", r)

            r = run([exe, "checksum", f"rados://{pool}/{name}-absent?conf={conf}"])
            if r.returncode != 2 or "error" not in r.stderr:
                fail("checksum of a missing RADOS file is not a clear error (exit 2)", r)
            r = run([exe, "bench", "--file", f"rados://{pool}?conf={conf}"])
            if r.returncode != 2:
                fail("bench --file with a URI lacking the name is not refused (exit 2)", r)
        finally:
            for oid in objects:
                run(["rados", "-c", conf, "-p", pool, "rm", oid])
    print(f"ok: checksum and bench of {uri} ({size} bytes, chunk {hole_chunk} a hole)")


if __name__ == "__main__":
    main()
