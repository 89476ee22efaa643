//! Log output of the example binaries: tracing to stderr, and for
//! `minotaur-node` the node's name at the start of every line, including
//! lines logged outside the node's own spans (start-up, signals, HTTP).

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Prefixes every line with `[name]`.
struct NodePrefix {
    node: String,
    inner: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for NodePrefix
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "[{}] ", self.node)?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// Installs the process's subscriber for node `node`, filtered by `filter`
/// (tracing directives, e.g. `info` or `info,minotaur_cluster=debug`).
pub fn init_node(node: &str, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .fmt_fields(DefaultFields::new())
        .event_format(NodePrefix {
            node: node.to_string(),
            inner: Format::default(),
        })
        .try_init()
        .map_err(|e| e.to_string())
}

/// Installs the demo's subscriber: `RUST_LOG`, or errors only, so the
/// progress lines stay readable.
pub fn init_demo() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
