//! The hand-off of a stopping node's sessions to a live node (docs/CLUSTER.md, "Restarts"):
//! the messages the two exchange on their node channels (`rc:n:{node}`), in order.
//!
//! ```text
//! stopping A ──Ask───► adopter B   the systems and groups of the sessions; B refuses if it
//!                                  is stopping or has no room, else subscribes to them and
//!                                  keeps what they carry from then on
//! stopping A ◄─Ready── adopter B   (or Refused); A's subscriber takes the cut as it reads it:
//!                                  per channel, the last position A's shards were given
//! stopping A ──Part──► adopter B   the sessions (bounded parts), the cut with the last part
//! stopping A ──Send──► adopter B   a direct send that reached A after the cut (in order)
//! stopping A ◄─Done─── adopter B   B holds them, Redis says so (`moved`): A may go
//! ```
//!
//! The body is JSON after one kind byte ([`KIND`], unused by the relay and call messages):
//! a hand-off is rare and its parts are bounded, and the sessions are in the state file's
//! form (`crate::state::Session`) already.

use serde::{Deserialize, Serialize};

/// The first byte of a hand-off message on a node channel.
pub const KIND: u8 = b'O';

/// Most bytes of sessions in one [`Msg::Part`].
pub const PART_BYTES: usize = 1 << 20;

