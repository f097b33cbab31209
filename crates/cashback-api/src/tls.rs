//! TLS for the listener (rustls, ring provider), with optional client certificates.
//!
//! [`TlsListener`] is an [`axum::serve::Listener`]: a task accepts TCP connections and runs
//! each TLS handshake in a task of its own (bounded in number and time, so a slow or silent
//! client holds up no one), and hands finished connections to `axum::serve`, which keeps its
//! graceful shutdown. Each connection's [`TlsPeer`] (remote address and the SHA-256 of the
//! client certificate, if one was presented and verified against the client CA) reaches the
//! handlers as `ConnectInfo<TlsPeer>` when the router is served with
//! `into_make_service_with_connect_info::<TlsPeer>()`; the API-key extractors
//! (`crate::auth`) compare it with the certificate bound to the credential.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::sha256_hex;

/// The crypto provider of every TLS configuration of the platform: rustls' `ring`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process's default rustls provider unless one is installed: reqwest's TLS
/// (feature `rustls-no-provider`) uses it, and panics when building a client without one.
/// Every HTTP client constructor of the platform calls this first.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Builds an outbound HTTP client: TLS trusts the system's roots; on a host without any (no
/// `ca-certificates`), it trusts none instead of failing, so `http://` URLs still work and an
/// `https://` one fails per request, as it did before the platform had a TLS client.
pub fn build_client(make: impl Fn() -> reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
    install_default_provider();
    make().build().or_else(|e| {
        tracing::warn!(error = %e, "no system CA certificates: outbound https will fail");
        make().tls_certs_only(Vec::new()).build()
    })
}

/// Where the listener's certificate, key and (optional) client CA come from.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// PEM: the server certificate followed by its intermediates.
    pub cert: &'a Path,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// PEM: the CA certificate(s) that client certificates must chain to. Without it, no client
    /// certificate is asked for.
    pub client_ca: Option<&'a Path>,
}

/// Read every certificate of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// Read the private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no usable private key ({e})", path.display()))
}

/// The SHA-256 of a certificate's DER encoding, lower-case hex: what a credential is bound to
/// (`openssl x509 -noout -fingerprint -sha256` shows the same digest, upper case with colons).
pub fn cert_sha256(cert: &CertificateDer<'_>) -> String {
    sha256_hex(cert.as_ref())
}

/// A fingerprint given by an operator: 64 hex digits, colons allowed; lower-case hex back.
pub fn parse_fingerprint(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The server configuration: TLS 1.2 and 1.3, HTTP/1.1 by ALPN, client certificates asked for
/// but optional when `client_ca` is set (the citizen API needs none; the API-key extractors
/// decide per credential).
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = provider();
    let certs = read_certs(files.cert)?;
    let key = read_key(files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} / {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Who is at the other end of a TLS connection.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub remote: SocketAddr,
    /// SHA-256 (lower-case hex) of the verified client certificate, if one was presented.
    pub client_cert_sha256: Option<Arc<str>>,
}

impl Connected<IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Limits of the handshake stage.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// A handshake not finished by then is dropped.
    pub timeout: Duration,
    /// Handshakes in progress at once; further connections wait in the kernel's backlog.
    pub concurrent: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), concurrent: 1024 }
    }
}

/// A TLS listener for `axum::serve` (see the module documentation).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>, limits: HandshakeLimits) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), limits, tx));
        Ok(Self { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    limits: HandshakeLimits,
    tx: mpsc::Sender<(TlsStream<TcpStream>, TlsPeer)>,
) {
    let slots = Arc::new(Semaphore::new(limits.concurrent.max(1)));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = tx.closed() => return,
        };
        let (stream, remote) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, as axum::serve does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let client_cert_sha256 =
                        tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::from(cert_sha256(c)));
                    let _ = tx.send((tls, TlsPeer { remote, client_cert_sha256 })).await;
                }
                Ok(Err(e)) => {
                    metrics::counter!("cashback_tls_handshake_failures_total", "reason" => "error").increment(1);
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics::counter!("cashback_tls_handshake_failures_total", "reason" => "timeout").increment(1);
                    tracing::debug!(%remote, "TLS handshake timed out");
                }
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (cannot happen while this listener holds the receiver).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer { remote: self.local, client_cert_sha256: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let h = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&h), Some("ab".repeat(32)));
        assert_eq!(parse_fingerprint(&"0".repeat(64)), Some("0".repeat(64)));
        assert_eq!(parse_fingerprint(&"0".repeat(63)), None);
        assert_eq!(parse_fingerprint(&"g".repeat(64)), None);
    }
}
