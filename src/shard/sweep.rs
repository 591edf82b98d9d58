//! The periodic sweep (what the deadlines of [`lifecycle`] make due, then retries),
//! graceful shutdown, and the limiter for log lines about limits.

use std::sync::atomic::Ordering::Relaxed;

use super::lifecycle::react::Event;
use super::lifecycle::{self, Bounds, Due};
use super::{Shard, State};
use crate::metrics;
use crate::msg::Target;

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

/// How long past its shutdown deadline a quiet shard waits for the hub's
/// [`crate::msg::ShardMsg::HandOver`] before it exits without handing its sessions over (they
/// are then lost, with an error line): the other shards are quiet by their deadlines, which
/// are the same but for the moments their `Shutdown` came.
const QUIET_MARGIN_MS: u32 = 1000;

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
            self.on_event(slot, Event::Shutdown);
        }
    }

    /// Where a shutdown stands, once a turn: true when the shard may exit. Its connections
    /// are done once none is left but the sessions kept for the next start, or at the
    /// deadline (the rest are then dropped). Without sessions to keep, it exits then. Keeping
    /// sessions, it tells the hub it is quiet and goes on taking the hub's messages (frames
    /// for its kept sessions are still recorded) until the hub, having heard every shard,
    /// asks for them ([`crate::msg::ShardMsg::HandOver`]) — every shard is quiet by its
    /// deadline at the latest — or [`QUIET_MARGIN_MS`] past the deadline.
    pub(super) fn shutdown_done(&mut self) -> bool {
        let Some(deadline) = self.shutdown_deadline else { return false };
        if self.handed_over {
            return true;
        }
        if self.quiet {
            self.flush_backlog();
            let give_up = deadline.wrapping_add(QUIET_MARGIN_MS);
            if (self.now().wrapping_sub(give_up) as i32) < 0 {
                return false;
            }
            tracing::error!(
                shard = self.id,
                sessions = self.kept_here(),
                "the hub never asked for the kept sessions: they are lost"
            );
            return true;
        }
        let late = (self.now().wrapping_sub(deadline) as i32) >= 0;
        if self.conns.len() != self.kept_here() && !late {
            return false;
        }
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for s in slots {
            self.on_event(s, Event::ShutdownLate);
        }
        if self.keeps_sessions {
            self.tell_hub_lifecycle(crate::msg::Command::Quiet);
            self.quiet = true;
        }
        self.flush_backlog();
        !self.keeps_sessions
    }

    /// Periodic sweep: what each connection's deadlines make due ([`lifecycle::due`]), then
    /// the retries (the hub backlog, a paused accept).
    pub(super) fn sweep(&mut self) {
        self.check_gauges();
        let now = self.now();
        let bounds = Bounds::of(&self.shared.cfg);
        let (mut queued, mut kept, mut due) = (0u64, 0u64, Vec::new());
        for (slot, c) in self.conns.iter_mut() {
            queued += c.out.bytes() as u64;
            c.out.release_if_idle();
            kept += c.session.as_ref().map_or(0, |s| s.unacked.bytes() as u64);
            if let Some(d) = lifecycle::due(c, now, &bounds) {
                due.push((d, Target { slot: slot as u32, gen: c.gen }));
            }
        }
        self.stats().output_buffer_bytes.store(queued, Relaxed);
        self.stats().recovery_kept_bytes.store(kept, Relaxed);
        due.sort_by_key(|(d, _)| *d);
        for (d, t) in due {
            // What an earlier one did may have ended this one (an eviction, a takeover).
            if self.conn_at(t).is_some() {
                self.apply_due(t.slot as usize, d);
            }
        }
        self.flush_backlog();
        if self.accept_paused {
            self.accept_paused = false;
            self.accept();
        }
        self.flush_dirty();
        self.close_marked();
    }

    /// Does what a deadline made due for the connection at `slot`.
    fn apply_due(&mut self, slot: usize, due: Due) {
        let st = &self.shared.stats[self.id as usize];
        match due {
            Due::ParkTimeout => self.on_event(slot, Event::ParkTimeout),
            Due::Drop => self.on_event(slot, Event::SocketLost),
            Due::SessionLapsed => {
                metrics::add(&st.recovery_expired_total, 1);
                self.on_event(slot, Event::SessionEnds);
            }
            Due::Unanswered => self.answer_overdue(slot),
            Due::TlsStalled => {
                metrics::add(&st.tls_handshake_timeouts_total, 1);
                self.on_event(slot, Event::SocketLost);
            }
            Due::RequestTimeout => self.request_timeout(slot),
            Due::Idle => self.idle_close(slot),
            Due::SlowConsumer => self.slow_consumer(slot),
            Due::Ping => {
                metrics::add(&st.pings_sent_total, 1);
                let p = self.ping_for(slot);
                self.queue(slot, p);
            }
        }
    }

    fn request_timeout(&mut self, slot: usize) {
        metrics::add(&self.stats().request_timeouts_total, 1);
        if self.log_ok() {
            tracing::info!(shard = self.id, slot, "request timeout: an HTTP request did not complete in time (408)");
        }
        let body = crate::protocol::api::err_body("request timeout: the request did not arrive within request_timeout");
        self.respond(slot, 408, &body, false);
    }

    fn idle_close(&mut self, slot: usize) {
        metrics::add(&self.stats().idle_closes_total, 1);
        if self.log_ok() {
            tracing::info!(shard = self.id, slot, "idle timeout: closing a silent connection");
        }
        // A silent client may be on a dead network: its session is kept (here, or at the node
        // that owns it).
        self.on_event(slot, Event::Idle);
    }

    fn slow_consumer(&mut self, slot: usize) {
        metrics::add(&self.stats().slow_consumer_closes_total, 1);
        if self.log_ok() {
            tracing::info!(shard = self.id, slot, "slow consumer: output over the soft limit too long, closing 1008");
        }
        self.on_event(slot, Event::SlowConsumer);
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

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn log_limiter_caps_lines_per_second() {
        let mut l = LogLimiter::default();
        let allowed = (0..100).filter(|i| l.allow(5_000 + i)).count();
        assert_eq!(allowed, LogLimiter::PER_SECOND as usize);
        assert!(l.allow(6_000), "a new second starts afresh");
    }
}
