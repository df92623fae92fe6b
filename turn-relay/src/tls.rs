//! TURN over TLS (RFC 5349 / RFC 8656 §3.1): the TCP driver behind a rustls
//! handshake, with the certificate chain and key read from PEM files.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self, pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject,
};

use crate::Error;
use crate::tcp::Acceptor;

pub(crate) struct Tls(TlsAcceptor);

impl Tls {
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Tls(format!("certificate {}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::Tls(format!("key {}: {e}", key.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Tls(TlsAcceptor::from(Arc::new(config))))
    }
}

impl Acceptor for Tls {
    type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    async fn accept(&self, tcp: tokio::net::TcpStream) -> std::io::Result<Self::Stream> {
        self.0.accept(tcp).await
    }
}
