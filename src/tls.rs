//! `--tls-cert` / `--tls-key`: the rustls server configuration, built once at start (and on
//! each reload). PEM files: the certificate chain, leaf first; the key as PKCS#8, PKCS#1 (RSA)
//! or SEC1 (EC). TLS 1.3 and 1.2 with rustls's `ring` provider, ALPN `http/1.1` (what we
//! speak: a client that offers only `h2` is refused in the handshake, never answered in a
//! protocol it did not ask for). Every failure is a sentence naming the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Refuses a chain whose certificate has expired or is not valid yet: serving it would fail
/// every handshake, and the operator should hear it now, not from their users. Checked with
/// rustls's own verifier, taking the chain's last certificate as the anchor (the chain is
/// what we serve, not what clients trust: only the dates can be judged here, so any other
/// verdict, such as a self-signed CA used as the leaf, is left to the clients).
fn check_dates(chain: &[CertificateDer<'_>]) -> Result<(), String> {
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| format!("not a certificate: {e}"))?;
    let last = chain.last().expect("not empty");
    let Ok(anchor) = webpki::anchor_from_trusted_cert(last) else { return Ok(()) };
    let now = rustls::pki_types::UnixTime::now();
    let anchors = [anchor];
    let verdict = leaf.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &chain[1..], now, webpki::KeyUsage::server_auth(), None, None);
    match verdict.map(|_| ()) {
        Err(webpki::Error::CertExpired { .. }) => Err("the certificate has expired".into()),
        Err(webpki::Error::CertNotValidYet { .. }) => Err("the certificate is not valid yet".into()),
        _ => Ok(()),
    }
}

/// Reads the certificate chain and key and builds the server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no CERTIFICATE in the file", cert.display()));
    }
    check_dates(&chain).map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        // Checks that the key is the certificate's (rustls: InconsistentKeys otherwise).
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert {} with --tls-key: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
