//! Helpers shared by the examples' integration tests.

#![allow(dead_code)] // each test binary uses a different part

use minotaur_cluster::Node;
use minotaur_examples::http;
use minotaur_testkit::cluster::{Builder, ServiceGuard};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// HTTP addresses of the nodes of a test cluster, by node name.
pub type Addrs = Arc<Mutex<BTreeMap<String, SocketAddr>>>;

/// Enables the HTTP endpoint on every node of `builder`, on 127.0.0.1 with
/// `port` (0: a free one), recording each bound address in `addrs`.
pub fn with_http(builder: Builder, port: u16, addrs: Addrs) -> Builder {
    with_http_options(builder, port, addrs, http::HttpOptions::default())
}

/// [`with_http`], the endpoints serving with `options`.
pub fn with_http_options(
    builder: Builder,
    port: u16,
    addrs: Addrs,
    options: http::HttpOptions,
) -> Builder {
    builder.service(move |node: Arc<Node>| {
        let (addrs, options) = (addrs.clone(), options.clone());
        async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let server = http::serve_with(node.clone(), addr, options)
                .await
                .map_err(|e| e.to_string())?;
            addrs
                .lock()
                .unwrap()
                .insert(node.name().to_string(), server.addr());
            Ok(Box::new(server) as ServiceGuard)
        }
    })
}

/// The base URL of node `name`'s endpoint.
pub fn url(addrs: &Addrs, name: &str) -> String {
    let addr = addrs.lock().unwrap()[name];
    format!("http://{addr}")
}

/// An HTTP client with a deadline on every request, and a new connection
/// for each: a server that refuses a body early (413) closes the connection,
/// which a pooled client would reuse.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}
