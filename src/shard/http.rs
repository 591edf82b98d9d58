//! The shard's HTTP side: routing, the API calls (auth, JSON, the frame built once here),
//! WebSocket upgrades, `/health` and `/metrics`.

use std::sync::Arc;

use bytes::Bytes;

use super::refusals::Cause;
use super::{Shard, State};
use crate::auth::{Admit, Grant, Scope};
use crate::hub::endpoints::{self, Access, Limits, Request};
use crate::ids;
use crate::metrics;
use crate::msg::{Command, SystemRef, Target};
use crate::protocol::api::{self, ApiError, Body};
use crate::protocol::assets;
use crate::protocol::http::{self, Head};
use crate::recovery::{self, Session};

impl Shard {
    /// Parses one request from `data`; returns bytes consumed (0: need more input).
    pub(super) fn http_input(&mut self, slot: usize, data: &[u8]) -> usize {
        let cfg = &self.shared.cfg;
        let head = match http::parse_head(data, cfg.max_header_size, cfg.max_body_size) {
            Ok(Some(h)) => h,
            Ok(None) => return 0,
            Err(e) => {
                if self.log_ok() {
                    tracing::info!(shard = self.id, status = e.status(), "bad HTTP request: {}", e.message());
                }
                self.respond(slot, e.status(), &api::err_body(e.message()), false);
                return data.len();
            }
        };
        let total = head.head_len + head.content_length;
        if data.len() < total {
            let now = self.now();
            let conn = &mut self.conns[slot];
            if !conn.in_body {
                // The head is in: the body gets its own request_timeout from here.
                conn.in_body = true;
                conn.req_since = now | 1;
                if head.expect_continue {
                    self.queue(slot, Bytes::from_static(http::CONTINUE));
                }
            }
            return 0;
        }
        let conn = &mut self.conns[slot];
        conn.in_body = false;
        conn.req_since = 0;
        metrics::add(&self.stats().http_requests_total, 1);
        let body = &data[head.head_len..total];
        self.route(slot, &head, body);
        total
    }

    fn route(&mut self, slot: usize, head: &Head, body: &[u8]) {
        let ka = head.keep_alive;
        if let State::Http { keep_alive, .. } = &mut self.conns[slot].state {
            *keep_alive = ka;
        }
        let path = head.path;
        let is_echo = self.shared.cfg.echo_path.as_deref() == Some(path);
        if path == "/ws" || is_echo {
            if head.method != "GET" || !head.upgrade_websocket {
                return self.respond(slot, 426, &api::err_body("this endpoint needs a WebSocket upgrade"), ka);
            }
            return self.upgrade(slot, head, is_echo);
        }
        match (head.method, path) {
            ("GET", "/health") => {
                let body = metrics::health(&self.shared.stats, &self.shared.hub_stats, self.shared.peers);
                self.respond(slot, 200, body.as_bytes(), ka);
            }
            ("GET", "/roomcast.js") => self.client_js(slot, head.if_none_match.as_deref(), ka),
            ("GET", "/api/openapi.json") => {
                self.respond(slot, 200, endpoints::openapi().as_bytes(), ka);
            }
            ("GET", "/metrics") => {
                // With an API key, the numbers are an operator's (an internal address can serve
                // them without a token: admin_listen).
                if let Err(e) = self.shared.verifier.check(head.authorization, Scope::Operator) {
                    metrics::add(&self.stats().metrics_refusals_total, 1);
                    return self.respond(slot, e.status(), &api::err_body(e.message()), ka);
                }
                let text = metrics::render(&self.shared.stats, &self.shared.hub_stats);
                self.respond_as(slot, 200, "text/plain; version=0.0.4", text.as_bytes(), ka);
            }
            (method, p) if p.starts_with("/api/") => {
                if method != "POST" {
                    return self.respond(slot, 405, &api::err_body("use POST for /api/* endpoints"), ka);
                }
                if let Err(e) = self.api_call(slot, head, body) {
                    if e.bound.is_some() {
                        metrics::add(&self.stats().limit_refusals_total, 1);
                    }
                    self.log_refusal(slot, Cause::Api(e.status), &format!("API call {path} ({})", e.status), &e.msg);
                    self.respond(slot, e.status, &e.body(), ka);
                }
            }
            _ => self.respond(slot, 404, &api::err_body(&format!("unknown route {path}")), ka),
        }
    }

