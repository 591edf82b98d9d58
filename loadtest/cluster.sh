#!/usr/bin/env bash
# Runs one load-test scenario against a fresh cluster: its own redis-server and NODES
# roomcast nodes (--shards 1 each) on loopback; the load tester gets every node's port and
# pid. Example (churn across 3 nodes: nothing lost, every notice exactly once):
#   loadtest/cluster.sh 3 churn --clients 2000 --groups 20 --messages 4000 --send-rate 400 --churners 4 --procs 3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nodes=${1:?usage: loadtest/cluster.sh NODES SCENARIO [loadtest options]}; shift
OUT=${OUT:-$root/target/cluster}
mkdir -p "$OUT"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
# shellcheck source=cluster-lib.sh
. "$root/loadtest/cluster-lib.sh"
start_cluster "$nodes"
"$root/target/release/roomcast-loadtest" "$@" --port "$PORTS" \
  --pid "$PIDS" --label "cluster-$nodes"
