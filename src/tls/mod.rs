//! TLS termination (`tls_cert` + `tls_key`): the certificate, its reload on SIGHUP, and the
//! rustls server configuration the shards share. rustls with the *ring* provider: no
//! OpenSSL, no C toolchain beyond what ring needs.
//!
//! The configuration never changes after start; its certificate resolver holds the current
//! certificate behind a lock taken once per handshake (never per message). A reload reads
//! and checks both files first: a bad new pair leaves the old one serving and says why.
//! Connections already open keep their session keys: a reload drops nobody.
//!
//! One connection's TLS state is [`TlsConn`] (`conn.rs`, no sockets); the shard reads and
//! writes its sockets (`shard/tls.rs`).

pub mod conn;

pub use conn::TlsConn;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The shared TLS side of a server.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    resolver: Arc<Resolver>,
}

#[derive(Debug)]
struct Resolver {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

impl Tls {
    /// Loads `cert` (PEM chain) and `key` (PEM private key); the error names the file and
    /// what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = load_pair(cert, key, &provider)?;
        let resolver = Arc::new(Resolver {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider: provider.clone(),
            current: RwLock::new(Arc::new(first)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { config: Arc::new(config), resolver })
    }

    /// Reads the certificate and key files again; on success new handshakes use them, on
    /// failure the old pair stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let r = &self.resolver;
        let pair = load_pair(&r.cert, &r.key, &r.provider)?;
        let mut current = r.current.write().map_err(|_| "TLS: certificate lock poisoned".to_string())?;
        *current = Arc::new(pair);
        Ok(())
    }

    /// The DER of the certificate now served (first of the chain), for tests and logs.
    pub fn current_cert(&self) -> Option<Vec<u8>> {
        let c = self.resolver.current.read().ok()?;
        c.cert.first().map(|d| d.as_ref().to_vec())
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert {}: no CERTIFICATE in the file", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let signing = provider.key_provider.load_private_key(der).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        // The key type cannot tell its public half: nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(e) => Err(format!("tls_cert and tls_key do not belong together: {e}")),
    }
}
