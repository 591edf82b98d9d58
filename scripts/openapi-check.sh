#!/usr/bin/env bash
# Checks the OpenAPI document against a live server: Schemathesis (PyPI) generates requests
# from GET /api/openapi.json — valid ones and ones the document says are invalid — and fails
# on any 5xx and on any status, content type, header or body the document does not allow.
#
# usage: scripts/openapi-check.sh          (needs target/release/roomcast: cargo build --release)
# environment:
#   OPENAPI_MAX_EXAMPLES  examples per operation and phase (default 40)
#   OPENAPI_TIMEOUT       bound on the whole run in seconds, install included (default 600)
#   OPENAPI_CACHE         where Schemathesis is installed (default ~/.cache/roomcast/schemathesis)
# The first run installs Schemathesis (pinned below) into a venv there: about 10-30 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/roomcast
version=4.32.5
cache=${OPENAPI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/schemathesis}
venv=$cache/venv-$version
budget=${OPENAPI_TIMEOUT:-600}
start=$SECONDS
left() { local r=$((budget - (SECONDS - start))); echo $((r > 1 ? r : 1)); }
[ -x "$bin" ] || { echo "openapi: build first: cargo build --release" >&2; exit 2; }

if [ ! -e "$venv/.ready" ]; then
    echo "openapi: installing schemathesis $version into $venv (first run only)" >&2
    mkdir -p "$cache"
    rm -rf "$venv" # a venv cannot be moved into place: build it where it stays, mark it ready
    if ! { python3 -m venv "$venv" &&
        timeout "$(left)" "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"; } >&2; then
        echo "openapi: could not install schemathesis from PyPI" >&2
        exit 3
    fi
    touch "$venv/.ready"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-openapi.XXXXXX")
secret=openapi-check-secret
"$bin" --listen 127.0.0.1:0 --shards 2 --jwt-secret "$secret" --history-size 5 >"$work/out" 2>"$work/err" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's/^roomcast listening on //p' "$work/out")
[ -n "$addr" ] || { cat "$work/err" >&2; echo "openapi: the server did not start" >&2; exit 1; }
token=$("$bin" token --jwt-secret "$secret" --ttl 1h)
# A registered system, so that calls get past "system not registered" too.
curl -s -o /dev/null -X POST "http://$addr/api/register" -H "Authorization: Bearer $token" -d '{"systemId":"demo"}'

rc=0
timeout -k 10 "$(left)" "$venv/bin/st" run "http://$addr/api/openapi.json" \
    --url "http://$addr" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-40}" \
    --workers 2 \
    --no-color >"$work/st.log" 2>&1 || rc=$?
tail -25 "$work/st.log"
[ "$rc" = 0 ] || grep -B2 -A12 "^_____\|ST201\|Schema-violating" "$work/st.log" | head -150 >&2
kill -0 "$server" 2>/dev/null || { echo "openapi: the server died during the run" >&2; rc=1; }
if [ "$rc" = 0 ]; then
    echo "openapi: the server matches its OpenAPI document"
else
    echo "openapi: FAILED (schemathesis exit $rc)"
fi
exit "$rc"
