//! TLS on client and peer links (rustls, ring provider), behind one seam: a connection's
//! byte stream is plain TCP or TLS over it, and nothing above the stream knows which.
//!
//! - [`ServerTls`]: what a replica needs (its certificate and key, the CA): the client port
//!   presents the certificate; the peer port also asks the dialing replica for one signed by
//!   the CA; outgoing peer connections present it and check the other replica's.
//! - [`ClientTls`]: what a client needs (the CA) to check the replica it talks to.
//! - [`Stream`]: a non-blocking stream for the replica's mio loop; [`BlockingStream`]: the
//!   client's blocking stream, shared by its reader thread and its writer.
//!
//! Without a `tls:` section in the configuration every link is plaintext. TLS replaces
//! nothing: peers still prove that they hold the cluster secret over the encrypted link.

mod blocking;
mod stream;

pub use blocking::BlockingStream;
pub(crate) use stream::Stream;

use chat_core::config::{Config, TlsFiles};
use chat_core::ids::ReplicaId;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::sync::Arc;

/// A TLS file that cannot be used, or TLS settings that do not fit together.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0} (`chat-admin new-tls DIR` writes a CA and one certificate per replica)")]
pub struct TlsError(String);

/// A replica's TLS settings: one certificate for both ports.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The client port: presents our certificate; clients bring none.
    clients: Arc<ServerConfig>,
    /// The peer port: presents our certificate and requires one issued by the CA.
    peers: Arc<ServerConfig>,
    /// Our connections to the other replicas: check theirs, present ours.
    dialer: Arc<ClientConfig>,
}

/// A client's TLS settings: the CA that issued the replicas' certificates.
#[derive(Clone, Debug)]
pub struct ClientTls(Arc<ClientConfig>);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Replica `id`'s settings from the configuration's `tls:` section; without one, `None`
    /// and a warning that links are plaintext.
    pub fn for_replica(config: &Config, id: ReplicaId) -> Result<Option<ServerTls>, TlsError> {
        match &config.tls {
            Some(files) => ServerTls::load(files, id).map(Some),
            None => {
                tracing::warn!(
                    "no `tls:` section in the configuration: client and peer links are plaintext"
                );
                Ok(None)
            }
        }
    }

    /// Reads replica `id`'s certificate and key and the CA named by `files`.
    pub fn load(files: &TlsFiles, id: ReplicaId) -> Result<ServerTls, TlsError> {
        let roots = roots(&files.ca)?;
        let (cert_path, key_path) = files.replica_files(id);
        let chain = certificates(&cert_path)?;
        let key = private_key(&key_path)?;
        let mismatch = |e: rustls::Error| {
            TlsError(format!(
                "{cert_path} and {key_path} do not make a certificate and its key: {e}"
            ))
        };
        let clients = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(mismatch)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError(format!("{}: {e}", files.ca)))?;
        let peers = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(mismatch)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        let dialer = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(mismatch)?
            .with_webpki_verifier(server_verifier(roots, &files.ca)?)
            .with_client_auth_cert(chain, key)
            .map_err(mismatch)?;
        Ok(ServerTls {
            clients: Arc::new(clients),
            peers: Arc::new(peers),
            dialer: Arc::new(dialer),
        })
    }
}

/// The stream of a connection accepted on the client port (`peer_port` false) or the peer
/// port: TLS if the replica has `tls`.
pub(crate) fn accepted(
    tls: Option<&ServerTls>,
    tcp: mio::net::TcpStream,
    peer_port: bool,
) -> io::Result<Stream> {
    let Some(tls) = tls else {
        return Ok(Stream::plain(tcp));
    };
    let config = if peer_port { &tls.peers } else { &tls.clients };
    let session = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    Ok(Stream::tls(tcp, session.into()))
}

/// The stream of our connection to the replica configured at `host`.
pub(crate) fn dialed(
    tls: Option<&ServerTls>,
    tcp: mio::net::TcpStream,
    host: &str,
) -> io::Result<Stream> {
    let Some(tls) = tls else {
        return Ok(Stream::plain(tcp));
    };
    let session = rustls::ClientConnection::new(tls.dialer.clone(), server_name(host)?)
        .map_err(io::Error::other)?;
    Ok(Stream::tls(tcp, session.into()))
}

impl ClientTls {
    /// Reads the CA named by `files` (a client needs nothing else).
    pub fn load(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        let roots = roots(&files.ca)?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_webpki_verifier(server_verifier(roots, &files.ca)?)
            .with_no_client_auth();
        Ok(ClientTls(Arc::new(config)))
    }

    /// The client side of a new session with the replica configured at `host`.
    pub(crate) fn session(&self, host: &str) -> io::Result<rustls::ClientConnection> {
        rustls::ClientConnection::new(self.0.clone(), server_name(host)?).map_err(io::Error::other)
    }
}

fn server_verifier(
    roots: Arc<RootCertStore>,
    ca: &str,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError(format!("{ca}: {e}")))
}

/// The name a replica's certificate must carry: its configured host (an IP address or a
/// DNS name).
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} is not a host name for TLS: {e}"),
        )
    })
}

fn roots(path: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{path}: not a CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |e: rustls::pki_types::pem::Error| TlsError(format!("cannot read {path}: {e}"));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(TlsError(format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError(format!("cannot read a private key from {path}: {e}")))
}

/// A TLS failure on a connection, carried inside an `io::Error` so that the stream keeps
/// the shape of a socket; [`failure`] tells it apart from an ordinary socket error.
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// The one-line explanation if `error` is a TLS failure (bad handshake, refused
/// certificate, plaintext on a TLS port), rather than the socket's own error.
pub fn failure(error: &io::Error) -> Option<String> {
    let inner = error.get_ref()?;
    if let Some(failure) = inner.downcast_ref::<Failure>() {
        return Some(failure.0.clone());
    }
    // Errors of rustls's own blocking helpers (`complete_io`).
    inner
        .downcast_ref::<rustls::Error>()
        .map(|e| describe(e, true))
}

fn failed(error: &rustls::Error, handshaking: bool) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        Failure(describe(error, handshaking)),
    )
}

/// What an operator reads in the log line that closes the connection.
fn describe(error: &rustls::Error, handshaking: bool) -> String {
    use rustls::Error as E;
    match error {
        E::InvalidMessage(_) if handshaking => "TLS: the other side does not speak TLS \
            (plaintext on a TLS port? both ends need the same `tls:` setting)"
            .to_owned(),
        E::InvalidCertificate(e) => {
            format!(
                "TLS: refused the other side's certificate: {}",
                certificate(e)
            )
        }
        E::NoCertificatesPresented => {
            "TLS: the other side presented no certificate (a replica must)".to_owned()
        }
        E::AlertReceived(alert) => format!(
            "TLS: the other side ended the handshake ({alert:?}): it does not accept our \
             certificate (issued by another CA? expired?) or our settings"
        ),
        other => format!("TLS: {other}"),
    }
}

fn certificate(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "it was not issued by our CA (unknown issuer)".to_owned()
        }
        CertificateError::BadSignature => {
            "its signature does not check against our CA (another CA of the same name?)".to_owned()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("it has expired ({error})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("it is not valid yet ({error})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("it was not issued for this host ({error})")
        }
        other => other.to_string(),
    }
}
