//! The HTTP endpoint over TLS (`HttpOptions::tls`, `minotaur-node
//! --http-tls-cert --http-tls-key`): a client that trusts the endpoint's
//! certificate is served; plain HTTP to the same port is not.

mod common;

use common::{url, Addrs};
use minotaur_examples::http::{HttpOptions, HttpTls};
use minotaur_testkit::TestCluster;
use rcgen::{CertificateParams, KeyPair};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Sends `GET path` over `stream` as HTTP/1.1 and answers all it got back.
async fn get<S>(mut stream: S, path: &str) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_https_with_its_certificate() -> Result<(), Box<dyn std::error::Error>>
{
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    let tls = HttpTls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
    let options = HttpOptions {
        tls: Some(tls),
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster =
        common::with_http_options(TestCluster::builder().nodes(1), 0, addrs.clone(), options)
            .start()
            .await?;
    let addr = url(&addrs, "n1").trim_start_matches("http://").to_string();

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(cert.der().to_vec()))?;
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(&addr).await?;
    let stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let answer = get(stream, "/health").await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = get(TcpStream::connect(&addr).await?, "/health").await;
    let plain = plain.unwrap_or_default();
    assert!(!plain.contains("HTTP/1.1 200"), "{plain}");

    // A client that does not trust the certificate gets nothing either.
    let strict = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let refused = TlsConnector::from(Arc::new(strict))
        .connect(
            ServerName::try_from("localhost")?,
            TcpStream::connect(&addr).await?,
        )
        .await;
    assert!(refused.is_err());

    // The endpoint still serves after both.
    let tcp = TcpStream::connect(&addr).await?;
    let stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    assert!(get(stream, "/health").await?.starts_with("HTTP/1.1 200"));
    cluster.shutdown().await;
    Ok(())
}

#[test]
fn unusable_certificates_and_keys_are_typed_errors() {
    use minotaur_examples::http::TlsError;
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let other = KeyPair::generate().expect("key");
    assert!(matches!(
        HttpTls::from_pem(b"not a pem", key.serialize_pem().as_bytes()),
        Err(TlsError::Certificate(_))
    ));
    assert!(matches!(
        HttpTls::from_pem(cert.pem().as_bytes(), b"not a key"),
        Err(TlsError::Key(_))
    ));
    assert!(matches!(
        HttpTls::from_pem(cert.pem().as_bytes(), other.serialize_pem().as_bytes()),
        Err(TlsError::Key(_))
    ));
}
