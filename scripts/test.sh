#!/usr/bin/env bash
# The whole test suite: unit tests, black-box tests (real server processes on port 0, real
# WebSocket and HTTP clients), then Autobahn conformance against the echo path.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin roomcast
cargo test --workspace --all-targets
scripts/autobahn.sh
