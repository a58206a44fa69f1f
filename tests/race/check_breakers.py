#!/usr/bin/env python3
"""Runs the race catalogue under each rule breaker (FAULTLINE_BREAK=R<n>).

For every breaker set, exactly the entries that list the broken rule(s) in
DESIGN.md section 4 must fail, and every other entry must still pass. A test
that hangs counts as failing (it deadlocked); each test runs in its own process.
"""
import os
import subprocess
import sys

BINARY = sys.argv[1]
ENTRIES = ["F1_FillVsInvalidate", "F2_FillAfterTruncate", "F3_InstallAfterTruncateUnmap",
           "F4_PrivateCopyVsTruncate", "F5_PunchKeepsPrivateCopies", "F6_HalfFilledFrame",
           "F7_InvalidateVsStore", "F8_NotUptodateFrame", "F9_TeardownVsAccess",
           "F10_ReadIntoOwnMapping", "F11_WritebackVsTruncate", "F12_WriteExtendVsTruncate",
           "W1_MkwriteVsTruncate", "W2_CleanBetweenMkwriteAndDirty",
           "W3_StoreBetweenCopyAndProtect", "W4_MkwriteReturnsLocked",
           "W5_TimeUpdateUnderPageLock", "W6_MkwriteFails", "W7_ErrorSeenOncePerHandle",
           "W8_StoreDuringWriteback", "W9_TeardownZapVsInvalidate",
           "W10_RefusedMkwriteOpensPage", "W11_StablePagesOnEveryStorePath",
           "E1_ReclaimVsStore", "E2_ReclaimVsFill"]
# breaker set -> entries that must fail (DESIGN.md section 4, "closed by").
EXPECTED = {
    "R1": {"F1_FillVsInvalidate", "E2_ReclaimVsFill"},
    "R2": {"F2_FillAfterTruncate"},
    "R3": {"F11_WritebackVsTruncate", "F12_WriteExtendVsTruncate"},
    "R4": {"F1_FillVsInvalidate", "F7_InvalidateVsStore", "W9_TeardownZapVsInvalidate"},
    "R10": {"F8_NotUptodateFrame"},
    "R11": {"F10_ReadIntoOwnMapping"},
    "R13": {"F9_TeardownVsAccess"},
    # E2 lists R1 but not under R1+R10: with R10 broken too, the unlocked fault
    # maps the frame reclaim is about to punch without filling it (no page
    # marked uptodate over a hole; the punch zaps the PTE): nothing to catch.
    "R1,R10": {"F1_FillVsInvalidate", "F6_HalfFilledFrame", "F8_NotUptodateFrame"},
    "R5": {"W1_MkwriteVsTruncate", "W4_MkwriteReturnsLocked", "W6_MkwriteFails",
           "W10_RefusedMkwriteOpensPage"},
    "R6": {"W2_CleanBetweenMkwriteAndDirty", "W5_TimeUpdateUnderPageLock"},
    "R7": {"W3_StoreBetweenCopyAndProtect", "W8_StoreDuringWriteback", "W9_TeardownZapVsInvalidate",
           "W11_StablePagesOnEveryStorePath"},
    "R8": {"W7_ErrorSeenOncePerHandle"},
    "R9": {"E1_ReclaimVsStore", "E2_ReclaimVsFill"},
}


def run(entry, breaker):
    env = dict(os.environ, FAULTLINE_BREAK=breaker)
    try:
        p = subprocess.run([BINARY, f"--gtest_filter=Race.{entry}"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return p.returncode == 0, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return False, "TIMEOUT\n" + (e.stdout or b"").decode(errors="replace")


def main():
    bad = []
    only = sys.argv[2:]  # optional: breaker sets to check (default: all)
    for breaker, must_fail in EXPECTED.items():
        if only and breaker not in only:
            continue
        for entry in ENTRIES:
            ok, out = run(entry, breaker)
            want_fail = entry in must_fail
            verdict = "fails" if not ok else "passes"
            good = (not ok) == want_fail
            print(f"FAULTLINE_BREAK={breaker:7} {entry:32} {verdict:6} "
                  f"{'(as required)' if good else '(WRONG)'}", flush=True)
            if not good:
                bad.append((breaker, entry, out))
    for breaker, entry, out in bad:
        print(f"\n--- {entry} with FAULTLINE_BREAK={breaker} ---\n{out[-3000:]}")
    if bad:
        print(f"\n{len(bad)} breaker check(s) wrong")
        return 1
    print("\nevery rule breaker is caught by exactly its race entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