    /// `GET /roomcast.js`: the browser client, or 304 when the caller's copy is current. Any
    /// page may load it (`Access-Control-Allow-Origin: *`: it is public, and an ES module
    /// import from another origin needs it).
    fn client_js(&mut self, slot: usize, if_none_match: Option<&str>, ka: bool) {
        let etag = assets::roomcast_js_etag();
        let fresh = assets::not_modified(if_none_match, etag);
        let (status, body) = if fresh { (304, "") } else { (200, assets::ROOMCAST_JS) };
        let extra = [("ETag", etag), ("Cache-Control", assets::CACHE_CONTROL), ("Access-Control-Allow-Origin", "*")];
        let r = http::response_with(status, "text/javascript; charset=utf-8", &extra, body.as_bytes(), ka);
        self.queue(slot, r);
    }

    /// Queues a JSON response.
    pub(super) fn respond(&mut self, slot: usize, status: u16, body: &[u8], keep_alive: bool) {
        self.respond_as(slot, status, "application/json", body, keep_alive)
    }

    /// Queues a response. It is the connection's last when the request asked so
    /// (`keep_alive` false) or the status refuses the request ([`http::keeps_alive_after`]):
    /// then nothing more is parsed from it and it closes once the response is out — after a
    /// refusal, by a lingering close (the client may still be sending what was refused; a
    /// close with unread input would reset the connection and could destroy the answer).
    fn respond_as(&mut self, slot: usize, status: u16, content_type: &str, body: &[u8], keep_alive: bool) {
        if status >= 400 {
            metrics::add(&self.stats().http_errors_total, 1);
        }
        let refused = !http::keeps_alive_after(status);
        let keep = keep_alive && !refused;
        let Some(c) = self.conns.get_mut(slot) else { return };
        let linger = match &mut c.state {
            State::Http { keep_alive: ka, awaiting } => {
                *ka &= keep;
                refused && !*awaiting
            }
            _ => false,
        };
        self.queue(slot, http::response(status, content_type, body, keep));
        if linger {
            self.linger(slot);
        }
    }

    /// Checks, parses and hands an API call to the hub; `Err` is answered at once.
    fn api_call(&mut self, slot: usize, head: &Head, raw: &[u8]) -> Result<(), ApiError> {
        let name = &head.path["/api/".len()..];
        let endpoint =
            endpoints::find(name).ok_or_else(|| ApiError::new(404, format!("unknown endpoint /api/{name}")))?;
        let header_system = head.system_id.filter(|s| !s.is_empty());
        let scope = match (endpoint.access, header_system) {
            (Access::Operator, _) => Scope::Operator,
            (Access::System, Some(s)) => Scope::System(s),
            (Access::System, None) => return Err(ApiError::bad_request("SystemId header is required")),
        };
        let auth = self.shared.verifier.check(head.authorization, scope);
        auth.map_err(|e| ApiError::new(e.status(), e.message().to_string()))?;
        let body = api::parse_body(raw).map_err(ApiError::bad_request)?;
        let system: Box<str> = match endpoint.access {
            Access::Operator => Body::required(&body.system_id, "systemId").map_err(ApiError::bad_request)?.into(),
            Access::System => header_system.unwrap_or_default().into(),
        };
        let limits = self.limits();
        limits.name(&system, "systemId")?;
        let cfg = &self.shared.cfg;
        let req = Request { body: &body, node: cfg.node_id.0, cluster: self.shared.peers, limits };
        let op = (endpoint.parse)(&req)?;
        // A send to a system the hub confirmed registered cannot fail at the hub: answer it
        // as soon as it is queued (the hub sees it before any later call of this client).
        // Only a single node's hub confirms systems (`Backend::shards_answer`).
        let early = endpoint.early_answer && self.known_systems.contains_key(&*system);
        let answer_now = early.then(|| op_message_id(&op)).flatten();
        let from = self.conn_id(slot);
        let answered = answer_now.is_some();
        if self.send_hub(Command::Api { from, system, op, answered }).is_err() {
            metrics::add(&self.stats().hub_busy_total, 1);
            if self.log_ok() {
                tracing::warn!(shard = self.id, "API call refused (503): hub queue full");
            }
            return Err(ApiError::hub_busy());
        }
        match answer_now {
            Some(id) => {
                self.respond(slot, 200, &api::message_id_body(&id), head.keep_alive);
                self.flush_one(slot);
            }
            None => {
                let now = self.now();
                let conn = &mut self.conns[slot];
                conn.await_hub();
                // The answer's deadline (`Shard::sweep`): a call is never left waiting for ever.
                conn.req_since = now | 1;
            }
        }
        Ok(())
    }

