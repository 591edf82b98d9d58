//! Presence events and their JSON (pure).

use std::sync::Arc;

/// Why a client left (`client_disconnected`'s `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// The client closed, or its connection ended (and it had no session to keep).
    Closed,
    /// `close_client`.
    Kicked,
    IdleTimeout,
    SlowConsumer,
    /// The server shut down.
    Shutdown,
    /// Cluster mode: its node died (told by the survivor that reaped it).
    NodeLost,
    /// A recoverable session's window or byte bound ran out.
    RecoveryExpired,
}

impl Gone {
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Closed => "closed",
            Gone::Kicked => "kicked",
            Gone::IdleTimeout => "idle_timeout",
            Gone::SlowConsumer => "slow_consumer",
            Gone::Shutdown => "shutdown",
            Gone::NodeLost => "node_lost",
            Gone::RecoveryExpired => "recovery_expired",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `user_id`: its connect token's `sub` (the `userId` key only when there is one).
    ClientConnected {
        user_id: Option<Box<str>>,
    },
    ClientDisconnected(Gone),
    /// A client joined a group (`userId`, `extend`).
    GroupJoined {
        user_id: Box<str>,
        extend: Box<str>,
    },
    GroupLeft {
        user_id: Box<str>,
        extend: Box<str>,
    },
    /// The group's first member came.
    GroupOccupied,
    /// The group's last member left.
    GroupVacated,
    /// The user's first connection in the system (cluster-wide).
    UserOnline {
        user_id: Arc<str>,
    },
    /// The user's last connection in the system went (cluster-wide).
    UserOffline {
        user_id: Arc<str>,
    },
}

/// One presence event, as the hub or the broker records it (made into JSON by the sender
/// thread, off the hot threads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub system: Arc<str>,
    pub group: Option<Arc<str>>,
    pub client: Option<Box<str>>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl Event {
    pub fn new(kind: Kind, system: Arc<str>, group: Option<Arc<str>>, client: Option<Box<str>>) -> Self {
        Event { kind, system, group, client, time_ms: crate::auth::now_millis() }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::ClientConnected { .. } => "client_connected",
            Kind::ClientDisconnected(_) => "client_disconnected",
            Kind::GroupJoined { .. } => "group_joined",
            Kind::GroupLeft { .. } => "group_left",
            Kind::GroupOccupied => "group_occupied",
            Kind::GroupVacated => "group_vacated",
            Kind::UserOnline { .. } => "user_online",
            Kind::UserOffline { .. } => "user_offline",
        }
    }

    /// Appends this event's JSON object, with its unique `id`.
    pub fn write_json(&self, id: &str, out: &mut Vec<u8>) {
        let s = |out: &mut Vec<u8>, v: &str| {
            let _ = serde_json::to_writer(&mut *out, v);
        };
        out.extend_from_slice(b"{\"id\":");
        s(out, id);
        out.extend_from_slice(b",\"name\":\"");
        out.extend_from_slice(self.name().as_bytes());
        out.extend_from_slice(b"\",\"systemId\":");
        s(out, &self.system);
        if let Some(g) = &self.group {
            out.extend_from_slice(b",\"groupName\":");
            s(out, g);
        }
        if let Some(c) = &self.client {
            out.extend_from_slice(b",\"clientId\":");
            s(out, c);
        }
        match &self.kind {
            Kind::GroupJoined { user_id, extend } | Kind::GroupLeft { user_id, extend } => {
                out.extend_from_slice(b",\"userId\":");
                s(out, user_id);
                out.extend_from_slice(b",\"extend\":");
                s(out, extend);
            }
            Kind::ClientConnected { user_id: Some(u) } => {
                out.extend_from_slice(b",\"userId\":");
                s(out, u);
            }
            Kind::UserOnline { user_id } | Kind::UserOffline { user_id } => {
                out.extend_from_slice(b",\"userId\":");
                s(out, user_id);
            }
            Kind::ClientDisconnected(why) => {
                out.extend_from_slice(b",\"reason\":\"");
                out.extend_from_slice(why.as_str().as_bytes());
                out.push(b'"');
            }
            _ => {}
        }
        out.extend_from_slice(b",\"timeMs\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.time_ms).as_bytes());
        out.push(b'}');
    }
}

