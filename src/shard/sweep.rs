//! The periodic sweep (heartbeats, idle and soft-limit closes, closing deadlines, retries),
//! graceful shutdown, and the limiter for log lines about limits.

use std::sync::atomic::Ordering::Relaxed;

use super::{Shard, State};
use crate::metrics;
use crate::protocol::ws::close;
use crate::webhooks::Gone;

/// Caps the log lines about limits being hit, so a flood of bad clients cannot flood the
/// log: at most [`LogLimiter::PER_SECOND`] a second per shard, then one summary line.
#[derive(Default)]
pub struct LogLimiter {
    second: u64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const PER_SECOND: u32 = 20;

    /// May a line be logged now (`now_ms`: shard clock)?
    pub fn allow(&mut self, now_ms: u32) -> bool {
        let sec = u64::from(now_ms / 1000);
        if sec != self.second {
            if self.suppressed > 0 {
                tracing::warn!(suppressed = self.suppressed, "limit log lines suppressed in the last second");
            }
            self.second = sec;
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < Self::PER_SECOND {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl Shard {
    pub(super) fn start_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let grace = crate::config::loop_ms(self.cfg().shutdown_timeout);
        self.shutdown_deadline = Some(self.now().wrapping_add(grace));
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            match self.conns[slot].state {
                State::Client { .. } | State::Echo => {
                    self.begin_close(slot, close::GOING_AWAY, "server shutting down", false, Gone::Shutdown)
                }
                State::Http { awaiting: false, .. } if self.conns[slot].out.is_empty() => self.close_now(slot),
                State::Http { awaiting, .. } => self.conns[slot].state = State::Http { awaiting, keep_alive: false },
                // A shutdown ends every session of this node (its groups are told, once),
                // and the edges of sessions relayed elsewhere.
                State::Detached => self.close_with(slot, Gone::Shutdown),
                State::Relayed => {
                    self.unlink(slot, close::GOING_AWAY, "server shutting down");
                    self.close_with(slot, Gone::Shutdown);
                }
                // A client connected here whose session another node owns keeps its session
                // there: it resumes elsewhere.
                State::Edge => {
                    self.edge_event(slot, crate::protocol::relay::Event::Dropped);
                    self.begin_close(slot, close::GOING_AWAY, "server shutting down", false, Gone::Shutdown)
                }
                State::Parked { .. } => self.close_now(slot),
                State::Closing { .. } => {}
            }
        }
    }

    /// Periodic sweep: pings, idle timeouts, soft output limit, closing deadlines, retries.
    pub(super) fn sweep(&mut self) {
        self.check_gauges();
        let now = self.now();
        let cfg = &self.shared.cfg;
        let ping_ms = crate::config::loop_ms(cfg.ping_interval);
        let idle_ms = crate::config::loop_ms(cfg.idle_timeout);
        let request_ms = crate::config::loop_ms(cfg.request_timeout);
        let soft = cfg.output_soft_limit;
        let soft_ms = crate::config::loop_ms(cfg.output_soft_seconds);
        let window_ms = crate::config::loop_ms(cfg.recovery_window);
        let mut kept = 0u64;
        let mut lapsed = Vec::new();
        let mut idle = Vec::new();
        let mut slow = Vec::new();
        let mut ping = Vec::new();
        let mut expired = Vec::new();
        let mut slow_requests = Vec::new();
        let mut unanswered = Vec::new();
        let mut stalled_tls = Vec::new();
        let tls_ms = crate::config::loop_ms(cfg.tls_handshake_timeout);
        let mut queued = 0u64;
        for (slot, c) in self.conns.iter_mut() {
            queued += c.out.bytes() as u64;
            c.out.release_if_idle();
            let silent = now.wrapping_sub(c.last_seen);
            if let Some(s) = &c.session {
                kept += s.unacked.bytes() as u64;
            }
            match c.state {
                State::Detached => {
                    let since = c.session.as_ref().and_then(|s| s.detached_since).unwrap_or(now);
                    if now.wrapping_sub(since) > window_ms {
                        lapsed.push(slot);
                    }
                }
                // Parked resumes are handled below; a relayed session's pings (which carry
                // its acknowledgements) go to its edge.
                State::Parked { .. } => {}
                State::Relayed => {
                    if now.wrapping_sub(c.last_ping) >= ping_ms {
                        c.last_ping = now;
                        ping.push(slot);
                    }
                }
                State::Closing { until, .. } => {
                    if (now.wrapping_sub(until) as i32) >= 0 {
                        expired.push(slot);
                    }
                }
                State::Http { awaiting, .. } => {
                    if awaiting {
                        // Its answer is due within request_timeout of the call.
                        if c.req_since != 0 && elapsed(now, c.req_since) > request_ms {
                            unanswered.push(slot);
                        }
                        continue;
                    }
                    if let Some(t) = c.tls.as_ref().filter(|t| !t.ready) {
                        if now.wrapping_sub(t.since) > tls_ms {
                            stalled_tls.push(slot);
                        }
                        continue;
                    }
                    if c.req_since != 0 && elapsed(now, c.req_since) > request_ms {
                        slow_requests.push(slot);
                    } else if silent > idle_ms {
                        expired.push(slot);
                    }
                }
                State::Client { .. } | State::Echo | State::Edge => {
                    if silent > idle_ms {
                        idle.push(slot);
                        continue;
                    }
                    if c.out.cost() > soft {
                        if c.soft_since == 0 {
                            c.soft_since = now | 1;
                        } else if elapsed(now, c.soft_since) > soft_ms {
                            slow.push(slot);
                            continue;
                        }
                    } else {
                        c.soft_since = 0;
                    }
                    if now.wrapping_sub(c.last_ping) >= ping_ms {
                        c.last_ping = now;
                        ping.push(slot);
                    }
                }
            }
        }
        self.stats().output_buffer_bytes.store(queued, Relaxed);
        self.unpark_late(now);
        self.stats().recovery_kept_bytes.store(kept, Relaxed);
        for slot in expired {
            self.close_now(slot);
        }
        metrics::add(&self.stats().recovery_expired_total, lapsed.len() as u64);
        for slot in lapsed {
            self.close_with(slot, Gone::RecoveryExpired);
        }
        for slot in unanswered {
            self.answer_overdue(slot);
        }
        metrics::add(&self.stats().tls_handshake_timeouts_total, stalled_tls.len() as u64);
        for slot in stalled_tls {
            self.close_now(slot);
        }
        for slot in slow_requests {
            metrics::add(&self.stats().request_timeouts_total, 1);
            if self.log_ok() {
                tracing::info!(
                    shard = self.id,
                    slot,
                    "request timeout: an HTTP request did not complete in time (408)"
                );
            }
            let body =
                crate::protocol::api::err_body("request timeout: the request did not arrive within request_timeout");
            self.respond(slot, 408, &body, false);
        }
        for slot in idle {
            metrics::add(&self.stats().idle_closes_total, 1);
            if self.log_ok() {
                tracing::info!(shard = self.id, slot, "idle timeout: closing a silent connection");
            }
            match (self.conns[slot].state, self.conns[slot].session.is_some()) {
                // A silent client may be on a dead network: keep its session (here, or at
                // the node that owns it).
                (State::Edge, _) => self.close_now(slot),
                (_, true) => self.detach(slot),
                _ => self.begin_close(slot, close::GOING_AWAY, "idle timeout", true, Gone::IdleTimeout),
            }
        }
        for slot in slow {
            metrics::add(&self.stats().slow_consumer_closes_total, 1);
            if self.log_ok() {
                tracing::info!(
                    shard = self.id,
                    slot,
                    "slow consumer: output over the soft limit too long, closing 1008"
                );
            }
            self.begin_close(
                slot,
                close::POLICY,
                "slow consumer: output buffer limit exceeded",
                true,
                Gone::SlowConsumer,
            );
        }
        metrics::add(&self.stats().pings_sent_total, ping.len() as u64);
        for slot in ping {
            let p = self.ping_for(slot);
            self.queue(slot, p);
        }
        self.flush_backlog();
        if self.accept_paused {
            self.accept_paused = false;
            self.accept();
        }
        self.flush_dirty();
        self.close_marked();
    }
}

impl Shard {
    /// An API call whose answer did not come within `request_timeout` of the call (the hub or,
    /// in cluster mode, another node never answered): 503 and close, so the caller is never
    /// left waiting and the connection (not read while it waits) does not stay for ever. A
    /// late answer finds it no longer waiting and is dropped.
    fn answer_overdue(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let State::Http { awaiting: true, .. } = conn.state else { return };
        conn.state = State::Http { awaiting: false, keep_alive: false };
        conn.req_since = 0;
        metrics::add(&self.stats().api_timeouts_total, 1);
        if self.log_ok() {
            tracing::warn!(shard = self.id, slot, "an API call got no answer within request_timeout: 503");
        }
        let body = crate::protocol::api::err_body("no answer within request_timeout: retry later");
        self.respond(slot, 503, &body, false);
    }
}

/// Milliseconds on the shard clock from the stamp `t` to `now`. Stamps that must not be 0 (0
/// means "none") are taken as `now | 1`, which is up to 1 ms *ahead* of `now`: read plainly
/// with `wrapping_sub` such a stamp looked ~49 days old, so a request stamped in the same
/// millisecond as a sweep timed out at once (408, or 503 for an API call waiting for its
/// answer) and a client just over the soft output limit was closed as a slow consumer.
fn elapsed(now: u32, t: u32) -> u32 {
    (now.wrapping_sub(t) as i32).max(0) as u32
}

#[cfg(test)]
mod tests {
    /// Regression: a stamp of `now | 1` taken at an even `now` read as 2^32 - 1 ms old.
    #[test]
    fn a_stamp_rounded_up_is_not_ancient() {
        use super::elapsed;
        let now = 1000;
        assert_eq!(elapsed(now, now | 1), 0);
        assert_eq!(elapsed(now + 5, now | 1), 4);
        assert_eq!(elapsed(3, u32::MAX - 1), 5, "across the wrap");
        assert_eq!(elapsed(now, now), 0);
    }
    use super::LogLimiter;

    #[test]
    fn log_limiter_caps_lines_per_second() {
        let mut l = LogLimiter::default();
        let allowed = (0..100).filter(|i| l.allow(5_000 + i)).count();
        assert_eq!(allowed, LogLimiter::PER_SECOND as usize);
        assert!(l.allow(6_000), "a new second starts afresh");
    }
}
