# The load-test scenarios' parameters, shared by compare.sh (roomcast vs Bun) and ab.sh
# (two roomcast builds). Sourced, not run.
args_for() {
  case $1 in
    # closed loop (64 handshakes in flight per worker): the server's own rate, not its backlog
    connect)   echo "connect --clients 10000 --procs 2 --connect-rate 1000000 --connect-inflight 64" ;;
    # mass reconnect: 19,000 clients at once (the most one node holds here, 20,000 files)
    massconnect) echo "connect --clients 19000 --procs 4 --connect-rate 1000000" ;;
    fanout)    echo "fanout --clients 15000 --groups 100 --messages 2000 --procs 2 --concurrency 16" ;;
    broadcast) echo "broadcast --clients 2000 --messages 500 --concurrency 16 --procs 2" ;;
    unicast)   echo "unicast --clients 1000 --messages 50000 --concurrency 32" ;;
    # send_to_user to 1,000 users of 3 tabs; usersbyids: send_to_clients to the same clientIds
    users)     echo "users --clients 3000 --tabs 3 --messages 50000 --concurrency 32" ;;
    usersbyids) echo "users --clients 3000 --tabs 3 --messages 50000 --concurrency 32 --by-ids" ;;
    joinstorm) echo "joinstorm --clients 2000 --concurrency 16 --procs 2" ;;
    paced)     echo "fanout --clients 2000 --groups 20 --messages 1000 --send-rate 100" ;;
    churn)     echo "churn --clients 2000 --groups 20 --messages 2000 --send-rate 400 --churners 4 --procs 2" ;;
  esac
}
