//! Certificates for the TLS tests (rcgen, ECDSA P-256): a CA, a server certificate for
//! 127.0.0.1 and localhost, and client certificates, written as PEM files in a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// A certificate authority and the server's certificate it signed.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub sha256: String,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl Pki {
    /// A new CA named `name` in `dir` (created), with a server certificate.
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).expect("pki directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        let ca_pem = ca.pem();
        let ca_path = dir.join(format!("{name}-ca.pem"));
        write(&ca_path, &ca_pem);
        let issuer = Issuer::new(params, key);

        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        sp.distinguished_name.push(DnType::CommonName, "cashback test server");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let skey = KeyPair::generate().expect("server key");
        let scert = sp.signed_by(&skey, &issuer).expect("server certificate");
        let (server_cert, server_key) =
            (dir.join(format!("{name}-server.pem")), dir.join(format!("{name}-server.key")));
        write(&server_cert, &scert.pem());
        write(&server_key, &skey.serialize_pem());
        Pki { dir: dir.to_owned(), ca_pem, ca_path, server_cert, server_key, issuer }
    }

    /// A client certificate for `cn` signed by this CA.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = p.signed_by(&key, &self.issuer).expect("client certificate");
        let sha256: String = Sha256::digest(cert.der()).iter().map(|b| format!("{b:02x}")).collect();
        let (cert_path, key_path) = (self.dir.join(format!("{cn}.pem")), self.dir.join(format!("{cn}.key")));
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        write(&cert_path, &cert_pem);
        write(&key_path, &key_pem);
        ClientCert { cert_pem, key_pem, cert_path, key_path, sha256 }
    }
}

/// An HTTPS client trusting only `ca_pem`, presenting `identity` when given.
pub fn https_client(ca_pem: &str, identity: Option<&ClientCert>) -> reqwest::Client {
    cashback_api::tls::install_default_provider();
    let roots = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("CA bundle");
    let mut b = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).tls_certs_only(roots);
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("client identity"));
    }
    b.build().expect("https client")
}
