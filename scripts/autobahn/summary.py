"""Reads wstest's report (index.json) and prints one line per case that did not pass, then
`autobahn: N passed, M failed`. Exit 0 only when M == 0 and N > 0.

A case passes when its `behavior` is OK, NON-STRICT or INFORMATIONAL (as Autobahn's own report
judges). Cases the run planned but that have no result (a crash, a timeout) count as failed.
usage: python3 summary.py PLANNED WHY_IF_EMPTY REPORT_DIR/index.json...  (one per job)
"""
import json
import os
import sys

PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def main():
    planned, why, indexes = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    results = {}
    for index in indexes:
        if os.path.exists(index) and os.path.getsize(index) > 0:
            with open(index) as f:
                for cases in json.load(f).values():
                    results.update(cases)
    passed = failed = 0
    for case_id in sorted(results, key=case_key):
        r = results[case_id]
        if r.get("behavior") in PASS:
            passed += 1
        else:
            failed += 1
            print("FAIL %-8s behavior=%s behaviorClose=%s remoteCloseCode=%s"
                  % (case_id, r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode")))
    missing = planned - len(results)
    if missing > 0:
        print("FAIL %d case(s) without a result (%s)" % (missing, why))
        failed += missing
    if not results and missing <= 0:
        print("FAIL no case ran (%s)" % why)
        failed += 1
    print("autobahn: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
