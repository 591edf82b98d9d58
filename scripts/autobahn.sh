#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (fuzzingclient) against roomcast's echo path and prints one line
# per failed case, then `autobahn: N passed, M failed`.
#
# usage: scripts/autobahn.sh [CASES]        (needs target/release/roomcast: cargo build --release)
#   CASES   case patterns, comma or space separated, e.g. "1.*,7.1.1" (default: all)
#
# environment:
#   AUTOBAHN_EXCLUDE     patterns always left out (default "12.*,13.*": permessage-deflate,
#                        which roomcast does not negotiate yet)
#   AUTOBAHN_TIMEOUT     bound on the whole run in seconds, install included (default 900)
#   AUTOBAHN_CACHE       where the suite is installed (default ~/.cache/roomcast/autobahn)
#   AUTOBAHN_REPORT_DIR  copy the HTML/JSON report there
#   AUTOBAHN_PYTHON2, AUTOBAHN_DEBIAN_MIRROR   see scripts/autobahn/install.sh
#
# The first run installs the suite (a Python 2.7 plus the pinned packages in
# scripts/autobahn/requirements-py27.txt) under AUTOBAHN_CACHE: about a minute. Later runs reuse
# it; changing the pins or the installer installs afresh.
#
# exit: 0 when every case passed and at least one ran; 1 when a case failed or none ran;
#       3 when the suite could not be installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/scripts/autobahn
bin=$root/target/release/roomcast
cases=${1:-*}
exclude=${AUTOBAHN_EXCLUDE-12.*,13.*}
budget=${AUTOBAHN_TIMEOUT:-900}
cache=${AUTOBAHN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/autobahn}
start=$SECONDS
left() { local r=$((budget - (SECONDS - start))); echo $((r > 1 ? r : 1)); }

[ -x "$bin" ] || { echo "autobahn: build first: cargo build --release" >&2; exit 2; }

# --- install (once per pin set; concurrent runs wait for one install) -----------------------
key=$(cat "$here/requirements-py27.txt" "$here/install.sh" | cksum | cut -d' ' -f1)
env_dir=$cache/suite-$key
mkdir -p "$cache"
if [ ! -e "$env_dir/.ready" ]; then
    echo "autobahn: installing the suite into $env_dir (first run only, about a minute)" >&2
    exec 9>"$cache/.lock"
    if ! flock -w "$(left)" 9 || ! timeout -k 5 "$(left)" "$here/install.sh" "$env_dir" >/dev/null; then
        echo "autobahn: the Autobahn testsuite could not be installed (see above); no case ran" >&2
        echo "autobahn: 0 passed, 0 failed"
        exit 3
    fi
    exec 9>&-
fi
py=$env_dir/bin/python

# --- the server under test ------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-autobahn.XXXXXX")
"$bin" --listen 127.0.0.1:0 --shards 2 --echo-path /echo >"$work/server.out" 2>"$work/server.err" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" && break; sleep 0.1; done
addr=$(sed -n 's/^roomcast listening on //p' "$work/server.out")
[ -n "$addr" ] || { cat "$work/server.err" >&2; echo "autobahn: the server did not start"; echo "autobahn: 0 passed, 0 failed"; exit 1; }

# --- the run ----------------------------------------------------------------------------------
if ! planned=$("$py" "$here/spec.py" "$work/spec.json" "ws://$addr/echo" "$cases" "$exclude" "$work/report"); then
    echo "autobahn: 0 passed, 0 failed"
    exit 1
fi
echo "autobahn: running $planned cases against ws://$addr/echo" >&2
rc=0
(cd "$work" && timeout -k 10 "$(left)" "$py" -c \
    'import sys; sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; run()' \
    -m fuzzingclient -s "$work/spec.json" >"$work/runner.log" 2>&1) || rc=$?
why="wstest exit status $rc"
case $rc in 124 | 137) why="timed out after AUTOBAHN_TIMEOUT=${budget}s" ;; esac
[ "$rc" = 0 ] || tail -5 "$work/runner.log" >&2
if [ -n "${AUTOBAHN_REPORT_DIR:-}" ] && [ -d "$work/report" ]; then
    mkdir -p "$AUTOBAHN_REPORT_DIR" && cp -a "$work/report/." "$AUTOBAHN_REPORT_DIR/"
fi
kill -0 "$server" 2>/dev/null || { echo "autobahn: the server died during the run" >&2; why="server died"; }
python3 "$here/summary.py" "$work/report/index.json" "$planned" "$why"
