//! Presence webhooks (`webhook_url`): the back end hears who connects, joins, leaves and
//! disconnects, in order, without polling (docs/API.md, "Presence webhooks").
//!
//! Events are recorded where the truth is decided — the hub on one node; in cluster mode the
//! broker, after Redis took the change (so `group_occupied`/`group_vacated` are the cluster's,
//! and a dead node's clients are told by the survivor that reaps it) — with a non-blocking
//! [`Webhooks::emit`] into one queue bounded by `webhook_queue`: past it the oldest events are
//! dropped (counted, logged) — one bound and one drop policy for everything that waits. A
//! sender thread of its own does the rest, so neither the event loops nor the hub ever wait on
//! the receiver:
//!
//! - it posts events in batches (`webhook_batch_size` events, or what came within
//!   `webhook_batch_delay`), over one keep-alive connection (ureq: a maintained blocking HTTP
//!   client, rustls for `https://`);
//! - each attempt is signed afresh: `X-Roomcast-Timestamp: <unix seconds>` and
//!   `X-Roomcast-Signature: sha256=<HMAC of "<timestamp>.<body>">`, so a receiver that refuses
//!   stale timestamps cannot be fed a replayed request;
//! - a batch is retried with exponential backoff (100 ms doubling to 30 s) until a 2xx or
//!   `webhook_retry_for`; no later batch goes before it (order kept). Retries resend the same
//!   event ids (at least once). A redirect is never followed: a 3xx is a failed attempt (a
//!   receiver must not send the signed events elsewhere);
//! - after events were dropped (queue full, or a batch given up), the next batch starts with an
//!   `events_dropped` event carrying how many, so the back end knows to re-read online lists.

mod event;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use event::{batch_body, signature, Event, Gone, Kind};

use crate::config::Config;
use crate::metrics::{self, HubStats};

/// Where events are recorded (cheap to clone; never blocks). When the last clone is gone
/// (the hub and the broker stopped) the sender delivers what is left, within
/// `shutdown_timeout`, and exits.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
    _emitters: Arc<Emitters>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks")
    }
}

/// A change of one group's membership, as both modes report it to [`Webhooks::membership`].
pub struct Membership {
    pub system: Arc<str>,
    pub group: Arc<str>,
    pub client: Box<str>,
    pub user_id: Box<str>,
    pub extend: Box<str>,
    /// Joined (else left).
    pub joined: bool,
    /// The group's members after the change (cluster mode: across the cluster); `None` when
    /// it is not known (cluster mode while Redis is away: no occupied/vacated events).
    pub size_after: Option<usize>,
}

impl Webhooks {
    /// The events of one membership change — the one rule for both modes (a single node's
    /// hub reports what its index did, cluster mode's broker what Redis did): the member's
    /// `group_joined` / `group_left`, then `group_occupied` when it is the first member, or
    /// `group_vacated` when it was the last.
    pub fn membership(&self, m: Membership) {
        let Membership { system, group, client, user_id, extend, joined, size_after } = m;
        let kind = match joined {
            true => Kind::GroupJoined { user_id, extend },
            false => Kind::GroupLeft { user_id, extend },
        };
        self.emit(Event::new(kind, system.clone(), Some(group.clone()), Some(client)));
        match (joined, size_after) {
            (true, Some(1)) => self.emit(Event::new(Kind::GroupOccupied, system, Some(group), None)),
            (false, Some(0)) => self.emit(Event::new(Kind::GroupVacated, system, Some(group), None)),
            _ => {}
        }
    }

    /// A connection of `user` came (`online`) or went, leaving `count_after` connections of the
    /// user in the system (cluster mode: across the cluster; `None`: not known) — the one rule
    /// for both modes: `user_online` at the first, `user_offline` when the last went.
    pub fn user(&self, system: Arc<str>, user_id: Arc<str>, online: bool, count_after: Option<usize>) {
        let kind = match (online, count_after) {
            (true, Some(1)) => Kind::UserOnline { user_id },
            (false, Some(0)) => Kind::UserOffline { user_id },
            _ => return,
        };
        self.emit(Event::new(kind, system, None, None));
    }

