//! Where the nodes find Redis: one address (`redis://`, `rediss://`), the master that a set
//! of Sentinels names (`redis+sentinel://`, `rediss+sentinel://`), asked again at every
//! (re)connect so a failover is followed, or a Redis Cluster's seed nodes
//! (`redis+cluster://`, `rediss+cluster://`), from which the masters are learnt
//! ([`super::sharded`]).
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

/// A parsed `redis+cluster://[user:password@]host[:port][,host[:port]…]`: seed nodes of a
/// Redis Cluster (any of them answers with the whole cluster's slot map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `rediss+cluster://`: TLS to every node.
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub seeds: Vec<(String, u16)>,
}

/// Redis's default port, for cluster seeds given without one.
const REDIS_PORT: u16 = 6379;

/// Whether `url` names a Redis Cluster (its keys then carry hash tags: `keys::Keys`).
pub fn is_cluster(url: &str) -> bool {
    url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://")
}

/// `None`: not a Redis Cluster URL.
pub fn parse_cluster(url: &str) -> Option<Result<ClusterUrl, String>> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+cluster://") {
        (false, r)
    } else {
        (true, url.strip_prefix("rediss+cluster://")?)
    };
    let parsed = (|| {
        let (username, password, rest) = auth(rest)?;
        // A Redis Cluster has database 0 only.
        let hosts = match rest.split_once('/') {
            Some((h, "" | "0")) | Some((h, "0/")) => h,
            Some(_) => return Err("a Redis Cluster has no databases but 0: no /db in the URL".to_string()),
            None => rest,
        };
        Ok(ClusterUrl { tls, username, password, seeds: hosts_list(hosts, REDIS_PORT, "cluster")? })
    })();
    Some(parsed.map_err(|e| format!("--redis {}: {e}", redact(url))))
}

/// `[user:password@]rest`: the user, the password (each `None` if empty) and the rest.
fn auth(rest: &str) -> Result<(Option<String>, Option<String>, &str), String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let Some(a) = auth else { return Ok((None, None, rest)) };
    let (u, p) = a.split_once(':').unwrap_or(("", a));
    let non_empty = |s: &str| (!s.is_empty()).then(|| percent_decode(s)).transpose();
    Ok((non_empty(u)?, non_empty(p)?, rest))
}

/// `host[:port],…` (IPv6 in brackets); `what` names them in errors.
fn hosts_list(hosts: &str, default_port: u16, what: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || !port.is_empty() => {
                (host, port.parse::<u16>().map_err(|_| format!("bad {what} port in '{h}'"))?)
            }
            _ => (h, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("an empty {what} host"));
        }
        out.push((host.to_string(), port));
    }
    Ok(out)
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
    let (username, password, rest) = auth(rest)?;
    let (hosts, path) = rest.split_once('/').ok_or("no master name: …/<master name>[/db]")?;
    let sentinels = hosts_list(hosts, SENTINEL_PORT, "Sentinel")?;
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
    /// A Redis Cluster, reached through its seeds (`super::sharded`).
    Cluster(super::sharded::Nodes),
}

impl Endpoint {
    /// Checks and prepares `url`; `ca`: PEM roots trusted for TLS instead of the system's.
    pub fn new(url: &str, ca: Option<&[u8]>) -> Result<Endpoint, String> {
        let certs = || TlsCertificates { client_tls: None, root_cert: ca.map(<[u8]>::to_vec) };
        if let Some(c) = parse_cluster(url) {
            return super::sharded::Nodes::new(c?, ca)
                .map(Endpoint::Cluster)
                .map_err(|e| format!("--redis {}: {e}", redact(url)));
        }
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

    /// The master to connect to now (for Sentinel: asked of the Sentinels again; a Redis
    /// Cluster has several: `Endpoint::Cluster` connects through `sharded::Sharded`).
    pub fn master(&mut self) -> Result<redis::Client, String> {
        match self {
            Endpoint::Direct(c) => Ok(c.clone()),
            Endpoint::Sentinel(s) => s.get_client().map_err(|e| format!("Sentinel: {e}")),
            Endpoint::Cluster(_) => Err("a Redis Cluster has no one master".into()),
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
    fn cluster_urls() {
        let u = parse_cluster("redis+cluster://:pw@a:7000,b,[::1]:7002").unwrap().unwrap();
        assert_eq!(
            u,
            ClusterUrl {
                tls: false,
                username: None,
                password: Some("pw".into()),
                seeds: vec![("a".into(), 7000), ("b".into(), REDIS_PORT), ("::1".into(), 7002)],
            }
        );
        let u = parse_cluster("rediss+cluster://u:p%40ss@h:7000/").unwrap().unwrap();
        assert!(u.tls && is_cluster("rediss+cluster://h"));
        assert_eq!((u.username.as_deref(), u.password.as_deref()), (Some("u"), Some("p@ss")));
        assert!(parse_cluster("redis://h:6379").is_none() && !is_cluster("redis://h"));
        for bad in ["redis+cluster://h:x", "redis+cluster://,h", "redis+cluster://h/2", "redis+cluster://"] {
            assert!(parse_cluster(bad).unwrap().is_err(), "{bad}");
        }
        let e = parse_cluster("redis+cluster://:secret@h:x").unwrap().unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(matches!(Endpoint::new("redis+cluster://h:1,h:2", None), Ok(Endpoint::Cluster(_))));
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
