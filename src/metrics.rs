//! Counters: one [`ShardStats`] per shard (written only by that shard, relaxed atomics; each on
//! its own cache lines, [`PerShard`], so shards never write to a line another shard writes)
//! and one [`HubStats`]; `/metrics` sums them when read (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// One shard's counters, padded to whole cache lines.
pub type PerShard = CachePadded<ShardStats>;

/// Counters for `n` shards.
pub fn per_shard(n: usize) -> Vec<PerShard> {
    (0..n).map(|_| CachePadded::new(ShardStats::default())).collect()
}

macro_rules! counters {
    ($name:ident { $($field:ident : $help:literal),* $(,)? }) => {
        /// Counters; see each field's help text.
        #[derive(Default, Debug)]
        pub struct $name { $(#[doc = $help] pub $field: AtomicU64,)* }
        impl $name {
            fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($field), $help, self.$field.load(Relaxed)),)*]
            }
        }
    };
}

counters!(ShardStats {
    connections: "open TCP connections (HTTP and WebSocket)",
    ws_clients: "open WebSocket connections",
    accepted_total: "TCP connections accepted",
    refused_full_total: "connections refused because max_connections was reached",
    tls_handshakes_total: "TLS handshakes completed",
    tls_failures_total: "TLS sessions failed (bad handshake, plain HTTP to the TLS port, bad records)",
    tls_handshake_timeouts_total: "TLS handshakes not complete within tls_handshake_timeout (closed)",
    refused_per_ip_total:
        "connections and WebSocket handshakes refused (429) by max_connections_per_ip or handshakes_per_ip_per_second",
    origin_refusals_total: "WebSocket handshakes refused (403) for an Origin not in allowed_origins",
    http_requests_total: "HTTP requests parsed",
    http_errors_total: "HTTP requests answered with a 4xx/5xx status",
    hub_busy_total: "requests answered 503 because the hub queue was full",
    api_timeouts_total: "API calls answered 503 because no answer came within request_timeout (then closed)",
    metrics_refusals_total: "GET /metrics refused on the public listener (API key set, no operator token)",
    limit_refusals_total:
        "API calls and connects refused for a name or extend over max_name_bytes / max_extend_bytes (or a connect token's groups over max_groups_per_client)",
    connect_token_refusals_total:
        "WebSocket connects refused (-1001, close 1008) for a missing, invalid or wrong kind of ?token= (connect tokens)",
    frames_queued_total: "server-to-client frames queued (HTTP answers, pings and pongs included)",
    messages_queued_total: "push messages (sends, notices) queued to WebSocket clients: a group send to N members here counts N",
    compressions_total: "messages compressed (permessage-deflate): once per message, whatever its recipients",
    compression_in_bytes_total: "payload bytes given to the compressor",
    compression_out_bytes_total: "payload bytes it made of them (the plain size when compressing did not help)",
    compressed_frames_total: "frames queued compressed (each compressing recipient of a message counts one)",
    inflated_messages_total: "compressed messages from clients inflated",
    bytes_written_total: "bytes written to sockets",
    writev_calls_total: "write system calls on connections (writev; send when one buffer is queued)",
    slow_consumer_closes_total: "clients closed (1008) for exceeding an output buffer limit",
    idle_closes_total: "connections closed by the idle timeout",
    request_timeouts_total:
        "HTTP connections closed (408) for a request head or body not complete within request_timeout",
    oversized_closes_total: "clients closed (1009) for a message over max_message_size",
    protocol_closes_total: "clients closed for a WebSocket protocol error",
    pings_sent_total: "heartbeat pings sent",
    client_messages_total: "text messages received from clients",
    output_buffer_bytes: "bytes waiting in output queues",
    recovery_sessions: "recoverable sessions kept without a connection (detached), waiting for a resume",
    recovery_relayed: "cluster mode: sessions of this node whose client resumed through another node",
    recovery_edges: "cluster mode: clients connected here whose session another node owns",
    recovery_kept_bytes: "bytes (each frame + 64) recoverable sessions keep for their clients",
    recovery_detached_total: "recoverable sessions whose connection ended without a close handshake (kept)",
    recovery_resumed_total: "resumes that recovered their session",
    recovery_restart_closes_total:
        "recoverable clients closed 1012 at shutdown, their sessions kept (state_dir) or handed to a live node (cluster mode)",
    recovery_restored_total: "single node with state_dir: sessions the last run kept, put back (detached) at start",
    recovery_adopted_total:
        "cluster mode: sessions a stopping node handed over, held here (detached) under their old clientIds",
    recovery_takeovers_total: "resumes that took over a connection that still looked open",
    recovery_refused_unknown_total:
        "resumes refused (fresh session): malformed token, or no such session (ended, expired)",
    recovery_refused_secret_total:
        "resumes refused (fresh session): the token's secret does not match (used before, or guessed)",
    recovery_refused_system_total: "resumes refused (fresh session): the token is another system's",
    recovery_refused_last_total:
        "resumes refused (fresh session, the old one ends): the frames after last are no longer held",
    recovery_expired_total: "detached sessions ended by recovery_window",
    recovery_overflows_total: "detached sessions ended by recovery_max_bytes",
    recovery_losses_total:
        "cluster mode: sessions told a frame for them was lost on the way from Redis (a resume from before that is refused)",
    recovery_evictions_total: "detached sessions ended because max_recovery_sessions were kept (the oldest first)",
});