/// A channel the sessions are in: a group of a system, or the system itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Channel {
    pub system: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A message's place in its publisher's stream of a channel (`cluster::wire::Pos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    pub origin: u32,
    pub epoch: u32,
    pub seq: u64,
}

/// The last position one publisher's messages on a channel had when A took its cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub channel: Channel,
    pub at: At,
}

/// Whether a message at `at` on `channel` was given to A's shards before the cut (then the
/// sessions have it already): same publisher, same epoch, not past the cut's position.
pub fn before_cut(cut: &[Cut], channel: &Channel, at: Option<At>) -> bool {
    let Some(at) = at else { return false };
    cut.iter()
        .any(|c| c.channel == *channel && c.at.origin == at.origin && c.at.epoch == at.epoch && at.seq <= c.at.seq)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Ask {
        from: u32,
        sessions: u32,
        channels: Vec<Channel>,
    },
    Ready {
        from: u32,
        channels: Vec<Channel>,
    },
    Refused {
        from: u32,
        why: String,
    },
    Part {
        from: u32,
        sessions: Vec<crate::state::Session>,
        last: bool,
        cut: Vec<Cut>,
    },
    /// A send to one adopted client (the push frame's payload) that reached A after the cut.
    Send {
        from: u32,
        client: String,
        payload: String,
    },
    /// The adopter holds these sessions (their clientIds); the stopping node ends the rest.
    Done {
        from: u32,
        held: Vec<String>,
    },
}

impl Msg {
    pub fn from(&self) -> u32 {
        match self {
            Msg::Ask { from, .. }
            | Msg::Ready { from, .. }
            | Msg::Refused { from, .. }
            | Msg::Part { from, .. }
            | Msg::Send { from, .. }
            | Msg::Done { from, .. } => *from,
        }
    }
}

pub fn encode(m: &Msg) -> Vec<u8> {
    let mut v = vec![KIND];
    serde_json::to_writer(&mut v, m).expect("a hand-off message serializes");
    v
}

/// `None` for anything but a well-formed hand-off message.
pub fn decode(p: &[u8]) -> Option<Msg> {
    match p.split_first() {
        Some((&KIND, body)) => serde_json::from_slice(body).ok(),
        _ => None,
    }
}

/// The sessions in parts of at most [`PART_BYTES`] each (one session larger than that goes
/// alone); the cut goes with the last. Never empty: no sessions is one last part.
pub fn parts(from: u32, sessions: Vec<crate::state::Session>, cut: Vec<Cut>) -> Vec<Msg> {
    let mut parts: Vec<Vec<crate::state::Session>> = vec![Vec::new()];
    let mut bytes = 0;
    for s in sessions {
        let n = serde_json::to_vec(&s).map_or(0, |v| v.len());
        if bytes + n > PART_BYTES && !parts.last().is_some_and(Vec::is_empty) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        parts.last_mut().expect("one part at least").push(s);
    }
    let n = parts.len();
    let mut cut = Some(cut);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, sessions)| {
            let last = i + 1 == n;
            Msg::Part { from, sessions, last, cut: if last { cut.take().unwrap_or_default() } else { Vec::new() } }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, frame_bytes: usize) -> crate::state::Session {
        let payload = crate::state::Payload::new(format!("\"{}\"", "x".repeat(frame_bytes)).as_bytes()).unwrap();
        crate::state::Session {
            client_id: id.into(),
            secret: "00".repeat(16),
            system: "s".into(),
            user: None,
            user_id: String::new(),
            extend: String::new(),
            groups: vec!["g".into()],
            detached_ms: 1,
            ip: None,
            from_start: true,
            acked: None,
            frames: vec![payload],
        }
    }

    #[test]
    fn messages_survive_their_encoding_and_others_are_not_taken_for_them() {
        let ch = Channel { system: "s".into(), group: Some("g".into()) };
        let m = Msg::Part {
            from: 7,
            sessions: vec![session("a", 3)],
            last: true,
            cut: vec![Cut { channel: ch.clone(), at: At { origin: 1, epoch: 2, seq: 3 } }],
        };
        assert_eq!(decode(&encode(&m)), Some(m));
        let ask = Msg::Ask { from: 7, sessions: 2, channels: vec![ch] };
        assert_eq!(decode(&encode(&ask)), Some(ask));
        assert_eq!(decode(b"Q{}"), None);
        assert_eq!(decode(b"O{\"Nope\":{}}"), None);
        assert_eq!(decode(b"O"), None);
    }

    #[test]
    fn only_what_the_cut_covers_is_before_it() {
        let ch = Channel { system: "s".into(), group: Some("g".into()) };
        let other = Channel { system: "s".into(), group: None };
        let cut = vec![Cut { channel: ch.clone(), at: At { origin: 1, epoch: 2, seq: 5 } }];
        let at = |origin, epoch, seq| Some(At { origin, epoch, seq });
        assert!(before_cut(&cut, &ch, at(1, 2, 5)));
        assert!(before_cut(&cut, &ch, at(1, 2, 1)));
        assert!(!before_cut(&cut, &ch, at(1, 2, 6)));
        assert!(!before_cut(&cut, &ch, at(2, 2, 1)), "another publisher A never saw");
        assert!(!before_cut(&cut, &ch, at(1, 3, 1)), "a new epoch");
        assert!(!before_cut(&cut, &other, at(1, 2, 1)));
        assert!(!before_cut(&cut, &ch, None));
    }

    #[test]
    fn parts_are_bounded_and_the_cut_goes_last() {
        let cut =
            vec![Cut { channel: Channel { system: "s".into(), group: None }, at: At { origin: 1, epoch: 1, seq: 9 } }];
        let sessions = (0..5).map(|i| session(&i.to_string(), PART_BYTES / 2)).collect();
        let parts = parts(3, sessions, cut.clone());
        assert_eq!(parts.len(), 5, "one session of half the bound per part (two would pass it)");
        for (i, p) in parts.iter().enumerate() {
            let Msg::Part { sessions, last, cut: c, .. } = p else { panic!("a part") };
            assert_eq!(sessions.len(), 1);
            assert_eq!(*last, i == 4);
            assert_eq!(c.is_empty(), i != 4);
        }
        let Msg::Part { cut: c, .. } = &parts[4] else { unreachable!() };
        assert_eq!(c, &cut);
        let none = super::parts(3, Vec::new(), Vec::new());
        assert!(matches!(&none[..], [Msg::Part { last: true, .. }]));
    }
}
