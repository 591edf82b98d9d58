//! Which browser origins may open a WebSocket (`allowed_origins`), pure.
//!
//! An entry is an exact origin (`https://app.example.com`, `http://localhost:3000`), or a
//! pattern `*.example.com` (any scheme and port, any subdomain of example.com), or
//! `https://*.example.com` (that scheme only). Matching ignores ASCII case. A handshake
//! without an `Origin` header is not a browser's and is let through.

/// The allowed origins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(Vec<Rule>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Exact(String),
    /// (scheme or any, host suffix including the leading dot).
    Sub(Option<String>, String),
}

impl Origins {
    /// Parses a comma-separated list; `Err` names a bad entry.
    pub fn parse(list: &str) -> Result<Origins, String> {
        let mut rules = Vec::new();
        for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let e = e.to_ascii_lowercase();
            let (scheme, rest) = match e.split_once("://") {
                Some((s, r)) => (Some(s.to_string()), r.to_string()),
                None => (None, e.clone()),
            };
            if let Some(suffix) = rest.strip_prefix('*') {
                if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains(['*', '/']) {
                    return Err(format!("allowed_origins: '{e}': a pattern is *.domain or scheme://*.domain"));
                }
                rules.push(Rule::Sub(scheme, suffix.to_string()));
            } else {
                if scheme.is_none() || rest.is_empty() || rest.contains(['*', '/']) {
                    return Err(format!("allowed_origins: '{e}': give scheme://host[:port] or a *.domain pattern"));
                }
                rules.push(Rule::Exact(e));
            }
        }
        if rules.is_empty() {
            return Err("allowed_origins is empty".into());
        }
        Ok(Origins(rules))
    }

    /// Whether a browser from `origin` may connect. Only an origin as browsers send it
    /// (RFC 6454: `scheme://host[:port]`, nothing else) can match: no path, query, fragment
    /// or user info, which would otherwise let `https://evil.io#.example.com` pass
    /// `*.example.com`.
    pub fn allows(&self, origin: &str) -> bool {
        let o = origin.trim().to_ascii_lowercase();
        let Some((scheme, host)) = split_origin(&o) else { return false };
        self.0.iter().any(|r| match r {
            Rule::Exact(e) => *e == o,
            Rule::Sub(s, suffix) => {
                s.as_deref().is_none_or(|s| s == scheme) && host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }
}

/// `scheme://host[:port]` as (scheme, host), or `None` for anything else: a scheme of letters,
/// digits, `+-.`; a host of DNS labels (letters, digits, `-`, `_`, dot-separated, none empty)
/// or a bracketed IPv6 address; a port of 1 to 5 digits.
fn split_origin(o: &str) -> Option<(&str, &str)> {
    let (scheme, hostport) = o.split_once("://")?;
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return None;
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => (h, Some(p)),
        _ => (hostport, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let ipv6 = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match ipv6 {
        Some(a) => !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        None => {
            !host.is_empty()
                && host
                    .split('.')
                    .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        }
    };
    host_ok.then_some((scheme, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_and_patterns() {
        let o =
            Origins::parse("https://app.example.com, http://localhost:3000, *.Good.org, https://*.secure.io").unwrap();
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!o.allows("http://app.example.com"), "another scheme");
        assert!(!o.allows("https://app.example.com:8443"), "another port");
        assert!(o.allows("http://localhost:3000"));
        assert!(o.allows("http://a.good.org"));
        assert!(o.allows("https://x.y.good.org:8080"));
        assert!(!o.allows("https://good.org"), "the bare domain is not a subdomain");
        assert!(!o.allows("https://evilgood.org"));
        assert!(!o.allows("https://good.org.evil.com"));
        assert!(o.allows("https://a.secure.io"));
        assert!(!o.allows("http://a.secure.io"));
        assert!(!o.allows("null"));
        assert!(o.allows("https://a.secure.io:443"));
        assert!(Origins::parse("http://[::1]:8080").unwrap().allows("http://[::1]:8080"));
    }

    /// Security review, low: these passed `*.example.com`. Browsers never send them, but an
    /// origin is `scheme://host[:port]` and nothing else.
    #[test]
    fn only_plain_origins_match_a_pattern() {
        let o = Origins::parse("*.example.com").unwrap();
        assert!(o.allows("https://a.example.com") && o.allows("http://a.example.com:8080"));
        for bad in [
            "https://evil.io#.example.com",
            "https://evil.io/.example.com",
            "https://evil.io?.example.com",
            "https://user@a.example.com",
            "https://evil.io:1@a.example.com",
            "https://a.example.com:",
            "https://a.example.com:123456",
            "https://a..example.com",
            "https://a example.com",
            "://a.example.com",
            "1https://a.example.com",
        ] {
            assert!(!o.allows(bad), "{bad}");
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["", "example.com", "*", "*example.com", "https://*.a/b", "https://a.com/path"] {
            assert!(Origins::parse(bad).is_err(), "{bad:?}");
        }
    }
}