    /// The bounds on what a request may store.
    fn limits(&self) -> Limits {
        let c = &self.shared.cfg;
        Limits { name: c.max_name_bytes, extend: c.max_extend_bytes, page: c.groups_page_size, history: c.history_size }
    }

    /// The hub's answer to an API call from `to`.
    ///
    /// Then the requests pipelined behind it, and anything that arrived meanwhile, are parsed
    /// at once, so a pipelining caller's next request joins this turn's batch (deferring it to
    /// the next turn cost the joinstorm a third of its throughput: more, smaller writes). The
    /// parser is never re-entered: answers are drained between parses, and were one ever
    /// drained inside the parser (the scratch buffer taken), the slot would be resumed later
    /// in the turn instead.
    pub(super) fn api_reply(&mut self, to: Target, status: u16, body: Bytes) {
        let Some(conn) = self.conn_at(to) else { return };
        let Some(keep_alive) = conn.hub_answered() else { return };
        let more = conn.partial.is_some() || conn.deferred_read;
        let slot = to.slot as usize;
        if (400..500).contains(&status) {
            let msg = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let msg = msg.as_ref().and_then(|v| v["msg"].as_str()).unwrap_or("").to_string();
            self.log_refusal(slot, Cause::Api(status), &format!("API call ({status})"), &msg);
        }
        self.respond(slot, status, &body, keep_alive);
        self.flush_one(slot);
        if keep_alive && more {
            if self.scratch.is_empty() {
                self.read_later(slot);
            } else {
                self.continue_input(slot);
            }
        }
    }

    fn upgrade(&mut self, slot: usize, head: &Head, echo: bool) {
        let ka = head.keep_alive;
        if head.ws_version != Some("13") {
            return self.respond(slot, 400, &api::err_body("unsupported Sec-WebSocket-Version (need 13)"), false);
        }
        let Some(key) = head.ws_key else {
            return self.respond(slot, 400, &api::err_body("missing Sec-WebSocket-Key"), false);
        };
        if let (Some(allowed), Some(origin)) = (&self.shared.cfg.origins, head.origin) {
            if head.origin_repeated || !allowed.allows(origin) {
                metrics::add(&self.stats().origin_refusals_total, 1);
                let msg = if head.origin_repeated { "more than one Origin header" } else { "origin not allowed" };
                self.log_refusal(slot, Cause::Origin, "WebSocket (403)", &format!("{msg}: {origin}"));
                return self.respond(slot, 403, &api::err_body(msg), false);
            }
        }
        if let (Some(p), Some(sock)) = (&self.shared.per_ip, self.conns[slot].sock.as_ref()) {
            if !p.handshake(std::os::fd::AsRawFd::as_raw_fd(sock)) {
                metrics::add(&self.stats().refused_per_ip_total, 1);
                let msg = "too many WebSocket handshakes from this address: handshakes_per_ip_per_second reached";
                self.log_refusal(slot, Cause::Handshakes, "WebSocket (429)", msg);
                return self.respond(slot, 429, &api::err_body(msg), false);
            }
        }
        // permessage-deflate, if on and offered; the connection keeps the client's window.
        let agreed = match (self.shared.cfg.compression, head.ws_extensions.as_deref()) {
            (true, Some(offers)) => crate::protocol::deflate::negotiate(offers),
            _ => None,
        };
        self.conns[slot].deflate = agreed.as_ref().map_or(0, |a| a.server_window);
        let protocol = head.ws_protocols.as_deref().and_then(|offered| self.subprotocol(slot, offered));
        let accept = http::switching_protocols(key, agreed.as_ref().map(|a| a.response.as_str()), protocol.as_deref());
        if echo {
            self.become_ws(slot, accept, State::Echo);
            return;
        }
        let system = head.query_param("systemId").or(head.system_id.map(Into::into)).filter(|s| !s.is_empty());
        let Some(system) = system else {
            // Upstream behaviour: complete the handshake, send -1001, close.
            self.become_ws(slot, accept, State::Client { hub_knows: false });
            return self.refuse(slot, Cause::NoSystem, "systemId is required");
        };
        if let Err(e) = self.limits().name(&system, "systemId") {
            // No registered system has such a name; say why rather than "not registered".
            metrics::add(&self.stats().limit_refusals_total, 1);
            self.become_ws(slot, accept, State::Client { hub_knows: false });
            return self.refuse(slot, Cause::NoSystem, &e.msg);
        }
        let recover = head.query_param("recover").as_deref() == Some("1");
        let resume = if recover { head.query_param("resume") } else { None };
        let admit = match self.admission(head.query_param("token").as_deref(), &system, resume.is_some()) {
            Ok(a) => a,
            Err(msg) => {
                self.become_ws(slot, accept, State::Client { hub_knows: false });
                return self.refuse(slot, Cause::Token, &msg);
            }
        };
        if let Some(token) = resume {
            let last = head.query_param("last").filter(|l| !l.is_empty());
            return self.resume_request(slot, accept.into(), system.into(), &token, last.map(Into::into), ka, admit);
        }
        self.connect_client(slot, accept, &system, recover, ka, admit);
    }

