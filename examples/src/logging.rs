//! Log output of the example binaries: tracing to stderr, and for
//! `minotaur-node` the node's name on every line, including lines logged
//! outside the node's own spans (start-up, signals, HTTP): at the start of
//! a text line, or as the `node` key of a JSON one.

use crate::settings::LogFormat;
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Json, JsonFields, Writer};
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

/// Writes each event as the JSON formatter does, with the node's name as
/// its first key.
struct NodeKey {
    /// `"node":"<name>",`, escaped once.
    key: String,
    inner: Format<Json>,
}

impl<S, N> FormatEvent<S, N> for NodeKey
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
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{{}{rest}", self.key),
            None => writer.write_str(&line),
        }
    }
}

/// Installs the process's subscriber for node `node`, filtered by `filter`
/// (tracing directives, e.g. `info` or `info,minotaur_cluster=debug`), in
/// `format`.
pub fn init_node(node: &str, filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    if format == LogFormat::Json {
        let name = serde_json::to_string(node).map_err(|e| e.to_string())?;
        return tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(NodeKey {
                key: format!("\"node\":{name},"),
                inner: Format::default().json().flatten_event(true),
            })
            .try_init()
            .map_err(|e| e.to_string());
    }
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
