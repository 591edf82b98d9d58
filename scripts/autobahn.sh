#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (fuzzingclient) against roomcast's echo path and prints one line
# per failed case, then `autobahn: N passed, M failed`.
#
# usage: scripts/autobahn.sh [CASES]        (needs target/release/roomcast: cargo build --release)
#   CASES   case patterns, comma or space separated, e.g. "1.*,7.1.1" (default: all)
#
# environment:
#   AUTOBAHN_EXCLUDE     patterns always left out (default: none)
#   AUTOBAHN_JOBS        wstest clients run side by side, the cases dealt out between them
#                        (default: the number of cores, at most 4; the Python client, not the
#                        server, is what takes the time in the compression cases)
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
exclude=${AUTOBAHN_EXCLUDE-}
budget=${AUTOBAHN_TIMEOUT:-900}
jobs=${AUTOBAHN_JOBS:-$(n=$(nproc 2>/dev/null || echo 1); echo $((n > 4 ? 4 : n)))}
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
# Compression on, from the smallest message: cases 12.* and 13.* (permessage-deflate) check
# every compressed echo; the other cases do not offer the extension and see none.
work=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-autobahn.XXXXXX")
"$bin" --listen 127.0.0.1:0 --shards 2 --echo-path /echo --compression --compression-min-size 1 \
    >"$work/server.out" 2>"$work/server.err" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" && break; sleep 0.1; done
addr=$(sed -n 's/^roomcast listening on //p' "$work/server.out")
[ -n "$addr" ] || { cat "$work/server.err" >&2; echo "autobahn: the server did not start"; echo "autobahn: 0 passed, 0 failed"; exit 1; }

# --- the run ----------------------------------------------------------------------------------
if ! planned=$("$py" "$here/spec.py" "$work/spec" "ws://$addr/echo" "$cases" "$exclude" "$work/report" "$jobs"); then
    echo "autobahn: 0 passed, 0 failed"
    exit 1
fi
specs=("$work"/spec.*.json)
echo "autobahn: running $planned cases against ws://$addr/echo (${#specs[@]} clients)" >&2
pids=()
for spec in "${specs[@]}"; do
    (cd "$work" && exec timeout -k 10 "$(left)" "$py" -c \
        'import sys; sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; run()' \
        -m fuzzingclient -s "$spec" >"$spec.log" 2>&1) &
    pids+=($!)
done
rc=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { rc=$?; tail -5 "${specs[$i]}.log" >&2; }
done
why="wstest exit status $rc"
case $rc in 124 | 137) why="timed out after AUTOBAHN_TIMEOUT=${budget}s" ;; esac
if [ -n "${AUTOBAHN_REPORT_DIR:-}" ]; then
    for d in "$work"/report.*; do
        [ -d "$d" ] && mkdir -p "$AUTOBAHN_REPORT_DIR/${d##*/}" && cp -a "$d/." "$AUTOBAHN_REPORT_DIR/${d##*/}/"
    done
fi
kill -0 "$server" 2>/dev/null || { echo "autobahn: the server died during the run" >&2; why="server died"; }
indexes=()
for spec in "${specs[@]}"; do indexes+=("$work/report.$(basename "$spec" .json | sed 's/^spec\.//')/index.json"); done
python3 "$here/summary.py" "$planned" "$why" "${indexes[@]}"
