//! `serve --tls-cert/--tls-key`: the server terminates TLS itself, from PEM files as a
//! Kubernetes Secret (or cert-manager) mounts them, and takes a renewed certificate without a
//! restart: the files are read again every few seconds and a new pair that loads serves the
//! next handshakes (a pair that does not load is logged and the old one kept).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate files and the pair they held when last read.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

#[derive(Debug)]
struct Current {
    pair: RwLock<(Arc<CertifiedKey>, blake3::Hash)>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.read().unwrap_or_else(|p| p.into_inner()).0.clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The pair in the two files, with a digest of their bytes to tell a change.
fn read_pair(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, blake3::Hash)> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate chain: {e:?}", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)", cert.display());
    }
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow::anyhow!("{} is not a PEM private key: {e:?}", key.display()))?;
    let signing = provider().key_provider.load_private_key(der).map_err(|e| anyhow::anyhow!("{}: unusable private key: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| anyhow::anyhow!("{} and {} are not a pair: {e}", cert.display(), key.display()))?;
    let mut digest = blake3::Hasher::new();
    digest.update(&cert_pem).update(&key_pem);
    Ok((Arc::new(pair), digest.finalize()))
}

impl Tls {
    /// Reads the pair; a missing, malformed or mismatched file fails naming it.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let current = Arc::new(Current { pair: RwLock::new(read_pair(cert, key)?) });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // HTTP/1.1 only: the header-read timeout and connection bounds are HTTP/1's.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), current, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; a changed pair that loads serves from now on. Returns whether
    /// it changed.
    pub fn reload(&self) -> bool {
        let known = self.current.pair.read().unwrap_or_else(|p| p.into_inner()).1;
        match read_pair(&self.cert, &self.key) {
            Ok(pair) if pair.1 != known => {
                *self.current.pair.write().unwrap_or_else(|p| p.into_inner()) = pair;
                tracing::info!("TLS certificate {} reloaded", self.cert.display());
                true
            }
            Ok(_) => false,
            // Mid-rotation (one file replaced, not yet the other) or a bad file: keep serving.
            Err(e) => {
                tracing::warn!("keeping the current TLS certificate: {e:#}");
                false
            }
        }
    }

    /// Looks at the files every `every` for as long as the server runs.
    pub async fn watch(self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
        }
    }
}
