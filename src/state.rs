//! What a single node keeps across restarts in `state_dir`: the registered systems, the node
//! id, and (written at a graceful shutdown only) the recoverable sessions, in one file
//! (`state.json`, JSON with a format name and a version number). Written atomically — a
//! temporary file in the same directory, fsync, rename over the old one, fsync of the
//! directory — so a crash at any moment leaves the old state or the new one, never a mix. Read
//! once at start; a file that cannot be read, is not ours or has a version this build does not
//! know is set aside (renamed `state.json.unreadable`), logged, and the node starts clean.
//!
//! Version 2 added `nodeId` and `sessions`; a version 1 file (systems only) still reads.
//!
//! Pure file handling: the hub decides when to write (after each `register`, at start and at
//! shutdown), `crate::restore` what a start makes of what was read.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside `state_dir`.
pub const FILE: &str = "state.json";
/// The `format` every state file names.
pub const FORMAT: &str = "roomcast-state";
/// The version this build writes (and the newest it reads).
pub const VERSION: u64 = 2;
/// The oldest version this build reads.
pub const OLDEST: u64 = 1;

/// What is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Registered systems, in the order they were registered.
    pub systems: Vec<String>,
    /// The node id the sessions' clientIds carry (8 hex digits); a start without its own
    /// `node_id` takes it, so the clientIds stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Unix time (ms) the sessions were written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_ms: u64,
    /// The recoverable sessions at a graceful shutdown (none otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Session>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A recoverable session as written at shutdown: everything its client needs to resume it on
/// the next start, and what the index knew of it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub client_id: String,
    /// The current resume token's secret (32 hex digits). The file holds live resume secrets:
    /// it is written readable by its owner only.
    pub secret: String,
    pub system: String,
    /// Its user (connect token `sub`, or the first bind naming one), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The `userId` and `extend` of its last bind (what online lists show).
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub extend: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Unix time (ms) it lost its connection (the shutdown, for one connected then).
    pub detached_ms: u64,
    /// The address it counts against (`max_connections_per_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
    /// A resume from before its first frame (no `last`) can still be served.
    #[serde(default)]
    pub from_start: bool,
    /// The payload of the frame just before `frames` (acknowledged): a resume naming it gets
    /// them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<Payload>,
    /// The payloads (JSON text) of the push frames it may still owe its client, in order.
    #[serde(default)]
    pub frames: Vec<Payload>,
}

/// Without the secret: a resume secret is never logged.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("system", &self.system)
            .field("groups", &self.groups)
            .field("detached_ms", &self.detached_ms)
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

/// A frame's payload, kept as the JSON text it is (read back checked to be JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(pub Box<serde_json::value::RawValue>);

impl Payload {
    /// `text` if it is JSON (a push frame's payload always is).
    pub fn new(text: &[u8]) -> Option<Payload> {
        let s = std::str::from_utf8(text).ok()?;
        serde_json::value::RawValue::from_string(s.to_owned()).ok().map(Payload)
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Payload {}

/// The file: the state with its format and version beside its own fields. Written through
/// `flatten`; read as the header first and then as a [`State`] alone (which passes over the two
/// header fields), since `flatten` cannot read the frames' raw JSON back.
#[derive(Serialize)]
struct OnDisk<'a> {
    format: &'a str,
    version: u64,
    #[serde(flatten)]
    state: &'a State,
}

/// What a start found in `state_dir`.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No state file: a first start (or a state_dir that was emptied).
    Nothing,
    /// The last run's state.
    State(State),
    /// A file that is not a state this build can read (why); it was set aside.
    Unusable(String),
}

fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Makes sure `dir` exists (created if missing) and a state can be written there: checked at
/// start, so a wrong `state_dir` is an error then, not a lost state at shutdown.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("state_dir {}: cannot create it: {e}", dir.display()))?;
    let probe = dir.join(".roomcast-write-check");
    let written = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
    written.map_err(|e| format!("state_dir {}: cannot write there: {e}", dir.display()))
}

/// Reads the state kept in `dir`; an unusable file is renamed aside (see the module docs).
pub fn read(dir: &Path) -> Found {
    let path = file(dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Found::Nothing,
        Err(e) => return Found::Unusable(format!("cannot read {}: {e}", path.display())),
    };
    match parse(&text) {
        Ok(state) => Found::State(state),
        Err(why) => {
            let aside = dir.join(format!("{FILE}.unreadable"));
            let moved = match std::fs::rename(&path, &aside) {
                Ok(()) => format!("; kept as {}", aside.display()),
                Err(e) => format!("; could not set it aside: {e}"),
            };
            Found::Unusable(format!("{}: {why}{moved}", path.display()))
        }
    }
}