    /// Records an event for the back end. Never waits on the receiver: one short lock; past
    /// `webhook_queue` the oldest waiting event is dropped (counted; told to the receiver).
    pub fn emit(&self, e: Event) {
        let sh = &*self.shared;
        metrics::add(&sh.stats.webhook_events_total, 1);
        let Ok(mut q) = sh.q.lock() else { return };
        let seq = q.next_seq;
        q.next_seq += 1;
        q.events.push_back((seq, Instant::now(), e));
        if q.events.len() > sh.bound {
            // The oldest event not in the batch being sent (that one is delivered or given up
            // whole); the newest when the batch is all there is.
            let at = q.in_flight.min(q.events.len() - 1);
            q.events.remove(at);
            q.dropped += 1;
            metrics::add(&sh.stats.webhook_events_dropped_total, 1);
            if q.last_drop_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                q.last_drop_log = Some(Instant::now());
                let bound = sh.bound;
                tracing::warn!(bound, "webhook queue full: dropping the oldest events (receiver down or too slow?)");
            }
        }
        sh.stats.webhook_queue_events.store(q.events.len() as u64, Relaxed);
        // Wake the sender only when that changes what it waits for (a syscall per event
        // would cost the hub more than the event).
        let n = q.events.len();
        if q.sender_waiting && (n == 1 || n == sh.batch_size) {
            sh.cv.notify_one();
        }
    }
}

/// Dropped with the last [`Webhooks`]: the queue is closed.
struct Emitters(Arc<Shared>);

impl Drop for Emitters {
    fn drop(&mut self) {
        if let Ok(mut q) = self.0.q.lock() {
            q.closed = true;
        }
        self.0.cv.notify_one();
    }
}

struct Queue {
    /// (sequence number, when it came, event): the sequence number makes the event id.
    events: VecDeque<(u64, Instant, Event)>,
    next_seq: u64,
    /// Events lost since the last `events_dropped` the receiver was sent.
    dropped: u64,
    /// The first this many events are the batch being sent: never dropped from under it.
    in_flight: usize,
    last_drop_log: Option<Instant>,
    /// The sender is waiting on `cv`.
    sender_waiting: bool,
    /// Every emitter is gone (shutdown): deliver what is left, within `shutdown_timeout`.
    closed: bool,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    bound: usize,
    batch_size: usize,
    stats: Arc<HubStats>,
}

/// Starts the sender thread, posting to `webhook_url` (which `cfg` must have) with the
/// `webhook_*` settings of `cfg`.
pub fn start(cfg: Arc<Config>, stats: Arc<HubStats>) -> std::io::Result<(Webhooks, Vec<std::thread::JoinHandle<()>>)> {
    if cfg.webhook_url.is_none() {
        return Err(std::io::Error::other("webhooks need webhook_url"));
    }
    let q = Queue {
        events: VecDeque::new(),
        next_seq: 0,
        dropped: 0,
        in_flight: 0,
        last_drop_log: None,
        sender_waiting: false,
        closed: false,
    };
    let shared = Arc::new(Shared {
        q: Mutex::new(q),
        cv: Condvar::new(),
        bound: cfg.webhook_queue,
        batch_size: cfg.webhook_batch_size,
        stats,
    });
    let sh = shared.clone();
    let sender = std::thread::Builder::new().name("roomcast-webhook-out".into()).spawn(move || send(cfg, &sh))?;
    let emitters = Arc::new(Emitters(shared.clone()));
    Ok((Webhooks { shared, _emitters: emitters }, vec![sender]))
}

/// A batch taken from the queue (its events stay there until it is acknowledged or given up).
struct Batch {
    /// Sequence number of its last event.
    last: u64,
    /// Events in it (not counting `events_dropped`).
    n: usize,
    /// The `events_dropped` count it carries (0: none).
    dropped: u64,
    body: Vec<u8>,
}

/// The next batch, or `None` when there is nothing left to send and the emitters are gone.
/// Waits for a full batch or `batch_delay`.
fn next_batch(cfg: &Config, shared: &Shared, prefix: &str) -> Option<Batch> {
    let mut q = shared.q.lock().ok()?;
    loop {
        if q.events.is_empty() && q.dropped == 0 {
            if q.closed {
                return None;
            }
            q.sender_waiting = true;
            q = shared.cv.wait(q).ok()?;
            q.sender_waiting = false;
            continue;
        }
        let due = q.events.front().map(|(_, t, _)| *t + cfg.webhook_batch_delay).unwrap_or_else(Instant::now);
        let now = Instant::now();
        if q.events.len() >= cfg.webhook_batch_size || now >= due || q.closed {
            break;
        }
        q.sender_waiting = true;
        q = shared.cv.wait_timeout(q, due - now).ok()?.0;
        q.sender_waiting = false;
    }
    let n = q.events.len().min(cfg.webhook_batch_size);
    q.in_flight = n;
    let dropped = std::mem::take(&mut q.dropped);
    let ids: Vec<String> = q.events.iter().take(n).map(|(seq, _, _)| format!("{prefix}{seq:x}")).collect();
    let last = q.events.get(n.wrapping_sub(1)).map_or(0, |(seq, _, _)| *seq);
    // The drop notice's id: the sequence number of the event it comes before (or the next one).
    let drop_id = (dropped > 0).then(|| format!("{prefix}{:x}-dropped", q.events.front().map_or(q.next_seq, |e| e.0)));
    let events = ids.iter().map(String::as_str).zip(q.events.iter().take(n).map(|(_, _, e)| e));
    let body = batch_body(crate::auth::now_millis(), drop_id.as_deref().map(|id| (id, dropped)), events);
    Some(Batch { last, n, dropped, body })
}