    /// The subprotocol answering a client's offer, if `subprotocols` lists one; when none is,
    /// the handshake goes on without (as upstream), but a browser will fail it: logged.
    fn subprotocol(&mut self, slot: usize, offered: &str) -> Option<Box<str>> {
        let chosen = http::choose_subprotocol(offered, &self.shared.cfg.subprotocols).map(Box::from);
        if chosen.is_none() {
            self.log_refusal(slot, Cause::Subprotocol, "WebSocket subprotocol", &format!("offered {offered:?}"));
        }
        chosen
    }

    /// Whether a `/ws` connect to `system` with `token` may have a session, and with what
    /// (connect tokens: `auth`); `Err`: the refusal's message. A resume (`resuming`) needs no
    /// token, but without one it may not fall back to a fresh session when `ws_auth` is on.
    fn admission(&self, token: Option<&str>, system: &str, resuming: bool) -> Result<Admit, String> {
        let required = self.shared.cfg.ws_auth;
        let token = token.filter(|t| !t.trim().is_empty());
        let grant = match self.shared.verifier.connect(token, system, required) {
            Ok(g) => g,
            Err(e) if resuming && token.is_none() => return Ok(Admit::ResumeOnly(e.message().into())),
            Err(e) => {
                metrics::add(&self.stats().connect_token_refusals_total, 1);
                return Err(e.message().to_string());
            }
        };
        let Some(grant) = grant.filter(|g| !g.is_empty()) else { return Ok(Admit::Open) };
        self.check_grant(&grant).inspect_err(|_| metrics::add(&self.stats().limit_refusals_total, 1))?;
        Ok(Admit::Granted(Box::new(grant)))
    }

    /// Whether the connection at `slot` may start a fresh session: the node's and its
    /// address's connections, sessions kept for recovery included, are within
    /// `max_connections` and `max_connections_per_ip` (a resume is never asked this: it
    /// brings back what is counted already). `Err`: the refusal's status and message.
    fn fresh_fits(&self, slot: usize) -> Result<(), (u16, &'static str)> {
        let sh = &self.shared;
        let kept = sh.kept.load(std::sync::atomic::Ordering::Relaxed);
        if kept > 0 && sh.connections.load(std::sync::atomic::Ordering::Relaxed) + kept > sh.cfg.max_connections {
            metrics::add(&self.stats().refused_full_total, 1);
            return Err((503, "server is full: max_connections reached (sessions kept for recovery count)"));
        }
        let fd = self.conns[slot].sock.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        if let (Some(p), Some(fd)) = (&sh.per_ip, fd) {
            if !p.fresh_fits(fd) {
                metrics::add(&self.stats().refused_per_ip_total, 1);
                return Err((
                    429,
                    "too many connections from this address: max_connections_per_ip reached (sessions kept for recovery count)",
                ));
            }
        }
        Ok(())
    }

    /// A connect token's user and groups within the bounds a bind has.
    fn check_grant(&self, g: &Grant) -> Result<(), String> {
        let limits = self.limits();
        if let Some(sub) = &g.sub {
            limits.name(sub, "the token's sub").map_err(|e| e.msg)?;
        }
        for group in &g.groups {
            if group.is_empty() {
                return Err("the token's groups hold an empty groupName".into());
            }
            limits.name(group, "a groupName of the token").map_err(|e| e.msg)?;
        }
        let max = self.shared.cfg.max_groups_per_client;
        if g.groups.len() > max {
            let n = g.groups.len();
            return Err(format!("the token names {n} groups, more than max_groups_per_client ({max}) allows"));
        }
        Ok(())
    }

