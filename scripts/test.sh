#!/usr/bin/env bash
# The whole test suite: unit tests, black-box tests (real server processes on port 0, real
# WebSocket and HTTP clients; cluster tests with their own redis-server, and the cluster suite
# again on a Redis Cluster of their own), the server against
# its OpenAPI document (Schemathesis), the browser client's suites (Node and Chromium, through
# a fault-injecting proxy), the chaos soak (a Sentinel-watched cluster losing its
# Redis master twice and a node once under load; then the same on a Redis Cluster), a rolling restart of a 3-node cluster under
# load (3,000 recovering clients: nothing lost, duplicated or flapping), then Autobahn
# conformance.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests need, installed when their command is missing:
# need COMMAND PACKAGE WHAT-FOR
need() {
    command -v "$1" >/dev/null && return
    echo "installing $2 (Debian package) for $3" >&2
    local sudo
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y "$2" >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
}
need redis-server redis-server "the cluster tests"
need node nodejs "tests/webhook_verify.rs (the README's JavaScript snippet) and tests/backends.rs"
need go golang-go "tests/backends.rs (examples/backends/go)"
need php php-cli "tests/backends.rs (examples/backends/php)"
need systemd-analyze systemd "tests/deploy.rs (systemd-analyze verify and security)"
cargo build --release --bin roomcast
cargo test --workspace --all-targets
# The cluster suite again, on a Redis Cluster (six redis-servers, sharded pub/sub).
ROOMCAST_TEST_REDIS=cluster cargo test --test cluster
scripts/openapi-check.sh
# roomcast.js: its unit tests, then the same scenarios in Node (ws) and in headless Chromium.
clients/js/test.sh
loadtest/chaos.sh
REDIS=cluster OUT=target/chaos-cluster loadtest/chaos.sh
loadtest/rolling.sh
scripts/autobahn.sh
