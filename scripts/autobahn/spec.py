# Writes the fuzzingclient specs for wstest: JOBS of them, the chosen cases dealt out in turn
# so that each job gets a like share of the slow ones -- and checks that the case patterns
# select at least one case (wstest would otherwise wait forever). Prints how many were chosen.
# Runs under the suite's Python 2.7.
# usage: python spec.py OUT_PREFIX URL CASES EXCLUDE REPORT_PREFIX JOBS
#        (writes OUT_PREFIX.N.json reporting to REPORT_PREFIX.N, N = 0..JOBS-1, non-empty only)
import json
import re
import sys

from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
from autobahntestsuite.caseset import CaseSet

out, url, cases, exclude, report, jobs = sys.argv[1:7]
jobs = max(1, int(jobs))


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
for n in range(min(jobs, len(chosen))):
    part = dict(spec, outdir="%s.%d" % (report, n), cases=chosen[n::jobs], **{"exclude-cases": []})
    with open("%s.%d.json" % (out, n), "w") as f:
        json.dump(part, f, indent=2)
print(len(chosen))
