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

    /// Whether a browser from `origin` may connect.
    pub fn allows(&self, origin: &str) -> bool {
        let o = origin.trim().to_ascii_lowercase();
        let Some((scheme, hostport)) = o.split_once("://") else { return false };
        let host = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => hostport,
        };
        self.0.iter().any(|r| match r {
            Rule::Exact(e) => *e == o,
            Rule::Sub(s, suffix) => {
                s.as_deref().is_none_or(|s| s == scheme) && host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }
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
        for bad in ["", "example.com", "*", "*example.com", "https://*.a/b", "https://a.com/path"] {
            assert!(Origins::parse(bad).is_err(), "{bad:?}");
        }
    }
}
