//! `minotaur-node`: one Minotaur cluster member per OS process, with an
//! optional HTTP JSON endpoint. SIGTERM or Ctrl-C is a graceful leave: the
//! node hands its games to the other members before it exits.
//!
//! Once started it prints one line to stdout, for scripts and tests:
//! `minotaur-node ready: name=<name> cluster=<addr> http=<addr or off>`.

// glibc's allocator spends a large share of a failover's time in malloc
// and free; mimalloc does not (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use minotaur_cluster::{Node, NodeConfig};
use minotaur_examples::settings::Settings;
use minotaur_examples::{http, logging};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            e.print();
            return ExitCode::from(e.exit_code());
        }
    };
    let config = match settings.node_config() {
        Ok(config) => config,
        Err(e) => {
            e.print();
            return ExitCode::from(e.exit_code());
        }
    };
    if let Err(e) = logging::init_node(&settings.name, &settings.log_level, settings.log_format) {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, config: NodeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let node = Arc::new(Node::start(config).await?);
    let endpoint = match settings.http {
        Some(addr) => match http::serve_with(node.clone(), addr, settings.http_options()?).await {
            Ok(endpoint) => Some(endpoint),
            Err(e) => {
                node.leave().await;
                return Err(e.into());
            }
        },
        None => None,
    };
    let http_addr = endpoint
        .as_ref()
        .map_or_else(|| "off".to_string(), |e| e.addr().to_string());
    tracing::info!(cluster = %node.addr(), http = %http_addr, "ready");
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "minotaur-node ready: name={} cluster={} http={http_addr}",
            node.name(),
            node.addr()
        )?;
        out.flush()?;
    }

    let signal = shutdown_signal().await?;
    // Like a load balancer draining a backend: first stop taking HTTP
    // connections and let open requests finish while the node still works
    // fully (clients go to another node), then hand the games over. A call
    // still in flight inside the node when it stops would fail.
    if let Some(endpoint) = endpoint {
        tracing::info!(signal, "stopping the HTTP endpoint");
        endpoint.stop().await;
    }
    tracing::info!(signal, "leaving the cluster: handing games over");
    node.leave().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C (SIGINT); returns which.
async fn shutdown_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}
