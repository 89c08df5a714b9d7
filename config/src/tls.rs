//! PEM certificates and private keys: read and checked when a configuration is loaded (the
//! forecaster's `[tls]`, the agent's client certificate), and again when the forecaster reloads
//! them.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The cryptography behind every TLS connection of Presage (ring).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which file of a certificate/key pair a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate of a PEM file, in order (the end-entity certificate first in a chain).
/// A file without any certificate is an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate (a `-----BEGIN CERTIFICATE-----` block)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{}: no private key (a `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC \
             PRIVATE KEY` block)",
            path.display()
        ),
        e => format!("{}: invalid PEM: {e}", path.display()),
    })
}

/// Reads a certificate chain and its private key and checks that the key is the one the
/// (first) certificate was issued for. Each problem names the file it is about.
pub fn certified_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, Vec<(PemFile, String)>> {
    let certs = read_certificates(cert_file).map_err(|e| (PemFile::Cert, e));
    let key = read_private_key(key_file).map_err(|e| (PemFile::Key, e));
    let (certs, key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    CertifiedKey::from_der(certs, key, &crypto_provider()).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "{}: this key does not belong to the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            e => format!("{}: unusable private key: {e}", key_file.display()),
        };
        vec![(PemFile::Key, message)]
    })
}

/// The CA certificates of a PEM file, as trust anchors.
pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}
