//! Files the server serves as they are, embedded at build time: the browser client
//! `roomcast.js` (`clients/js/dist/roomcast.js`, built from `clients/js/src/roomcast.mjs`), with
//! its entity tag and the answer to a conditional request.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The browser client, as `GET /roomcast.js` serves it.
pub const ROOMCAST_JS: &str = include_str!("../../clients/js/dist/roomcast.js");

/// How long a browser may use its copy before asking again (with `If-None-Match`).
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// The strong entity tag of [`ROOMCAST_JS`]: the first 20 hex digits of its SHA-256, quoted.
pub fn roomcast_js_etag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let digest = Sha256::digest(ROOMCAST_JS.as_bytes());
        format!("\"{}\"", &data_encoding::HEXLOWER.encode(&digest)[..20])
    })
}

/// Whether an `If-None-Match` value names `etag` (or is `*`): the copy the client has is
/// current, and the answer is 304 without a body. Weak tags (`W/"…"`) compare by their value
/// (RFC 9110 §13.1.2: `If-None-Match` uses the weak comparison).
pub fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(v) = if_none_match else { return false };
    v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_quoted_hex_of_the_content() {
        let t = roomcast_js_etag();
        assert_eq!(t.len(), 22);
        assert!(t.starts_with('"') && t.ends_with('"'));
        assert!(t[1..21].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ROOMCAST_JS.contains("Roomcast"), "the embedded file is the client");
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let tag = "\"abc\"";
        assert!(not_modified(Some("\"abc\""), tag));
        assert!(not_modified(Some("\"x\", W/\"abc\""), tag));
        assert!(not_modified(Some("*"), tag));
        assert!(!not_modified(Some("\"abd\""), tag));
        assert!(!not_modified(Some("abc"), tag), "unquoted is another tag");
        assert!(!not_modified(Some(""), tag));
        assert!(!not_modified(None, tag));
    }
}
