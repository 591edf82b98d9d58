//! Presence webhooks (`webhook_url`): the back end hears who connects, joins, leaves and
//! disconnects, in order, without polling (PROTOCOL.md, "Presence webhooks").
//!
//! Events are recorded where the truth is decided — the hub on one node; in cluster mode the
//! broker, after Redis took the change (so `group_occupied`/`group_vacated` are the cluster's,
//! and a dead node's clients are told by the survivor that reaps it) — with a non-blocking
//! [`Webhooks::emit`]. Two threads of their own do the rest, so neither the event loops nor
//! the hub ever wait on the receiver:
//!
//! - the **collector** moves events into a queue bounded by `webhook_queue`: past it the
//!   oldest are dropped (counted, logged);
//! - the **sender** posts them in batches (`webhook_batch_size` events, or what came within
//!   `webhook_batch_delay`), signed (`X-Roomcast-Signature: sha256=<HMAC>`), over one
//!   keep-alive connection (ureq: a maintained blocking HTTP client, rustls for `https://`).
//!   A batch is retried with exponential backoff (100 ms doubling to 30 s) until a 2xx or
//!   `webhook_retry_for`; no later batch goes before it (order kept). Retries resend the same
//!   event ids (at least once).

mod event;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

pub use event::{batch_body, signature, Event, Gone, Kind};

use crate::metrics::{self, HubStats};

/// Webhook settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<String>,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub timeout: Duration,
    pub retry_for: Duration,
    pub queue: usize,
    /// Bound on delivering what is still queued when the server stops.
    pub shutdown_timeout: Duration,
    /// This node (event ids start with it).
    pub node: u32,
}

/// Where events are recorded (cheap to clone; never blocks).
#[derive(Clone)]
pub struct Webhooks {
    tx: Sender<Event>,
    stats: Arc<HubStats>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks")
    }
}

impl Webhooks {
    /// Records an event for the back end. Never waits: if even the hand-off channel is full
    /// (the collector cannot keep up), the event is dropped and counted.
    pub fn emit(&self, e: Event) {
        metrics::add(&self.stats.webhook_events_total, 1);
        if self.tx.try_send(e).is_err() {
            metrics::add(&self.stats.webhook_events_dropped_total, 1);
        }
    }
}

struct Queue {
    /// (sequence number, when it came, event): the sequence number makes the event id.
    events: VecDeque<(u64, Instant, Event)>,
    next_seq: u64,
    /// Every emitter is gone (shutdown): deliver what is left, within `shutdown_timeout`.
    closed: bool,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
}

/// Starts the collector and sender threads.
pub fn start(
    cfg: WebhookConfig,
    stats: Arc<HubStats>,
) -> std::io::Result<(Webhooks, Vec<std::thread::JoinHandle<()>>)> {
    let (tx, rx) = bounded(cfg.queue.clamp(1024, 65536));
    let shared = Arc::new(Shared {
        q: Mutex::new(Queue { events: VecDeque::new(), next_seq: 0, closed: false }),
        cv: Condvar::new(),
    });
    let (s1, st1) = (shared.clone(), stats.clone());
    let bound = cfg.queue;
    let collector =
        std::thread::Builder::new().name("roomcast-webhook-in".into()).spawn(move || collect(rx, &s1, bound, &st1))?;
    let st2 = stats.clone();
    let sender =
        std::thread::Builder::new().name("roomcast-webhook-out".into()).spawn(move || send(cfg, &shared, &st2))?;
    Ok((Webhooks { tx, stats }, vec![collector, sender]))
}

