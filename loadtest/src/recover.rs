//! The client side of session recovery for the `recover` and `reconnect` scenarios: each
//! client opts in (`recover=1`), remembers its resume token and the messageId of the last
//! frame it processed, and, when dropped (a reset: `SO_LINGER` 0, as when a network goes
//! away), reconnects with `resume=<token>&last=<messageId>`. Every message carries its
//! group's sequence number (`"s"`), so each client checks it got every one exactly once and
//! in order, across its drops.

use std::sync::LazyLock;
use std::time::Instant;

use memchr::memmem::Finder;

static TOKEN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"resumeToken\":\""));
static RECOVERED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"recovered\":true"));
static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"s\":"));
const MESSAGE_ID: &[u8] = b"{\"messageId\":\"";

/// A recovering client's state.
#[derive(Default)]
pub struct Rec {
    pub token: String,
    /// messageId of the last push frame processed ("" before the first).
    pub last: String,
    /// The sequence number the next message must carry.
    pub next_seq: Option<u64>,
    /// When it was dropped, while a resume is under way.
    pub dropped_at: Option<Instant>,
}

/// What the recovering clients of a worker saw.
#[derive(Default)]
pub struct RecTally {
    pub drops: u64,
    pub resumed: u64,
    pub resume_failed: u64,
    /// Messages that came after a gap (some were missed).
    pub gaps: u64,
    /// Messages seen again or out of order.
    pub dups: u64,
    /// When the last resume completed (ns since the epoch).
    pub last_resume: u64,
}

/// The `/ws` path of a first connect, or of a resume.
pub fn path(system: &str, rec: &Rec) -> String {
    if rec.token.is_empty() {
        return format!("/ws?systemId={system}&recover=1");
    }
    let mut p = format!("/ws?systemId={system}&recover=1&resume={}", rec.token);
    if !rec.last.is_empty() {
        p.push_str("&last=");
        p.push_str(&rec.last);
    }
    p
}

fn string_after(p: &[u8], at: usize) -> &[u8] {
    let rest = &p[at..];
    let end = rest.iter().position(|&c| c == b'"').unwrap_or(rest.len());
    &rest[..end]
}

/// A connect frame for a recovering client: keeps the new token. Returns whether it was a
/// resume, and if so whether it recovered the session.
pub fn on_connect_frame(rec: &mut Rec, p: &[u8], t: &mut RecTally, resuming: bool) -> Option<bool> {
    if let Some(i) = TOKEN.find(p) {
        rec.token = String::from_utf8_lossy(string_after(p, i + TOKEN.needle().len())).into_owned();
    }
    if !resuming {
        return None;
    }
    let ok = RECOVERED.find(p).is_some();
    rec.dropped_at = None;
    if ok {
        t.resumed += 1;
    } else {
        t.resume_failed += 1;
    }
    t.last_resume = crate::now_nanos();
    Some(ok)
}

/// Any push frame (a notice too): the last processed, where a resume continues from.
pub fn processed(rec: &mut Rec, p: &[u8]) {
    if let Some(id) = p.strip_prefix(MESSAGE_ID) {
        rec.last = String::from_utf8_lossy(string_after(id, 0)).into_owned();
    }
}

/// A push frame of code 200: remember its messageId, check its sequence number.
pub fn on_message(rec: &mut Rec, p: &[u8], t: &mut RecTally) {
    processed(rec, p);
    let Some(i) = SEQ.find(p) else { return };
    let digits = &p[i + SEQ.needle().len()..];
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'));
    match rec.next_seq {
        Some(want) if n == want => {}
        Some(want) if n > want => t.gaps += 1,
        Some(_) => t.dups += 1,
        None => {}
    }
    rec.next_seq = Some(rec.next_seq.map_or(n + 1, |w| w.max(n + 1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_tokens_last_ids_and_sequences() {
        let (mut r, mut t) = (Rec::default(), RecTally::default());
        assert_eq!(path("s", &r), "/ws?systemId=s&recover=1");
        let hello = br#"{"code":0,"msg":"success","data":{"clientId":"c","resumeToken":"tok","recovered":false}}"#;
        assert_eq!(on_connect_frame(&mut r, hello, &mut t, false), None);
        assert_eq!(r.token, "tok");
        for (id, s) in [("a", 0), ("b", 1), ("d", 3), ("d", 3), ("e", 4)] {
            let f = format!(r#"{{"messageId":"{id}","sendUserId":"","code":200,"msg":"","data":{{"t":1,"s":{s}}}}}"#);
            on_message(&mut r, f.as_bytes(), &mut t);
        }
        assert_eq!((t.gaps, t.dups, r.last.as_str()), (1, 1, "e"));
        assert_eq!(path("s", &r), "/ws?systemId=s&recover=1&resume=tok&last=e");
        let back =
            br#"{"code":0,"msg":"success","data":{"clientId":"c","resumeToken":"t2","recovered":true,"missed":0}}"#;
        assert_eq!(on_connect_frame(&mut r, back, &mut t, true), Some(true));
        assert_eq!((r.token.as_str(), t.resumed), ("t2", 1));
    }
}