/// A state file's contents, checked for its format and version.
fn parse(text: &[u8]) -> Result<State, String> {
    #[derive(Deserialize)]
    struct Head {
        format: Option<String>,
        version: Option<u64>,
    }
    let head: Head = serde_json::from_slice(text).map_err(|e| format!("not a state file ({e})"))?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(format!("not a state file (its format is not \"{FORMAT}\")"));
    }
    match head.version {
        Some(v) if (OLDEST..=VERSION).contains(&v) => {}
        Some(v) => return Err(format!("state version {v}: this build reads versions {OLDEST} to {VERSION}")),
        None => return Err("a state file without a version".into()),
    }
    serde_json::from_slice(text).map_err(|e| format!("a damaged state file ({e})"))
}

/// Writes `state` to `dir` atomically (see the module docs).
pub fn write(dir: &Path, state: &State) -> io::Result<()> {
    let body = serde_json::to_vec(&OnDisk { format: FORMAT, version: VERSION, state })?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    {
        // Owner only: the sessions' resume secrets are in it.
        use std::os::unix::fs::OpenOptionsExt;
        // A new file, so the mode holds (a leftover one may have had another, or be a link).
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file(dir))?;
    // The rename itself is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("roomcast-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        check_dir(&d).unwrap();
        d
    }

    #[test]
    fn a_written_state_reads_back() {
        let d = dir("roundtrip");
        assert_eq!(read(&d), Found::Nothing);
        let s = State { systems: vec!["a".into(), "日本".into()], ..State::default() };
        write(&d, &s).unwrap();
        assert_eq!(read(&d), Found::State(s));
        assert!(!d.join(format!(".{FILE}.tmp")).exists());
    }

    #[test]
    fn sessions_and_their_frames_read_back_as_written() {
        let d = dir("sessions");
        let frame = |t: &str| Payload::new(t.as_bytes()).unwrap();
        let session = Session {
            client_id: "0a0b0c0d-1".into(),
            secret: "ab".repeat(16),
            system: "s".into(),
            user: Some("u1".into()),
            groups: vec!["g".into()],
            detached_ms: 17,
            ip: Some("127.0.0.1".parse().unwrap()),
            acked: Some(frame(r#"{"type":"m","data":{"messageId":"m0"}}"#)),
            frames: vec![frame(r#"{"type":"m","data":{"messageId":"m1","text":"日本 \"q\""}}"#)],
            ..Session::default()
        };
        let s = State {
            systems: vec!["s".into()],
            node_id: Some("0a0b0c0d".into()),
            written_ms: 9,
            sessions: vec![session],
        };
        write(&d, &s).unwrap();
        assert_eq!(read(&d), Found::State(s));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.join(FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_version_1_file_reads_as_systems_only() {
        let d = dir("v1");
        std::fs::write(d.join(FILE), br#"{"format":"roomcast-state","version":1,"systems":["a","b"]}"#).unwrap();
        assert_eq!(read(&d), Found::State(State { systems: vec!["a".into(), "b".into()], ..State::default() }));
    }

    #[test]
    fn what_is_not_our_state_is_set_aside() {
        for (body, why) in [
            (&b"garbage \x00\xff"[..], "not a state file"),
            (br#"{"systems":["a"]}"#, "its format is not"),
            (br#"{"format":"roomcast-state","version":99,"systems":[]}"#, "state version 99"),
            (br#"{"format":"roomcast-state","version":1,"systems":"a"}"#, "damaged"),
        ] {
            let d = dir("bad");
            std::fs::write(d.join(FILE), body).unwrap();
            match read(&d) {
                Found::Unusable(msg) => assert!(msg.contains(why), "{msg}"),
                other => panic!("{other:?}"),
            }
            assert!(!d.join(FILE).exists() && d.join(format!("{FILE}.unreadable")).exists());
            assert_eq!(read(&d), Found::Nothing, "a clean start after");
        }
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_refused() {
        let f = std::env::temp_dir().join(format!("roomcast-state-file-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        assert!(check_dir(&f.join("sub")).unwrap_err().contains("cannot create"));
    }
}