fn collect(rx: Receiver<Event>, shared: &Shared, bound: usize, stats: &HubStats) {
    let mut last_log = Instant::now() - Duration::from_secs(10);
    for e in rx {
        let Ok(mut q) = shared.q.lock() else { return };
        let seq = q.next_seq;
        q.next_seq += 1;
        q.events.push_back((seq, Instant::now(), e));
        if q.events.len() > bound {
            q.events.pop_front();
            metrics::add(&stats.webhook_events_dropped_total, 1);
            if last_log.elapsed() > Duration::from_secs(1) {
                last_log = Instant::now();
                tracing::warn!(bound, "webhook queue full: dropping the oldest events (receiver down or too slow?)");
            }
        }
        stats.webhook_queue_events.store(q.events.len() as u64, Relaxed);
        shared.cv.notify_one();
    }
    if let Ok(mut q) = shared.q.lock() {
        q.closed = true;
    }
    shared.cv.notify_one();
}

/// The next batch: (sequence number of its last event, body), or `None` when there is nothing
/// left to send and the emitters are gone. Waits for a full batch or `batch_delay`.
fn next_batch(cfg: &WebhookConfig, shared: &Shared, prefix: &str) -> Option<(u64, usize, Vec<u8>)> {
    let mut q = shared.q.lock().ok()?;
    loop {
        if q.events.is_empty() {
            if q.closed {
                return None;
            }
            q = shared.cv.wait(q).ok()?;
            continue;
        }
        let due = q.events.front().map(|(_, t, _)| *t + cfg.batch_delay).unwrap_or_else(Instant::now);
        let now = Instant::now();
        if q.events.len() >= cfg.batch_size || now >= due || q.closed {
            break;
        }
        q = shared.cv.wait_timeout(q, due - now).ok()?.0;
    }
    let n = q.events.len().min(cfg.batch_size);
    let ids: Vec<String> = q.events.iter().take(n).map(|(seq, _, _)| format!("{prefix}{seq:x}")).collect();
    let last = q.events.get(n - 1).map(|(seq, _, _)| *seq).unwrap_or(0);
    let body = batch_body(
        crate::auth::now_millis(),
        ids.iter().map(String::as_str).zip(q.events.iter().take(n).map(|(_, _, e)| e)),
    );
    Some((last, n, body))
}

fn send(cfg: WebhookConfig, shared: &Shared, stats: &HubStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .user_agent("roomcast")
        .build()
        .into();
    // Event ids: this node, this process, then a sequence number: unique cluster-wide.
    let prefix = format!("{:08x}-{:08x}-", cfg.node, fastrand::u32(..));
    let mut stop_by: Option<Instant> = None;
    while let Some((last, n, body)) = next_batch(&cfg, shared, &prefix) {
        let mut backoff = Duration::from_millis(100);
        let first = Instant::now();
        let mut tries = 0u32;
        let ok = loop {
            tries += 1;
            if post(&agent, &cfg, &body) {
                break true;
            }
            metrics::add(&stats.webhook_batches_failed_total, 1);
            let closed = shared.q.lock().map(|q| q.closed).unwrap_or(true);
            if closed && stop_by.is_none() {
                stop_by = Some(Instant::now() + cfg.shutdown_timeout);
            }
            let give_up =
                first.elapsed() + backoff > cfg.retry_for || stop_by.is_some_and(|t| Instant::now() + backoff > t);
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
        while q.events.front().is_some_and(|(seq, _, _)| *seq <= last) {
            q.events.pop_front();
        }
        stats.webhook_queue_events.store(q.events.len() as u64, Relaxed);
    }
}

/// One attempt; true on a 2xx.
fn post(agent: &ureq::Agent, cfg: &WebhookConfig, body: &[u8]) -> bool {
    let mut req = agent.post(&cfg.url).header("Content-Type", "application/json");
    let sig;
    if let Some(secret) = &cfg.secret {
        sig = signature(secret.as_bytes(), body);
        req = req.header("X-Roomcast-Signature", &sig);
    }
    match req.send(body) {
        Ok(resp) => {
            let ok = resp.status().is_success();
            // Read the (small) answer so the connection can carry the next request.
            let _ = resp.into_body().read_to_vec();
            ok
        }
        Err(e) => {
            tracing::debug!("webhook: {e}");
            false
        }
    }
}