    /// Tells the hub of a new client; its connect frame follows the hub's answer (`welcome`),
    /// or at once when this shard knows the system is registered (single node: systems are
    /// never unregistered) and the client has no connect token's grant (its user and groups
    /// are the hub's to apply first). `recover`: it opted in to session recovery.
    pub(super) fn connect_client(
        &mut self,
        slot: usize,
        mut accept: Vec<u8>,
        system: &str,
        recover: bool,
        ka: bool,
        admit: Admit,
    ) {
        let grant = match admit {
            Admit::Open => None,
            Admit::Granted(g) => Some(g),
            Admit::ResumeOnly(msg) => {
                metrics::add(&self.stats().connect_token_refusals_total, 1);
                self.become_ws(slot, accept, State::Client { hub_knows: false });
                return self.refuse(slot, Cause::Token, &format!("the session could not be resumed, and {msg}"));
            }
        };
        if let Err((status, why)) = self.fresh_fits(slot) {
            return self.respond(slot, status, &api::err_body(why), false);
        }
        let conn = self.conn_id(slot);
        // Single node, a system the hub confirmed: named by its index.
        let index = self.known_systems.get(system).copied();
        // ... and welcomed here, unless a grant is to be applied first.
        let welcomed = index.is_some() && grant.is_none();
        let session = recover.then(|| Box::new(Session::new(system.into())));
        // A Connect must not overtake a Disconnected still waiting in the backlog: the slot
        // may be the same, and the hub must see the old generation leave first.
        let sent = match (self.backlog.is_empty(), index) {
            (false, _) => Err(()),
            // Sent with the turn's other connects, before any socket is written (`to_hub`).
            (true, Some(i)) if welcomed => {
                self.connect_later(conn, i);
                Ok(())
            }
            (true, index) => {
                let system = index.map_or_else(|| SystemRef::Name(system.into()), SystemRef::Index);
                self.send_hub(Command::Connect { conn, system, welcomed: false, grant }).map_err(|_| ())
            }
        };
        match sent {
            // The connect frame goes out once the Connect is in the hub's queue: whatever
            // the client's back end does with the clientId reaches the hub after it, so a
            // bind that follows can never miss the client.
            Ok(()) => {
                if welcomed && session.is_none() {
                    // The usual case: 101 and connect frame in one buffer.
                    let id = ids::client_id_buf(self.shared.cfg.node_id.0, conn);
                    api::push_welcome_frame(&mut accept, id.as_str());
                    return self.become_ws(slot, accept, State::Client { hub_knows: true });
                }
                self.become_ws(slot, accept, State::Client { hub_knows: true });
                self.conns[slot].session = session;
                if welcomed {
                    self.send_welcome(slot);
                }
            }
            Err(_) => self.refuse_hub_busy(slot, ka),
        }
    }

    pub(super) fn become_ws(&mut self, slot: usize, accept: impl Into<Bytes>, state: State) {
        self.queue(slot, accept.into());
        self.set_state(slot, state);
    }

    /// Sends the -1001 frame and closes (policy violation); the refusal is logged.
    fn refuse(&mut self, slot: usize, cause: Cause, msg: &str) {
        self.log_refusal(slot, cause, "WebSocket (-1001)", msg);
        self.queue(slot, api::refused_frame(msg));
        self.on_event(slot, super::lifecycle::react::Event::Refused);
    }

    /// The hub's answer to `Command::Connect`.
    pub(super) fn welcome(&mut self, to: Target, result: Result<(), String>, system: Option<(Arc<str>, u32)>) {
        if let Some((name, index)) = system.filter(|(s, _)| !self.known_systems.contains_key(&**s)) {
            debug_assert!(!self.shared.peers, "cluster mode never names systems by index");
            self.known_systems.insert((*name).into(), index);
        }
        let Some(conn) = self.conn_at(to) else { return };
        if !matches!(conn.state, State::Client { .. }) {
            return;
        }
        match result {
            Ok(()) => self.send_welcome(to.slot as usize),
            Err(msg) => {
                conn.state = State::Client { hub_knows: false };
                conn.session = None;
                self.refuse(to.slot as usize, Cause::Unregistered, &msg);
            }
        }
    }
}

impl Shard {
    /// Queues the connect frame (with the session token if it opted in to recovery).
    fn send_welcome(&mut self, slot: usize) {
        let id = ids::client_id_buf(self.shared.cfg.node_id.0, self.conn_id(slot));
        let id = id.as_str();
        let frame = match &self.conns[slot].session {
            None => api::welcome_frame(id),
            Some(s) => api::session_frame(id, &recovery::token(id, &s.secret), None),
        };
        self.queue(slot, frame);
    }
}

/// The messageId of a send (answered at once).
fn op_message_id(op: &crate::msg::Op) -> Option<Box<str>> {
    use crate::msg::Op;
    match op {
        Op::SendToGroup { message_id, .. }
        | Op::SendToSystem { message_id, .. }
        | Op::SendToClients { message_id, .. } => Some(message_id.clone()),
        _ => None,
    }
}
