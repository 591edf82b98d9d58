#!/usr/bin/env bash
# The whole test suite: unit tests, black-box tests (real server processes on port 0, real
# WebSocket and HTTP clients; cluster tests with their own redis-server), the server against
# its OpenAPI document (Schemathesis), the browser client's suites (Node and Chromium, through
# a fault-injecting proxy), the chaos soak (a Sentinel-watched cluster losing its
# Redis master twice and a node once under load), then Autobahn conformance.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
    echo "installing redis-server (Debian package) for the cluster tests" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y redis-server >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y redis-server >/dev/null; }
fi
# tests/webhook_verify.rs runs the README's JavaScript snippet with Node.js (and its Python one).
if ! command -v node >/dev/null; then
    echo "installing nodejs (Debian package) for tests/webhook_verify.rs" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y nodejs >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y nodejs >/dev/null; }
fi
# tests/deploy.rs checks deploy/roomcast.service with systemd-analyze (Debian's systemd).
if ! command -v systemd-analyze >/dev/null; then
    echo "installing systemd (Debian package) for systemd-analyze in tests/deploy.rs" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y systemd >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y systemd >/dev/null; }
fi
cargo build --release --bin roomcast
cargo test --workspace --all-targets
scripts/openapi-check.sh
# roomcast.js: its unit tests, then the same scenarios in Node (ws) and in headless Chromium.
clients/js/test.sh
loadtest/chaos.sh
scripts/autobahn.sh