/// A batch's body: `{"timeMs":..,"events":[..]}`; `ids` gives each event its id. `dropped`:
/// the id and count of an `events_dropped` event that comes first.
pub fn batch_body<'a>(
    time_ms: u64,
    dropped: Option<(&str, u64)>,
    events: impl Iterator<Item = (&'a str, &'a Event)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let time = itoa::Buffer::new().format(time_ms).to_string();
    out.extend_from_slice(b"{\"timeMs\":");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b",\"events\":[");
    if let Some((id, n)) = dropped {
        out.extend_from_slice(b"{\"id\":");
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(b",\"name\":\"events_dropped\",\"count\":");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b",\"timeMs\":");
        out.extend_from_slice(time.as_bytes());
        out.push(b'}');
    }
    for (i, (id, e)) in events.enumerate() {
        if i > 0 || dropped.is_some() {
            out.push(b',');
        }
        e.write_json(id, &mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `sha256=<lowercase hex HMAC-SHA256 of "<timestamp>.<body>">` (the `X-Roomcast-Signature`
/// header; `timestamp` is the `X-Roomcast-Timestamp` header, unix seconds).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut s = String::from("sha256=");
    for b in mac.finalize().into_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_the_protocol_objects() {
        let sys: Arc<str> = "s".into();
        let mut e = Event::new(Kind::ClientConnected { user_id: None }, sys.clone(), None, Some("c".into()));
        e.time_ms = 5;
        let joined = Event {
            kind: Kind::GroupJoined { user_id: "u\"".into(), extend: "x".into() },
            group: Some("g".into()),
            ..e.clone()
        };
        let gone = Event { kind: Kind::ClientDisconnected(Gone::NodeLost), ..e.clone() };
        let vacated = Event { kind: Kind::GroupVacated, group: Some("g".into()), client: None, ..e.clone() };
        let body = batch_body(9, None, [("1", &e), ("2", &joined), ("3", &gone), ("4", &vacated)].into_iter());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["timeMs"], 9);
        assert_eq!(
            v["events"][0],
            serde_json::json!({"id":"1","name":"client_connected","systemId":"s","clientId":"c","timeMs":5})
        );
        assert_eq!(
            v["events"][1],
            serde_json::json!({"id":"2","name":"group_joined","systemId":"s","groupName":"g","clientId":"c","userId":"u\"","extend":"x","timeMs":5})
        );
        assert_eq!(v["events"][2]["reason"], "node_lost");
        assert_eq!(
            v["events"][3],
            serde_json::json!({"id":"4","name":"group_vacated","systemId":"s","groupName":"g","timeMs":5})
        );
    }

    #[test]
    fn signature_is_the_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"Jefe", b'1764370000.{"a":1}', hashlib.sha256).hexdigest()
        let sig = signature(b"Jefe", "1764370000", br#"{"a":1}"#);
        assert_eq!(sig, "sha256=6e32bd8fd7f57eeda00402355a4929dfc101d37dcfb49de33e8c2266500fe716");
        assert_ne!(signature(b"Jefe", "1764370001", br#"{"a":1}"#), sig, "the timestamp is signed");
    }

    #[test]
    fn a_drop_notice_comes_first() {
        let e = Event { time_ms: 5, ..Event::new(Kind::GroupOccupied, "s".into(), Some("g".into()), None) };
        let body = batch_body(9, Some(("d1", 42)), [("1", &e)].into_iter());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"][0], serde_json::json!({"id":"d1","name":"events_dropped","count":42,"timeMs":9}));
        assert_eq!(v["events"][1]["name"], "group_occupied");
        let alone: serde_json::Value =
            serde_json::from_slice(&batch_body(9, Some(("d", 1)), std::iter::empty())).unwrap();
        assert_eq!(alone["events"].as_array().unwrap().len(), 1);
    }
}
