//! What a single node keeps across restarts in `state_dir`: the registered systems, in one
//! file (`state.json`, JSON with a format name and a version number). Written atomically — a
//! temporary file in the same directory, fsync, rename over the old one, fsync of the
//! directory — so a crash at any moment leaves the old state or the new one, never a mix. Read
//! once at start; a file that cannot be read, is not ours or has a version this build does not
//! know is set aside (renamed `state.json.unreadable`), logged, and the node starts clean.
//!
//! Pure file handling: the hub decides when to write (after each `register`, and at shutdown).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside `state_dir`.
pub const FILE: &str = "state.json";
/// The `format` every state file names.
pub const FORMAT: &str = "roomcast-state";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// What is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Registered systems, in the order they were registered.
    pub systems: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: String,
    version: u64,
    #[serde(flatten)]
    state: State,
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
        Some(VERSION) => {}
        Some(v) => return Err(format!("state version {v}: this build reads version {VERSION}")),
        None => return Err("a state file without a version".into()),
    }
    let on_disk: OnDisk = serde_json::from_slice(text).map_err(|e| format!("a damaged state file ({e})"))?;
    Ok(on_disk.state)
}

/// Writes `state` to `dir` atomically (see the module docs).
pub fn write(dir: &Path, state: &State) -> io::Result<()> {
    let body = serde_json::to_vec(&OnDisk { format: FORMAT.into(), version: VERSION, state: state.clone() })?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
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
        let s = State { systems: vec!["a".into(), "日本".into()] };
        write(&d, &s).unwrap();
        assert_eq!(read(&d), Found::State(s));
        assert!(!d.join(format!(".{FILE}.tmp")).exists());
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
