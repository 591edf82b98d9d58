//! Log lines for refusals, so "why can't my browser connect?" has an answer on the server:
//! each refusal of a WebSocket or an API call is logged (`info`) with its cause, the source
//! address and what to do — at most once per cause and address per [`INTERVAL_MS`] on each
//! shard, so a client retrying in a loop (or a flood of bad ones) writes a line per interval,
//! not per attempt. Counted either way by the refusal's own metric.

use std::collections::HashMap;
use std::net::IpAddr;

/// One line per cause and source address per this many shard-clock milliseconds.
pub const INTERVAL_MS: u32 = 10_000;
/// Sources remembered at once; past it, entries older than the interval are forgotten, and if
/// none is, the cause is logged for any address at most once per interval.
pub const MAX_SOURCES: usize = 4096;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// `/ws` from a page whose `Origin` is not in `allowed_origins` (403).
    Origin,
    /// `/ws` without a `systemId` (-1001).
    NoSystem,
    /// `/ws` with a token that does not admit it, or without one under `ws_auth` (-1001).
    Token,
    /// `/ws` to a system that is not registered (-1001).
    Unregistered,
    /// `/ws` handshakes from one address faster than `handshakes_per_ip_per_second` (429).
    Handshakes,
    /// `/ws` offering subprotocols none of which `subprotocols` lists (the handshake goes on
    /// without one, and a browser then fails the connection).
    Subprotocol,
    /// An API call refused with this status (4xx).
    Api(u16),
}

impl Cause {
    /// What the operator or developer can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::Origin => "add the page's origin (scheme://host[:port]) to allowed_origins",
            Cause::NoSystem => "connect to /ws?systemId=<your system>",
            Cause::Token => "give the page a connect token minted for this system (docs/API.md, Connect tokens)",
            Cause::Unregistered => {
                "register the system first: POST /api/register {\"systemId\":\"..\"} with an operator token"
            }
            Cause::Handshakes => "this address opens WebSockets faster than handshakes_per_ip_per_second allows",
            Cause::Subprotocol => "a browser fails this connection: add the subprotocol it needs to subprotocols",
            Cause::Api(401) => "send Authorization: Bearer <token> signed with the server's key",
            Cause::Api(403) => "use a token for this SystemId (or an operator token)",
            Cause::Api(_) => "see the message; docs/API.md lists every endpoint's fields",
        }
    }
}

/// What was logged when (per shard).
#[derive(Default)]
pub struct Refusals {
    last: HashMap<(Cause, Option<IpAddr>), u32>,
}

impl Refusals {
    /// Whether a refusal of `cause` from `ip` may be logged at shard clock `now`.
    pub fn allow(&mut self, now: u32, cause: Cause, ip: Option<IpAddr>) -> bool {
        if !self.last.contains_key(&(cause, ip)) && self.last.len() >= MAX_SOURCES {
            self.last.retain(|_, t| now.wrapping_sub(*t) < INTERVAL_MS);
        }
        // Still full: one line for the cause, whatever the address.
        let key = if self.last.len() >= MAX_SOURCES && !self.last.contains_key(&(cause, ip)) {
            (cause, None)
        } else {
            (cause, ip)
        };
        match self.last.get(&key) {
            Some(t) if now.wrapping_sub(*t) < INTERVAL_MS => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_cause_and_source_per_interval() {
        let mut r = Refusals::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(r.allow(100, Cause::Origin, a));
        assert!(!r.allow(200, Cause::Origin, a), "the same again: suppressed");
        assert!(r.allow(200, Cause::Token, a), "another cause");
        assert!(r.allow(200, Cause::Origin, b), "another source");
        assert!(!r.allow(100 + INTERVAL_MS - 1, Cause::Origin, a));
        assert!(r.allow(100 + INTERVAL_MS, Cause::Origin, a), "a new interval");
    }

    #[test]
    fn a_flood_of_sources_stays_bounded() {
        let mut r = Refusals::default();
        let mut logged = 0;
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let ip = Some(IpAddr::from(i.to_be_bytes()));
            logged += usize::from(r.allow(5, Cause::Api(400), ip));
        }
        assert!(r.last.len() <= MAX_SOURCES + 1, "{}", r.last.len());
        assert_eq!(logged, MAX_SOURCES + 1, "then one line for the cause, not one per address");
    }
}
