#!/usr/bin/env python3
"""Samples a running cluster about once a second, in one process (a shell loop forking a
hundred readers per sample fell 10 s behind on a saturated machine; this one kept within 3 s
at a million connections): one line per sample,

  unix_secs rss_node1..rss_nodeN redis_rss redis_cpu_ticks redis_commands slab_kib used_kib
  tcp_inuse tcp_mem_pages nodes_cpu_ticks loadtest_cpu_ticks

RSS in KiB (/proc/PID/status), CPU in clock ticks (/proc/PID/stat): Redis's, all nodes' and
all load-test processes'; Redis's total_commands_processed (INFO stats, over its socket; nan
when Redis did not answer, so no rate is taken across it); the
kernel's Slab and MemTotal - MemAvailable (/proc/meminfo); the TCP line of /proc/net/sockstat.
cluster_stats.py reads the file. Usage: cluster_sample.py OUT REDIS_PORT REDIS_PID NODE_PID..."""
import os
import socket
import sys
import time

out, port, redis_pid, node_pids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]


def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return 0


def loadtest_pids():
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if open(f"/proc/{d}/comm").read().strip() == "roomcast-loadte":
                    yield d
            except OSError:
                pass


def recv(sock):
    b = sock.recv(65536)
    if not b:
        raise OSError("Redis closed the connection")
    return b


def redis_commands(sock):
    sock.sendall(b"INFO stats\r\n")
    buf = b""
    while b"\r\n" not in buf:
        buf += recv(sock)
    head, rest = buf.split(b"\r\n", 1)
    size = int(head[1:])
    while len(rest) < size + 2:
        rest += recv(sock)
    for line in rest.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


def meminfo():
    m = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":")
        m[k] = int(v.split()[0])
    return m["Slab"], m["MemTotal"] - m["MemAvailable"]


def tcp():
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[2]), int(f[10])
    return 0, 0


sock = socket.create_connection(("127.0.0.1", port), timeout=2)
with open(out, "w", buffering=1) as w:
    while True:
        t = time.time()
        try:
            cmds = str(redis_commands(sock))
        except (OSError, ValueError):
            cmds = "nan"
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                pass
        slab, used = meminfo()
        inuse, mem = tcp()
        row = [f"{t:.3f}"] + [str(rss(p)) for p in node_pids] + [str(rss(redis_pid)), str(ticks(redis_pid)), cmds,
               str(slab), str(used), str(inuse), str(mem), str(sum(ticks(p) for p in node_pids)),
               str(sum(ticks(p) for p in loadtest_pids()))]
        w.write(" ".join(row) + "\n")
        time.sleep(max(0.0, 1.0 - (time.time() - t)))
