//! The pub/sub connection to Redis, plain or TLS, split in two: the subscriber thread reads
//! it, the broker writes (UN)SUBSCRIBE on it.
//!
//! A TLS session is one state machine for both directions, so its halves share it behind a
//! mutex, held only while bytes move between it and memory: the reader blocks on the socket
//! without it, and a write (a few hundred bytes, to a Redis that reads at once) is bounded by
//! the socket's write timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::ConnectionAddr;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

pub struct Shared {
    sock: TcpStream,
    tls: Mutex<ClientConnection>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reading half (for the subscriber).
pub enum Reader {
    Plain(TcpStream),
    Tls { shared: Arc<Shared>, raw: Box<[u8]>, plain: Vec<u8>, at: usize },
}

/// The writing half (kept by the broker).
pub enum Writer {
    Plain(TcpStream),
    Tls(Arc<Shared>),
}

/// The rustls settings for TLS to Redis: `ca` (PEM) or the system's roots.
pub fn client_config(ca: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for c in rustls::pki_types::pem::PemObject::pem_slice_iter(pem) {
                let c: rustls::pki_types::CertificateDer = c.map_err(|e| format!("--redis-ca: {e}"))?;
                roots.add(c).map_err(|e| format!("--redis-ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("--redis-ca: no certificate in the file".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Opens a pub/sub connection to the server `client` points at (TLS if its URL says so).
pub fn open(client: &redis::Client, tls: &Arc<ClientConfig>, timeout: Duration) -> Result<(Reader, Writer), String> {
    let (host, port, secure) = match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, p) => (h.clone(), *p, false),
        ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
        _ => return Err("only TCP addresses are supported".into()),
    };
    let e = |e: io::Error| e.to_string();
    let addr = (host.as_str(), port).to_socket_addrs().map_err(e)?.next().ok_or("no address")?;
    let sock = TcpStream::connect_timeout(&addr, timeout).map_err(e)?;
    let _ = sock.set_nodelay(true);
    sock.set_write_timeout(Some(timeout)).map_err(e)?;
    if !secure {
        return Ok((Reader::Plain(sock.try_clone().map_err(e)?), Writer::Plain(sock)));
    }
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("TLS name {host}: {e}"))?;
    let mut conn = ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout)).map_err(e)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut &sock).map_err(|err| format!("TLS handshake with {host}:{port}: {err}"))?;
    }
    sock.set_read_timeout(None).map_err(e)?;
    let shared = Arc::new(Shared { sock, tls: Mutex::new(conn) });
    let reader = Reader::Tls { shared: shared.clone(), raw: vec![0; 16 << 10].into(), plain: Vec::new(), at: 0 };
    Ok((reader, Writer::Tls(shared)))
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let (shared, raw, plain, at) = match self {
            Reader::Plain(s) => return s.read(out),
            Reader::Tls { shared, raw, plain, at } => (shared, raw, plain, at),
        };
        loop {
            if *at < plain.len() {
                let n = out.len().min(plain.len() - *at);
                out[..n].copy_from_slice(&plain[*at..*at + n]);
                *at += n;
                return Ok(n);
            }
            plain.clear();
            *at = 0;
            let n = (&shared.sock).read(raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut c = shared.lock();
            let mut input = &raw[..n];
            while !input.is_empty() {
                c.read_tls(&mut input)?;
                let state = c.process_new_packets().map_err(io::Error::other)?;
                // Moved out at once, so rustls's own plaintext buffer never fills.
                match c.reader().read_to_end(plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if state.peer_has_closed() && plain.is_empty() {
                    return Ok(0);
                }
            }
            while c.wants_write() {
                c.write_tls(&mut &shared.sock)?;
            }
        }
    }
}

impl Writer {
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(s) => s.write_all(data),
            Writer::Tls(shared) => {
                let mut c = shared.lock();
                c.writer().write_all(data)?;
                while c.wants_write() {
                    c.write_tls(&mut &shared.sock)?;
                }
                Ok(())
            }
        }
    }

    /// Ends both halves (the reader sees an error or the end).
    pub fn shutdown(&self) {
        let s = match self {
            Writer::Plain(s) => s,
            Writer::Tls(shared) => &shared.sock,
        };
        let _ = s.shutdown(Shutdown::Both);
    }
}
