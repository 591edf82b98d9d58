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
# need COMMAND PACKAGE WHAT-FOR: installs a Debian package when its command is missing.
need() {
    command -v "$1" >/dev/null && return
    echo "installing $2 (Debian package) for $3" >&2
    local sudo
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    timeout "$(left)" $sudo apt-get install -y "$2" >/dev/null 2>&1 ||
        { timeout "$(left)" $sudo apt-get update >/dev/null && timeout "$(left)" $sudo apt-get install -y "$2" >/dev/null; }
}
need chromium chromium "the browser suite"
need redis-server redis-server "the admin page's cluster case"
timeout "$(left)" npm ci --no-audit --no-fund --loglevel=error
timeout "$(left)" npm test
