#!/usr/bin/env python3
"""Every path argument of the CLI with every kind of bad path (issue 14).

Usage: check_cli_paths.py FAULTLINE_CLI

checksum PATH, bench --file PATH, verify --keep-log PATH and verify --dir PATH
get a directory, a FIFO (no writer / no reader), a socket, a character
device, a dangling link, a link to a FIFO and /proc and /sys files. Each run
must end within its time limit (a hang fails), never by a signal, with exit
code 2 and a message naming the path, or succeed where the path is valid
(/dev/null as a log, a directory as --dir).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile

CLI = sys.argv[1]
LIMIT_S = 60


def run(args, want_code, want_text):
    try:
        p = subprocess.run([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        return f"HANG (no exit within {LIMIT_S} s)"
    out = p.stdout.decode(errors="replace")
    if p.returncode < 0:
        return f"killed by signal {signal.Signals(-p.returncode).name}\n{out}"
    if p.returncode != want_code:
        return f"exit code {p.returncode}, expected {want_code}\n{out}"
    if want_text and want_text not in out:
        return f"output lacks {want_text!r}\n{out}"
    return None


def main():
    bad = []
    with tempfile.TemporaryDirectory(prefix="faultline-cli-paths-") as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        sock_path = os.path.join(d, "sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sock_path)
        dangling = os.path.join(d, "dangling")
        os.symlink(os.path.join(d, "no-such-target"), dangling)
        fifo_link = os.path.join(d, "fifo-link")
        os.symlink(fifo, fifo_link)
        subdir = os.path.join(d, "dir")
        os.mkdir(subdir)
        proc = "/proc/self/status"
        sysf = "/sys/kernel/mm/transparent_hugepage/enabled"
        # (path, what it is, message expected from read paths)
        inputs = [
            (subdir, "directory", "Is a directory"),
            (fifo, "FIFO", "a FIFO"),
            (fifo_link, "link to a FIFO", "a FIFO"),
            (sock_path, "socket", "a socket"),
            ("/dev/null", "character device", "a character device"),
            ("/dev/zero", "character device", "a character device"),
            (dangling, "dangling link", "dangling symbolic link"),
            (proc, "/proc file", "pseudo-file"),
        ]
        if os.path.exists(sysf):
            inputs.append((sysf, "/sys file", "pseudo-file"))
        cases = []
        for path, kind, msg in inputs:
            cases.append((f"checksum of a {kind}", ["checksum", path], 2, msg))
            # (CLI11's ExistingFile check answers first for a directory or a
            # missing target, in its own words; both name the path.)
            cases.append((f"bench --file of a {kind}", ["bench", "--file", path, "--reps", "1"], 2,
                          path))
        verify = ["verify", "--ops", "50", "--seed", "1", "--backend", "memory"]
        cases += [
            ("verify --keep-log to a directory", verify + ["--keep-log", subdir], 2, "Is a directory"),
            ("verify --keep-log to a FIFO with no reader", verify + ["--keep-log", fifo], 2, "no reader"),
            ("verify --keep-log to a socket", verify + ["--keep-log", sock_path], 2, "a socket"),
            ("verify --keep-log to a /proc file", verify + ["--keep-log", "/proc/self/comm"], 2,
             "/proc or /sys"),
            ("verify --keep-log to /dev/null", verify + ["--keep-log", "/dev/null"], 0, "verify: OK"),
            ("verify --keep-log through a dangling link (creates its target)",
             verify + ["--keep-log", dangling], 0, "verify: OK"),
            ("verify --dir that is a FIFO", ["verify", "--ops", "50", "--seed", "1", "--dir", fifo], 2,
             fifo),
            ("verify --dir that is /dev/null", ["verify", "--ops", "50", "--seed", "1", "--dir",
                                                "/dev/null"], 2, "/dev/null"),
            ("verify --dir that is a dangling link", ["verify", "--ops", "50", "--seed", "1", "--dir",
                                                      dangling], 2, dangling),
            ("verify --dir that is a directory", ["verify", "--ops", "50", "--seed", "1", "--dir",
                                                  subdir], 0, "verify: OK"),
        ]
        for name, args, code, text in cases:
            err = run(args, code, text)
            print(f"{name:60} {'ok' if err is None else 'WRONG'}", flush=True)
            if err is not None:
                bad.append((name, args, err))
        if os.path.exists(dangling):
            os.unlink(dangling)
        sock.close()
    for name, args, err in bad:
        print(f"\n--- {name}: faultline {' '.join(args)}\n{err[-2000:]}")
    if bad:
        print(f"\n{len(bad)} path case(s) wrong")
        return 1
    print("\nevery path argument gives a clear error or a correct result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
