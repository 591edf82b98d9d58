#!/usr/bin/env bash
# roomcast.js's suites — unit (fake clock), Node (the ws package) and headless Chromium
# (Debian's chromium driven by puppeteer-core) against target/release/roomcast — and the
# server's admin page in the same Chromium (test/admin-page.test.mjs; its cluster case starts
# a redis-server), installing what they need: chromium (apt) if missing, the npm dev
# dependencies pinned by package-lock.json.
#
# usage: clients/js/test.sh   (after cargo build --release --bin roomcast)
# environment: JS_TEST_TIMEOUT  bound on the whole run in seconds, installs included (default 600)
set -euo pipefail
cd "$(dirname "$0")"
budget=${JS_TEST_TIMEOUT:-600}
start=$SECONDS
left() { local r=$((budget - (SECONDS - start))); echo $((r > 1 ? r : 1)); }
[ -x ../../target/release/roomcast ] || { echo "roomcast.js tests: build first: cargo build --release --bin roomcast" >&2; exit 2; }
if ! command -v chromium >/dev/null; then
    echo "installing chromium (Debian package) for the browser suite" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    timeout "$(left)" $SUDO apt-get install -y chromium >/dev/null 2>&1 ||
        { timeout "$(left)" $SUDO apt-get update >/dev/null && timeout "$(left)" $SUDO apt-get install -y chromium >/dev/null; }
fi
if ! command -v redis-server >/dev/null; then
    echo "installing redis-server (Debian package) for the admin page's cluster case" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    timeout "$(left)" $SUDO apt-get install -y redis-server >/dev/null 2>&1 ||
        { timeout "$(left)" $SUDO apt-get update >/dev/null && timeout "$(left)" $SUDO apt-get install -y redis-server >/dev/null; }
fi
timeout "$(left)" npm ci --no-audit --no-fund --loglevel=error
timeout "$(left)" npm test
