# Sourced by cluster1m.sh and redis-cost.sh after start_cluster: start_sampler FILE runs
# cluster_sample.py (one line per second: the nodes' and Redis's memory and CPU, Redis's
# commands, the kernel's memory and TCP sockets; see its docstring) in the background and sets
# SAMPLER. cluster_stats.py reads the file.
start_sampler() { # $1: file; needs pids, REDIS, REDIS_PORT
  python3 "$root/loadtest/cluster_sample.py" "$1" "$REDIS_PORT" "$REDIS" "${pids[@]}" &
  SAMPLER=$!
}
