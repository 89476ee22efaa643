//! TLS for cluster links: mutual authentication with certificates signed by
//! the cluster's own certificate authority, on top of the cookie.
//!
//! ractor_cluster's listener performs the TLS handshake inline in its accept
//! loop, so one peer that opens a socket and never finishes the handshake
//! would hold up every later connection. A node with TLS therefore accepts
//! on its own listener, gives each handshake a deadline in its own task, and
//! hands finished streams to the NodeServer.

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input held nothing usable.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
    /// The name peers' certificates must carry is not a valid DNS name or IP.
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

/// Certificates and keys for cluster links. Every node presents its
/// certificate and checks its peer's against the cluster's CA, in both
/// directions.
///
/// ```no_run
/// use minotaur_cluster::{NodeConfig, TlsConfig};
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::mutual_from_pem(
///     &std::fs::read("ca.pem")?,
///     &std::fs::read("node.pem")?,
///     &std::fs::read("node.key")?,
///     "minotaur.internal", // the name every node certificate carries
/// )?;
/// let mut cfg = NodeConfig::new("n1", "a-long-random-cluster-cookie");
/// cfg.tls = Some(tls);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// From rustls configurations built by the caller; `server_name` is the
    /// name checked in peers' certificates when dialling.
    pub fn new(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<TlsConfig, TlsError> {
        let server_name = pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(client),
            server_name,
        })
    }

    /// Mutual TLS from PEM: the cluster CA's certificate, this node's
    /// certificate chain and its private key. Every node's certificate must
    /// be valid for `server_name`.
    pub fn mutual_from_pem(
        ca_pem: &[u8],
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        server_name: &str,
    ) -> Result<TlsConfig, TlsError> {
        use pki_types::pem::PemObject;
        let pem = |what: &'static str| {
            move |e: pki_types::pem::Error| TlsError::Pem {
                what,
                reason: e.to_string(),
            }
        };
        let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());

        let mut roots = rustls::RootCertStore::empty();
        for cert in pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.map_err(pem("CA certificate"))?)
                .map_err(rustls_err)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                what: "CA certificate",
                reason: "no certificate found".into(),
            });
        }
        let chain = pki_types::CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("certificate chain"))?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate chain",
                reason: "no certificate found".into(),
            });
        }
        let key = pki_types::PrivateKeyDer::from_pem_slice(key_pem).map_err(pem("private key"))?;

        // An explicit provider: relying on the process default panics when
        // several rustls crypto backends are compiled in.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(rustls_err)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(rustls_err)?;
        TlsConfig::new(Arc::new(server), Arc::new(client), server_name)
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Opens an encrypted link to `addr` and hands it to `server`.
    pub(crate) async fn dial(
        &self,
        server: &ActorRef<NodeServerMessage>,
        addr: &str,
    ) -> Result<(), ractor_cluster::ClientConnectErr> {
        ractor_cluster::client_connect_enc(
            server,
            addr,
            self.connector.clone(),
            self.server_name.clone(),
        )
        .await
    }

    /// Accepts links on `listener` until the task is aborted; each handshake
    /// gets `deadline` in a task of its own.
    pub(crate) async fn accept_loop(
        self,
        listener: TcpListener,
        server: ActorRef<NodeServerMessage>,
        deadline: Duration,
        tasks: crate::tasks::Tasks,
    ) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a cluster connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let server = server.clone();
            tasks.spawn(async move {
                let _ = stream.set_nodelay(true);
                match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let stream = Box::new(TlsLink { tls, peer });
                        let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal {
                            stream,
                            is_server: true,
                        });
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out; connection closed"),
                }
            });
        }
    }
}

/// An accepted TLS stream, in the shape ractor_cluster takes external links.
struct TlsLink {
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl ClusterBidiStream for TlsLink {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.tls);
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.to_string())
    }
}
