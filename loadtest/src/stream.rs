//! A client socket that is plain TCP or TLS (`--tls`), non-blocking, for the mio loops.
//!
//! TLS uses rustls's buffered client: `write` hands plaintext to rustls (which holds it until
//! the handshake is done) and pushes out whatever ciphertext the socket takes; `read` feeds
//! ciphertext in and returns plaintext; both advance the handshake. The load tester trusts
//! any certificate (it measures servers, it does not authenticate them).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// `--tls`: every connection this process opens speaks TLS.
pub static TLS: AtomicBool = AtomicBool::new(false);

pub struct Stream {
    pub sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Stream {
    /// Wraps `sock`; with `--tls`, starts a TLS client session on it.
    pub fn new(sock: TcpStream) -> Stream {
        let tls = TLS.load(Ordering::Relaxed).then(|| {
            let name = ServerName::try_from("localhost").expect("a valid name");
            Box::new(ClientConnection::new(config(), name).expect("TLS client"))
        });
        Stream { sock, tls }
    }

    /// Sends whatever ciphertext rustls holds; `WouldBlock` leaves the rest for later.
    fn push(&mut self) -> io::Result<()> {
        let Some(t) = self.tls.as_mut() else { return Ok(()) };
        while t.wants_write() {
            match t.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Called on a writable event: what rustls still holds goes out.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        self.push()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.sock.read(buf);
        }
        loop {
            let t = self.tls.as_mut().expect("tls");
            match t.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match t.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    t.process_new_packets().map_err(io::Error::other)?;
                    self.push()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_mut() else { return self.sock.write(buf) };
        let n = t.writer().write(buf)?;
        self.push()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

fn config() -> Arc<ClientConfig> {
    static CFG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        cfg.resumption = rustls::client::Resumption::disabled();
        Arc::new(cfg)
    })
    .clone()
}

/// Accepts any server certificate (signatures are still checked by the provider).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(msg, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(msg, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
