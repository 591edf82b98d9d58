# Sourced by cluster.sh, cluster100k.sh, cluster1m.sh and redis-cost.sh: start_cluster NODES starts a redis-server on a
# free loopback port and NODES roomcast nodes (--shards 1 each) in cluster mode, waits until
# every node reached Redis, and sets PORTS and PIDS (comma-separated), the arrays pids and
# ports, REDIS (its pid) and REDIS_PORT. Extra flags for every node: NODE_FLAGS. Logs go to
# $OUT. Another binary: ROOMCAST_BIN. stop_cluster stops it all (so a script may start another); so does exiting.
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
pids=(); ports=()
stop_cluster() {
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${REDIS:-}" ] && kill "$REDIS" 2>/dev/null || true
  wait 2>/dev/null || true
  SAMPLER="" REDIS="" pids=() ports=()
}
trap stop_cluster EXIT

start_cluster() {
  local nodes=$1 rport i log port
  rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
  REDIS=$! REDIS_PORT=$rport
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$rport") 2>/dev/null && break; sleep 0.1; done
  for i in $(seq "$nodes"); do
    log=$OUT/node$i.log
    # shellcheck disable=SC2086
    "${ROOMCAST_BIN:-$root/target/release/roomcast}" --listen 127.0.0.1:0 --shards 1 --redis "redis://127.0.0.1:$rport" ${NODE_FLAGS:-} >"$log" 2>&1 &
    pids+=($!)
    port=$(listen_port "$log" "node $i") || exit 1
    ports+=("$port")
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/health" | grep -q '"cluster":"up"' && break; sleep 0.1; done
  done
  PORTS=$(IFS=,; echo "${ports[*]}")
  PIDS=$(IFS=,; echo "${pids[*]}")
  echo "redis :$rport, $nodes nodes on ports $PORTS (pids $PIDS)" >&2
}
