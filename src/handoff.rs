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

/// Which of its part's frames a session holds: the acknowledged one before them, and its
/// unacknowledged ones in order (indexes into the part's `frames`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<u32>,
    #[serde(default)]
    pub frames: Vec<u32>,
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
    /// Sessions (without their frames), the part's distinct frames once each (`frames`: the
    /// sessions of a group share most of theirs), and per session which of them it holds.
    Part {
        from: u32,
        sessions: Vec<crate::state::Session>,
        #[serde(default)]
        frames: Vec<crate::state::Payload>,
        #[serde(default)]
        refs: Vec<Refs>,
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

/// The sessions in parts of about [`PART_BYTES`] each (a session larger than that goes
/// alone), each part with its distinct frames once; the cut goes with the last. Never empty:
/// no sessions is one last part.
pub fn parts(from: u32, sessions: Vec<crate::state::Session>, cut: Vec<Cut>) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut part = Packer::default();
    for mut s in sessions {
        let frames = std::mem::take(&mut s.frames);
        let acked = s.acked.take();
        let head = serde_json::to_vec(&s).map_or(0, |v| v.len());
        let new_bytes: usize =
            frames.iter().chain(&acked).filter(|p| !part.index.contains_key(p.text())).map(|p| p.text().len()).sum();
        let cost = head + new_bytes + 8 * (frames.len() + 1);
        if part.bytes + cost > PART_BYTES && !part.sessions.is_empty() {
            out.push(std::mem::take(&mut part));
        }
        part.bytes += head + 8 * (frames.len() + 1);
        let refs =
            Refs { acked: acked.map(|p| part.intern(p)), frames: frames.into_iter().map(|p| part.intern(p)).collect() };
        part.refs.push(refs);
        part.sessions.push(s);
    }
    out.push(part);
    let n = out.len();
    let mut cut = Some(cut);
    out.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let last = i + 1 == n;
            let cut = if last { cut.take().unwrap_or_default() } else { Vec::new() };
            Msg::Part { from, sessions: p.sessions, frames: p.frames, refs: p.refs, last, cut }
        })
        .collect()
}

/// One part being filled.
#[derive(Default)]
struct Packer {
    sessions: Vec<crate::state::Session>,
    frames: Vec<crate::state::Payload>,
    refs: Vec<Refs>,
    index: std::collections::HashMap<String, u32>,
    bytes: usize,
}

impl Packer {
    fn intern(&mut self, p: crate::state::Payload) -> u32 {
        if let Some(&i) = self.index.get(p.text()) {
            return i;
        }
        let i = self.frames.len() as u32;
        self.bytes += p.text().len();
        self.index.insert(p.text().to_string(), i);
        self.frames.push(p);
        i
    }
}

/// A part's sessions with their frames back, and how many were left out (a reference out
/// of range: such a session is not adopted, so its node ends it).
pub fn unpack(
    sessions: Vec<crate::state::Session>,
    frames: &[crate::state::Payload],
    refs: Vec<Refs>,
) -> (Vec<crate::state::Session>, usize) {
    let n = sessions.len();
    let get = |i: u32| frames.get(i as usize).cloned();
    let whole: Vec<crate::state::Session> = sessions
        .into_iter()
        .zip(refs)
        .filter_map(|(mut s, r)| {
            s.frames = r.frames.iter().map(|&i| get(i)).collect::<Option<Vec<_>>>()?;
            s.acked = match r.acked {
                Some(i) => Some(get(i)?),
                None => None,
            };
            Some(s)
        })
        .collect();
    let left_out = n - whole.len();
    (whole, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(text: &str) -> crate::state::Payload {
        crate::state::Payload::new(format!("\"{text}\"").as_bytes()).unwrap()
    }

    /// A session holding one frame of `frame_bytes` of its own.
    fn session(id: &str, frame_bytes: usize) -> crate::state::Session {
        let payload = payload(&format!("{id}{}", "x".repeat(frame_bytes)));
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
            frames: Vec::new(),
            refs: vec![Refs::default()],
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

    #[test]
    fn a_part_holds_each_frame_once_and_gives_every_session_its_own_back() {
        let shared: Vec<_> = (0..3).map(|i| payload(&format!("group frame {i} {}", "y".repeat(1000)))).collect();
        let sessions: Vec<crate::state::Session> = (0..100)
            .map(|i| {
                let mut s = session(&format!("s{i}"), 1);
                s.acked = Some(shared[0].clone());
                s.frames = vec![shared[1].clone(), shared[2].clone(), payload(&format!("direct {i}"))];
                s
            })
            .collect();
        let parts = parts(3, sessions.clone(), Vec::new());
        let [Msg::Part { sessions: got, frames, refs, last: true, .. }] = &parts[..] else { panic!("one part") };
        assert_eq!(frames.len(), 3 + 100, "3 shared frames once, 100 direct ones");
        assert!(got.iter().all(|s| s.frames.is_empty() && s.acked.is_none()), "frames travel in the table");
        let (back, damaged) = unpack(got.clone(), frames, refs.clone());
        assert_eq!((back, damaged), (sessions, 0));
        let (whole, left_out) = unpack(got.clone(), &frames[..2], refs.clone());
        assert_eq!((whole.len(), left_out), (0, 100), "a reference past the table: not adopted");
    }
}
