#!/usr/bin/env bash
# Chaos soak: 3 roomcast nodes on Redis behind Sentinel (master + replica + 3 Sentinels, all
# on loopback, all started here), the churn scenario running across them, and meanwhile:
#   step 1: SIGKILL the Redis master   (Sentinel promotes the replica; the killed server comes
#                                        back as the new master's replica)
#   step 2: SIGKILL node 3              (its clients are cut; its presence is reaped)
#   step 3: SIGKILL the Redis master again
# Each step prints "killed" at the blow and "healthy" once the cluster is whole again (the end of its unhealthy
# window; the spare replica is started after it); the load tester judges every message
# answered 200 outside the steps' windows (none may be lost or duplicated) and every churn
# notice outside them (exactly once), and reports the windows. The nodes' presence webhooks go to
# the load tester, where stayers and churn sessions are users (multi-tab users spread over the
# nodes, single-tab ones, churn sessions as extra tabs): every client_connected /
# client_disconnected of a churn session outside the windows and every user_online /
# user_offline must come exactly once (a stayer's user goes offline only if the node kill took
# all its tabs). Exit status: non-zero on any
# loss, duplicate or missing notice.
# With REDIS=cluster, the nodes run on a Redis Cluster instead (six servers: three masters with
# a replica each, cluster-node-timeout 1 s), and each master step SIGKILLs a master (its replica
# takes over; the killed server comes back as that replica's replica).
#   loadtest/chaos.sh                      # defaults below, about 90 s
#   REDIS=cluster loadtest/chaos.sh        # the same on a Redis Cluster
#   loadtest/chaos.sh --messages 40000     # more: any churn/loadtest option
# Results: target/chaos/chaos.json; logs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/server-lib.sh
. "$root/loadtest/server-lib.sh"
OUT=${OUT:-$root/target/chaos}
# A Redis Cluster server's settings (nodes.conf is in its --dir). A replica takes over however
# long ago it last heard from its master (validity factor 0): one that synced and then idled
# (no writes for a while) would otherwise refuse to, and the shard stay down.
CLUSTER_CONF="--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 --cluster-replica-validity-factor 0"
# Is the node on port $1 connected to Redis? (bash's /dev/tcp: no curl needed)
node_up() {
  local r
  r=$(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || return 1
  [[ $r == *'"cluster":"up"'* ]]
}

if [ "${1:-}" = step ]; then
  # shellcheck source=/dev/null
  . "$OUT/state"
  k=$2
  cli() { redis-cli -h 127.0.0.1 -p "$@"; }
  master_port() { cli "${sports[0]}" SENTINEL GET-MASTER-ADDR-BY-NAME mymaster 2>/dev/null | sed -n 2p; }
  all_up() {
    # Every node still running (not the one a step killed).
    for i in "${!nports[@]}"; do
      grep -qs '^State:.*[RSD]' "/proc/${npids[$i]}/status" || continue # gone, or a zombie
      node_up "${nports[$i]}" || return 1
    done
  }
  wait_for() { # seconds, description, command...
    local n=$(($1 * 10)) what=$2; shift 2
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    echo "chaos: $what did not happen" >&2; return 1
  }
  start_member() { # port: a Redis Cluster server, in its own directory (its nodes.conf)
    redis-server --port "$1" --bind 127.0.0.1 --dir "$OUT/redis-$1" --save "" --appendonly no $CLUSTER_CONF >"$OUT/redis-$1.log" 2>&1 &
    echo $! >"$OUT/redis-$1.pid"
  }
  case ${STEPS[$((k - 1))]} in
    cmaster)
      # A Redis Cluster master (the first listed that serves slots), SIGKILLed.
      live=${cports[0]}
      for p in "${cports[@]}"; do cli "$p" PING >/dev/null 2>&1 && { live=$p; break; }; done
      old=$(cli "$live" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "[:@]"); print a[2]; exit }')
      kill -9 "$(cat "$OUT/redis-$old.pid")"
      echo killed
      echo "chaos: killed the Redis Cluster master :$old" >&2
      for p in "${cports[@]}"; do [ "$p" != "$old" ] && { live=$p; break; }; done
      promoted() {
        cli "$live" CLUSTER INFO 2>/dev/null | grep -q cluster_state:ok &&
          ! cli "$live" CLUSTER NODES 2>/dev/null | awk -v p=":$old@" 'index($2, p) && $3 ~ /master/ && $3 !~ /fail/ { found = 1 } END { exit !found }'
      }
      wait_for 30 "a replica taking over" promoted
      echo "chaos: a replica serves :$old's slots" >&2
      wait_for 30 "every running node on the new masters" all_up
      echo healthy
      # The killed server comes back with its cluster config: a replica of the one promoted.
      start_member "$old"
      synced() { cli "$old" INFO replication 2>/dev/null | grep -q master_link_status:up; }
      wait_for 30 "the killed server syncing as a replica" synced
      ;;
    master)
      old=$(master_port)
      pid=$(cat "$OUT/redis-$old.pid")
      kill -9 "$pid"
      echo killed
      echo "chaos: killed the Redis master :$old" >&2
      moved() { [ -n "$(master_port)" ] && [ "$(master_port)" != "$old" ]; }
      wait_for 30 "a failover" moved
      new=$(master_port)
      echo "chaos: Sentinel promoted :$new" >&2
      wait_for 30 "every running node on the new master" all_up
      echo healthy
      # Every Sentinel must know of the failover before the killed server comes back: one that
      # still takes it for the master sees it report itself as a replica and turns it back into
      # a master, empty (seen twice in clean-clone runs: REPLICAOF NO ONE from a sentinel 2 s
      # after it started, then presence lost with the data and 200 notices missing).
      agreed() {
        local p
        for p in "${sports[@]}"; do
          [ "$(cli "$p" SENTINEL GET-MASTER-ADDR-BY-NAME mymaster 2>/dev/null | sed -n 2p)" = "$new" ] || return 1
        done
      }
      wait_for 30 "every Sentinel naming the new master" agreed
      # The killed server comes back empty, as the new master's replica (a spare for the next
      # step) — with replica-priority 0 until it has synced: a Sentinel that fails over in the
      # meantime (a spurious one: seen under CPU load, down-after-milliseconds is 1 s) must not
      # promote an empty server (seen once: REPLICAOF NO ONE to it 1 s after it started, the data
      # gone with it). Its priority is restored once it holds the data.
      rm -rf "${OUT:?}/redis-$old"; mkdir -p "$OUT/redis-$old"
      redis-server --port "$old" --bind 127.0.0.1 --dir "$OUT/redis-$old" --save "" --appendonly no \
        --replicaof 127.0.0.1 "$new" --replica-priority 0 >"$OUT/redis-$old.log" 2>&1 &
      echo $! >"$OUT/redis-$old.pid"
      synced() { cli "$old" INFO replication 2>/dev/null | grep -q master_link_status:up; }
      seen() { cli "${sports[0]}" SENTINEL REPLICAS mymaster 2>/dev/null | grep -qx "$old"; }
      wait_for 30 "the new replica's sync" synced
      cli "$old" CONFIG SET replica-priority 100 >/dev/null
      # …and every Sentinel must have seen the new priority before the next step may need it.
      promotable() {
        local p
        for p in "${sports[@]}"; do
          cli "$p" SENTINEL REPLICAS mymaster 2>/dev/null |
            awk -v port="$old" 'NR % 2 { k = $0; next } k == "port" { at = ($0 == port) } at && k == "slave-priority" { ok = ($0 == 100) } END { exit !ok }' ||
            return 1
        done
      }
      wait_for 30 "every Sentinel seeing the replica promotable" promotable
      wait_for 30 "Sentinel seeing the replica" seen
      ;;
    node)
      kill -9 "$NODE3_PID"
      echo killed
      echo "chaos: killed node 3 (pid $NODE3_PID)" >&2
      # Its presence goes when its heartbeat lapses (presence_ttl 3 s) and a survivor reaps it.
      sleep 5
      echo healthy
      ;;
  esac
  exit 0
