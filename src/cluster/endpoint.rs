//! Where the nodes find Redis: one address (`redis://`, `rediss://`), or the master that a set
//! of Sentinels names (`redis+sentinel://`, `rediss+sentinel://`), asked again at every
//! (re)connect so a failover is followed.
//!
//! The URL parsing is pure; connecting is the redis crate's (its Sentinel client checks the
//! named master's `ROLE` before handing it out).

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsCertificates, TlsMode};

/// Sentinel's default port, for hosts given without one.
const SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://[user:password@]host[:port][,host[:port]…]/master[/db]`.
#[derive(Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the Sentinels and to the master.
    pub tls: bool,
    pub username: Option<String>,
    /// The master's password (Sentinels are asked without one).
    pub password: Option<String>,
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
}

/// `None`: not a Sentinel URL (a plain one, for the redis crate to read).
pub fn parse_sentinel(url: &str) -> Option<Result<SentinelUrl, String>> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
        (false, r)
    } else {
        (true, url.strip_prefix("rediss+sentinel://")?)
    };
    Some(parse_sentinel_rest(tls, rest).map_err(|e| format!("--redis {}: {e}", redact(url))))
}

fn parse_sentinel_rest(tls: bool, rest: &str) -> Result<SentinelUrl, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => {
            let (u, p) = a.split_once(':').unwrap_or(("", a));
            let non_empty = |s: &str| (!s.is_empty()).then(|| percent_decode(s)).transpose();
            (non_empty(u)?, non_empty(p)?)
        }
    };
    let (hosts, path) = rest.split_once('/').ok_or("no master name: …/<master name>[/db]")?;
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || !port.is_empty() => {
                (host, port.parse::<u16>().map_err(|_| format!("bad Sentinel port in '{h}'"))?)
            }
            _ => (h, SENTINEL_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("an empty Sentinel host".into());
        }
        sentinels.push((host.to_string(), port));
    }
    let (master, db) = match path.split_once('/') {
        Some((m, db)) if !db.is_empty() => (m, db.parse::<i64>().map_err(|_| format!("bad db '{db}'"))?),
        Some((m, _)) => (m, 0),
        None => (path, 0),
    };
    if master.is_empty() {
        return Err("no master name: …/<master name>[/db]".into());
    }
    Ok(SentinelUrl { tls, username, password, sentinels, master: percent_decode(master)?, db })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("bad %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".into())
}

use crate::config::redact_password as redact;

/// The Redis a node talks to (one per node: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Endpoint {
    Direct(redis::Client),
    Sentinel(SentinelClient),
}

impl Endpoint {
    /// Checks and prepares `url`; `ca`: PEM roots trusted for TLS instead of the system's.
    pub fn new(url: &str, ca: Option<&[u8]>) -> Result<Endpoint, String> {
        let certs = || TlsCertificates { client_tls: None, root_cert: ca.map(<[u8]>::to_vec) };
        if let Some(s) = parse_sentinel(url) {
            let s = s?;
            let addrs = s.sentinels.iter().map(|(h, p)| match s.tls {
                false => ConnectionAddr::Tcp(h.clone(), *p),
                true => ConnectionAddr::TcpTls { host: h.clone(), port: *p, insecure: false, tls_params: None },
            });
            let mut b = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)
                .map_err(|e| format!("--redis {}: {e}", redact(url)))?
                .set_client_to_redis_db(s.db);
            if let Some(u) = &s.username {
                b = b.set_client_to_redis_username(u);
            }
            if let Some(p) = &s.password {
                b = b.set_client_to_redis_password(p);
            }
            if s.tls {
                b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
                if ca.is_some() {
                    b = b.set_client_to_redis_certificates(certs()).set_client_to_sentinel_certificates(certs());
                }
            }
            return b.build().map(Endpoint::Sentinel).map_err(|e| format!("--redis {}: {e}", redact(url)));
        }
        let bad = |e: redis::RedisError| format!("--redis {}: {e}", redact(url));
        let client = match ca {
            Some(_) if url.starts_with("rediss://") => redis::Client::build_with_tls(url, certs()).map_err(bad)?,
            _ => redis::Client::open(url).map_err(bad)?,
        };
        match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(..) => {}
            ConnectionAddr::TcpTls { insecure: false, .. } => {}
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(format!("--redis {}: #insecure is not supported: give --redis-ca", redact(url)))
            }
            _ => return Err(format!("--redis {}: only redis:// and rediss:// (TCP) are supported", redact(url))),
        }
        Ok(Endpoint::Direct(client))
    }

    /// The master to connect to now (for Sentinel: asked of the Sentinels again).
    pub fn master(&mut self) -> Result<redis::Client, String> {
        match self {
            Endpoint::Direct(c) => Ok(c.clone()),
            Endpoint::Sentinel(s) => s.get_client().map_err(|e| format!("Sentinel: {e}")),
        }
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self, Endpoint::Sentinel(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let u = parse_sentinel("redis+sentinel://:pw@a:1,b,[::1]:3/mymaster/2").unwrap().unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                tls: false,
                username: None,
                password: Some("pw".into()),
                sentinels: vec![("a".into(), 1), ("b".into(), SENTINEL_PORT), ("::1".into(), 3)],
                master: "mymaster".into(),
                db: 2,
            }
        );
        let u = parse_sentinel("rediss+sentinel://u:p%40ss@h:26380/m").unwrap().unwrap();
        assert!(u.tls);
        assert_eq!((u.username.as_deref(), u.password.as_deref(), u.db), (Some("u"), Some("p@ss"), 0));
        assert!(parse_sentinel("redis://h:6379").is_none());
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://,h/m",
            "redis+sentinel://h/m/x",
        ] {
            assert!(parse_sentinel(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://user:secret@h:1"), "redis://user:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        let e = parse_sentinel("redis+sentinel://:secret@h:x/m").unwrap().unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn unsupported_forms_are_refused() {
        assert!(Endpoint::new("redis+unix:///tmp/r.sock", None).is_err());
        assert!(Endpoint::new("rediss://h:1/#insecure", None).is_err());
        assert!(Endpoint::new("redis://h:1", None).is_ok());
        assert!(Endpoint::new("redis+sentinel://h:1/m", None).unwrap().is_sentinel());
    }
}
