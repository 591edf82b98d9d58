# Writes the fuzzingclient spec for wstest and checks that the case patterns select at least one
# case (wstest would otherwise wait forever). Runs under the suite's Python 2.7.
# usage: python spec.py OUT.json URL CASES EXCLUDE REPORT_DIR
import json
import re
import sys

from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
from autobahntestsuite.caseset import CaseSet

out, url, cases, exclude, report = sys.argv[1:6]


def patterns(s):
    return [p for p in re.split(r"[,\s]+", s) if p]


spec = {
    "outdir": report,
    "servers": [{"agent": "roomcast", "url": url}],
    "cases": patterns(cases),
    "exclude-cases": patterns(exclude),
    "exclude-agent-cases": {},
}
chosen = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)
if not chosen:
    sys.stderr.write("autobahn: no case matches %s minus %s\n" % (spec["cases"], spec["exclude-cases"]))
    sys.exit(1)
with open(out, "w") as f:
    json.dump(spec, f, indent=2)
print(len(chosen))