fi

command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p roomcast -p roomcast-loadtest --bin roomcast --bin roomcast-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$OUT"/redis-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_redis() { # port [replicaof-port]
  mkdir -p "$OUT/redis-$1"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$OUT/redis-$1" --save "" --appendonly no \
    ${2:+--replicaof 127.0.0.1 "$2"} >"$OUT/redis-$1.log" 2>&1 &
  echo $! >"$OUT/redis-$1.pid"
  for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis :$1 did not start"; exit 1
}
if [ "${REDIS:-}" = cluster ]; then
  cports=()
  for _ in 1 2 3 4 5 6; do
    p=$(cluster_port); cports+=("$p"); mkdir -p "$OUT/redis-$p"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$OUT/redis-$p" --save "" --appendonly no $CLUSTER_CONF >"$OUT/redis-$p.log" 2>&1 &
    echo $! >"$OUT/redis-$p.pid"
  done
  for p in "${cports[@]}"; do
    for _ in $(seq 100); do redis-cli -p "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cports[@]}") --cluster-replicas 1 --cluster-yes >"$OUT/cluster-create.log"
  for _ in $(seq 300); do
    ok=1
    for p in "${cports[@]}"; do redis-cli -p "$p" CLUSTER INFO | grep -q cluster_state:ok || ok=0; done
    [ $ok = 1 ] && break; sleep 0.1
  done
  [ $ok = 1 ] || { echo "the Redis Cluster never became ready"; exit 1; }
  url="redis+cluster://127.0.0.1:${cports[0]},127.0.0.1:${cports[1]},127.0.0.1:${cports[2]}"
  steps="cmaster node cmaster"