fn send(cfg: Arc<Config>, shared: &Shared) {
    let stats = &*shared.stats;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.webhook_timeout))
        .http_status_as_error(false)
        // Never follow: the signed events must not go where the receiver points them.
        .max_redirects(0)
        .user_agent("roomcast")
        .build()
        .into();
    // Event ids: this node, this process, then a sequence number: unique cluster-wide.
    let prefix = format!("{:08x}-{:08x}-", cfg.node_id.0, fastrand::u32(..));
    let mut stop_by: Option<Instant> = None;
    while let Some(batch) = next_batch(&cfg, shared, &prefix) {
        let Batch { last, n, dropped, body } = batch;
        let mut backoff = Duration::from_millis(100);
        let first = Instant::now();
        let mut tries = 0u32;
        let ok = loop {
            tries += 1;
            let why = match post(&agent, &cfg, &body) {
                Ok(()) => break true,
                Err(why) => why,
            };
            metrics::add(&stats.webhook_batches_failed_total, 1);
            // The 1st, 2nd, 4th, 8th… failed attempt of a batch: a line while it is new, then
            // ever fewer (the backoff grows to 30 s).
            if tries.is_power_of_two() {
                tracing::warn!(
                    tries,
                    events = n,
                    "webhook receiver failed: {why}; retrying with backoff (check webhook_url and the receiver)"
                );
            }
            let closed = shared.q.lock().map(|q| q.closed).unwrap_or(true);
            if closed && stop_by.is_none() {
                stop_by = Some(Instant::now() + cfg.shutdown_timeout);
            }
            let give_up = first.elapsed() + backoff > cfg.webhook_retry_for
                || stop_by.is_some_and(|t| Instant::now() + backoff > t);
            if give_up {
                break false;
            }
            metrics::add(&stats.webhook_events_retried_total, n as u64);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        };
        if ok {
            metrics::add(&stats.webhook_batches_ok_total, 1);
            metrics::add(&stats.webhook_events_sent_total, n as u64);
        } else {
            metrics::add(&stats.webhook_batches_expired_total, 1);
            metrics::add(&stats.webhook_events_dropped_total, n as u64);
            tracing::warn!(events = n, tries, "webhook batch given up after webhook_retry_for: events dropped");
        }
        let Ok(mut q) = shared.q.lock() else { return };
        debug_assert!(q.in_flight == n && q.events.front().is_none_or(|e| n == 0 || e.0 + n as u64 - 1 == last));
        let sent = n.min(q.events.len());
        q.events.drain(..sent);
        q.in_flight = 0;
        if !ok {
            // The receiver is still to hear of these, and of what this batch held.
            q.dropped += dropped + n as u64;
            if stop_by.is_some_and(|t| Instant::now() >= t) {
                // Stopping, and the receiver is not taking anything: what is left is lost.
                let left = q.events.len() as u64 + q.dropped;
                tracing::warn!(
                    events = left,
                    "webhooks: shutdown_timeout passed with the receiver failing: undelivered events dropped"
                );
                metrics::add(&stats.webhook_events_dropped_total, q.events.len() as u64);
                stats.webhook_queue_events.store(0, Relaxed);
                return;
            }
        }
        stats.webhook_queue_events.store(q.events.len() as u64, Relaxed);
    }
}

/// One attempt: `Ok` on a 2xx, else what went wrong.
fn post(agent: &ureq::Agent, cfg: &Config, body: &[u8]) -> Result<(), String> {
    let url = cfg.webhook_url.as_deref().unwrap_or_default();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(secret) = &cfg.webhook_secret {
        // Signed afresh at every attempt: a receiver refuses a timestamp 5 minutes off.
        let ts = crate::auth::now_secs().to_string();
        let sig = signature(secret.as_bytes(), &ts, body);
        req = req.header("X-Roomcast-Timestamp", &ts).header("X-Roomcast-Signature", &sig);
    }
    match req.send(body) {
        Ok(resp) => {
            let status = resp.status();
            if status.is_redirection() {
                tracing::warn!(
                    status = status.as_u16(),
                    "webhook receiver answered a redirect: not followed (a failed attempt)"
                );
            }
            // Read the (small) answer so the connection can carry the next request.
            let _ = resp.into_body().read_to_vec();
            match status.is_success() {
                true => Ok(()),
                false => Err(format!("it answered {}", status.as_u16())),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}