counters!(HubStats {
    systems: "registered systems",
    clients: "clients known to the hub",
    users: "users with at least one connection on this node (a connect token's sub, or a bind's userId)",
    user_sends_total: "send_to_user calls",
    user_closes_total: "close_user calls",
    groups: "non-empty groups",
    commands_total: "commands processed by the hub",
    notices_total: "1001/1002 notices broadcast",
    webhook_events_total: "webhook events recorded",
    webhook_events_sent_total: "webhook events delivered (their batch got a 2xx)",
    webhook_events_retried_total: "webhook events in batches sent again after a failure",
    webhook_events_dropped_total:
        "webhook events dropped: queue full (oldest first), or their batch given up after webhook_retry_for",
    webhook_batches_ok_total: "webhook batches answered 2xx",
    webhook_batches_failed_total: "webhook attempts that failed (non-2xx, timeout, connection error)",
    webhook_batches_expired_total: "webhook batches given up after webhook_retry_for",
    webhook_queue_events: "webhook events waiting to be sent",
    history_messages: "single node: messages kept in group histories (history_size, history_ttl)",
    state_writes_total: "single node: times the state (registered systems) was written to state_dir",
    state_write_errors_total: "single node: state writes to state_dir that failed (logged; the last good state stays)",
    state_sessions_written_total: "single node: recoverable sessions written to state_dir at shutdown",
    handoff_sessions_total:
        "cluster mode: recoverable sessions this node handed to a live node at shutdown (the adopter holds them)",
    handoff_failed_total:
        "cluster mode: shutdown hand-offs that did not complete (no live node, refused, timed out, Redis down): their sessions ended",
    handoff_refused_total:
        "cluster mode: hand-offs this node refused to adopt (it was stopping itself, or past max_recovery_sessions)",
    state_sessions_left_out_total:
        "single node: sessions in state_dir that could not be put back at start (logged by cause; fresh sessions for their clients)",
    group_limit_refusals_total: "binds refused (400) because the client was in max_groups_per_client groups",
    admin_refusals_total: "admin listener connections refused (503): 64 were being served",
    admin_timeouts_total: "admin listener requests not complete within 2 s (closed)",
    cluster_up: "cluster mode: 1 while Redis is reachable (always 0 on a single node)",
    cluster_published_total: "cluster mode: messages published to Redis",
    cluster_received_total: "cluster mode: messages received from Redis",
    cluster_redis_dropped_total:
        "cluster mode: messages from Redis dropped because the hub's queue (hub_queue) was full (their sessions are not recoverable from before them)",
    cluster_redis_missed_total:
        "cluster mode: messages a channel's positions show never arrived (a pub/sub connection lost meanwhile, or a publish whose pipeline failed)",
    cluster_redis_errors_total: "cluster mode: failed Redis round trips (each leads to a reconnect)",
    cluster_broker_queue_bytes:
        "cluster mode: frame bytes of sends waiting for the broker (bounded by broker_queue_bytes)",
    cluster_unavailable_total: "cluster mode: API calls answered 503 (Redis unreachable or broker queue full)",
    cluster_remote_timeouts_total: "cluster mode: forwarded calls another node did not answer in time (503)",
    cluster_reaped_total: "cluster mode: presence entries of dead nodes removed by this node",
    cluster_resubscribed_total:
        "cluster mode on a Redis Cluster: channels a master let go of (their slot moved) subscribed again on the new master",
    cluster_node_id_conflicts_total: "cluster mode: heartbeats that found another running node using this node id",
});

/// Adds `n` to a counter.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Subtracts `n` from a gauge.
#[inline]
pub fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Relaxed);
}

/// Sum of one field over all shards.
pub fn sum(shards: &[PerShard], f: impl Fn(&ShardStats) -> &AtomicU64) -> u64 {
    shards.iter().map(|s| f(s).load(Relaxed)).sum()
}

/// `/health`'s body: `{"status":"ok","connections":N}` (+ `"cluster"` in cluster mode).
pub fn health(shards: &[PerShard], hub: &HubStats, cluster: bool) -> String {
    let n = sum(shards, |s| &s.ws_clients);
    let c = match (cluster, hub.cluster_up.load(Relaxed) == 1) {
        (false, _) => "",
        (true, true) => ",\"cluster\":\"up\"",
        (true, false) => ",\"cluster\":\"redis unreachable\"",
    };
    format!("{{\"status\":\"ok\",\"connections\":{n}{c}}}")
}

/// Every metric now: (name without the `roomcast_` prefix, help, value), shards summed.
pub fn values(shards: &[PerShard], hub: &HubStats) -> Vec<(&'static str, &'static str, u64)> {
    let mut totals: Vec<(&'static str, &'static str, u64)> = Vec::new();
    for s in shards {
        for (i, (name, help, v)) in s.fields().into_iter().enumerate() {
            match totals.get_mut(i) {
                Some(t) => t.2 += v,
                None => totals.push((name, help, v)),
            }
        }
    }
    totals.extend(hub.fields());
    totals
}

/// Renders all counters in Prometheus text format.
pub fn render(shards: &[PerShard], hub: &HubStats) -> String {
    let mut out = String::new();
    for (name, help, v) in values(shards, hub) {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP roomcast_{name} {help}\n# TYPE roomcast_{name} {kind}\nroomcast_{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sums_shards() {
        let shards = per_shard(2);
        add(&shards[0].accepted_total, 2);
        add(&shards[1].accepted_total, 3);
        let text = render(&shards, &HubStats::default());
        assert!(text.contains("roomcast_accepted_total 5\n"));
        assert!(text.contains("# TYPE roomcast_connections gauge"));
    }
}