else
mport=$(free_port); rport=$(free_port)
start_redis "$mport"
start_redis "$rport" "$mport"
sports=()
for i in 1 2 3; do
  p=$(free_port); sports+=("$p")
  printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n' \
    "$p" "$OUT" "$mport" >"$OUT/sentinel-$i.conf"
  redis-server "$OUT/sentinel-$i.conf" --sentinel >"$OUT/sentinel-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do
  ok=1
  for p in "${sports[@]}"; do
    [ "$(redis-cli -p "$p" SENTINEL SENTINELS mymaster 2>/dev/null | grep -c '^name$')" = 2 ] || ok=0
    redis-cli -p "$p" SENTINEL REPLICAS mymaster 2>/dev/null | grep -qx "$rport" || ok=0
  done
  [ $ok = 1 ] && break; sleep 0.1
done
[ $ok = 1 ] || { echo "the Sentinels never found each other and the replica"; exit 1; }
url="redis+sentinel://127.0.0.1:${sports[0]},127.0.0.1:${sports[1]},127.0.0.1:${sports[2]}/mymaster"
steps="master node master"
fi
hport=$(free_port) # the load tester's webhook receiver (--webhook-port)
ports=()
for i in 1 2 3; do
  log=$OUT/node$i.log
  "$root/target/release/roomcast" --listen 127.0.0.1:0 --shards 1 --redis "$url" --presence-ttl 3s \
    --webhook-url "http://127.0.0.1:$hport/" >"$log" 2>&1 &
  pids+=($!)
  port=$(listen_port "$log" "node $i") || exit 1
  ports+=("$port")
  for _ in $(seq 100); do node_up "$port" && break; sleep 0.1; done
  node_up "$port" || { echo "node $i never reached Redis"; cat "$log"; exit 1; }
done
{
  echo "sports=(${sports[*]:-})"
  echo "cports=(${cports[*]:-})"
  echo "nports=(${ports[*]})"
  echo "npids=(${pids[-3]} ${pids[-2]} ${pids[-1]})"
  echo "NODE3_PID=${pids[-1]}"
  echo "STEPS=($steps)"
} >"$OUT/state"
echo "redis ${url}, nodes ${ports[*]}" >&2
P=$(IFS=,; echo "${ports[*]}")
"$root/target/release/roomcast-loadtest" churn --port "$P" --api-port "${ports[0]},${ports[1]}" \
  --clients 1500 --groups 20 --messages 24000 --send-rate 400 --churners 3 --procs 2 --concurrency 8 \
  --chaos-cmd "OUT=$OUT $root/loadtest/chaos.sh step" --chaos-at 12,27,42 \
  --webhook-port "$hport" --tabs 3 \
  --time-limit 300 --drain-secs 10 --label chaos --json "$OUT/chaos.json" "$@"
