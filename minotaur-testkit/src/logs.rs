//! Per-node log capture for tests that run several nodes in one process.
//!
//! Every node of a test cluster runs its code inside a `tracing` span named
//! `"node"` that carries a `node` field (the node's display name, e.g. `"n1"`)
//! and a `node_id` field (unique in the process, e.g. `"n1.3fa9c2"`):
//!
//! ```
//! minotaur_testkit::logs::install();
//! let span = tracing::info_span!("node", node = "n1", node_id = "n1.doc-example");
//! span.in_scope(|| tracing::info!(player = 7, "joined"));
//! let lines = minotaur_testkit::logs::lines("n1.doc-example");
//! assert!(lines[0].starts_with("[n1]"));
//! assert!(lines[0].contains("joined player=7"));
//! ```
//!
//! [`install`] sets up, once per process, a global subscriber that prints to
//! the test output (filtered by `RUST_LOG`, default `warn`) and also captures,
//! whatever `RUST_LOG` says, each event that happens inside such a span (or
//! carries a `node_id` field itself) into a ring buffer per `node_id`
//! ([`MAX_LINES_PER_NODE`] lines). A failing test can then print what each node
//! was doing with [`dump`].
//!
//! Captured: events at `DEBUG` and above from targets starting with
//! `minotaur`, at `INFO` and above from anything else. The node of an event is
//! the one of its nearest enclosing span with a `node_id` field, looked up when
//! each span is created (so a span's node is fixed at creation; a `node_id`
//! recorded later with `Span::record` only applies to the span itself and
//! spans created after it). Note that a tokio task does not inherit the span of
//! the code that spawned it: instrument the task's future
//! (`tracing::Instrument::instrument`) to keep it attributed to its node.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The field that names a node (its display name).
pub const NODE_FIELD: &str = "node";
/// The field that identifies a node uniquely in the process.
pub const NODE_ID_FIELD: &str = "node_id";
/// How many lines are kept per node; older lines are dropped first.
pub const MAX_LINES_PER_NODE: usize = 10_000;

/// Whether [`install`] made our subscriber the global one.
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Origin of the timestamps in captured lines.
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// The captured lines, per `node_id`.
static STORE: OnceLock<Mutex<HashMap<String, NodeLog>>> = OnceLock::new();

/// Installs the global subscriber: test-output printing filtered by
/// `RUST_LOG` (default `warn`) plus the per-node capture. Idempotent and
/// cheap after the first call; call it at the start of every test that wants
/// captured logs.
///
/// If another global subscriber was set before the first call (by another
/// crate's test helper, say), it is silently kept, and nothing is captured:
/// [`lines`] then stays empty and [`dump`] says so. [`is_capturing`] tells
/// which case applies. A subscriber set with `tracing::subscriber::with_default`
/// also takes precedence on its thread; add [`capture_layer`] to it to capture
/// there.
pub fn install() {
    INSTALLED.get_or_init(|| {
        epoch();
        let env_filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let print = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(env_filter);
        let subscriber = tracing_subscriber::registry()
            .with(print)
            .with(capture_layer());
        tracing::subscriber::set_global_default(subscriber).is_ok()
    });
}

/// Whether [`install`] installed the capturing subscriber as the global one.
pub fn is_capturing() -> bool {
    INSTALLED.get().copied().unwrap_or(false)
}

/// The capture layer on its own (with its own level filter), to compose into
/// a custom subscriber instead of calling [`install`]. It writes to the same
/// store that [`lines`], [`clear`] and [`dump`] read.
pub fn capture_layer<S>() -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    epoch();
    CaptureLayer.with_filter(CaptureFilter)
}

/// The lines captured so far for `node_id`, oldest first.
pub fn lines(node_id: &str) -> Vec<String> {
    lock_store()
        .get(node_id)
        .map(|log| log.lines.iter().cloned().collect())
        .unwrap_or_default()
}

/// Forgets the lines captured for `node_id`.
pub fn clear(node_id: &str) {
    lock_store().remove(node_id);
}

/// Formats the captured lines of the given nodes, given as
/// `(display name, node_id)`, one block per node, for printing when a test
/// fails.
pub fn dump(node_ids: &[(&str, &str)]) -> String {
    let mut out = String::new();
    if !is_capturing() {
        out.push_str(
            "(log capture is not active: minotaur_testkit::logs::install() was not called \
             first, or another global subscriber was already set)\n",
        );
    }
    let store = lock_store();
    for (name, node_id) in node_ids {
        let log = store.get(*node_id);
        let count = log.map_or(0, |log| log.lines.len());
        let _ = writeln!(out, "===== logs of {name} ({node_id}): {count} lines =====");
        match log {
            Some(log) => {
                if log.dropped > 0 {
                    let _ = writeln!(out, "({} earlier lines dropped)", log.dropped);
                }
                for line in &log.lines {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => out.push_str("(nothing captured)\n"),
        }
    }
    out
}

/// The lines of one node.
#[derive(Debug, Default)]
struct NodeLog {
    lines: VecDeque<String>,
    /// Lines dropped because the buffer was full.
    dropped: u64,
}

fn lock_store() -> MutexGuard<'static, HashMap<String, NodeLog>> {
    STORE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn push_line(node_id: &str, line: String) {
    let mut store = lock_store();
    let log = match store.get_mut(node_id) {
        Some(log) => log,
        None => store.entry(node_id.to_owned()).or_default(),
    };
    if log.lines.len() >= MAX_LINES_PER_NODE {
        log.lines.pop_front();
        log.dropped += 1;
    }
    log.lines.push_back(line);
}

/// The node a span belongs to, stored in the span's extensions.
#[derive(Debug)]
struct NodeTag {
    name: String,
    node_id: String,
}

/// The `node` field of a span created without a `node_id`.
struct PendingNodeName(String);

/// Picks the `node` and `node_id` fields out of span attributes.
#[derive(Default)]
struct TagVisitor {
    node: Option<String>,
    node_id: Option<String>,
}

impl TagVisitor {
    /// The tag, if a `node_id` was seen; `fallback_name` names the node when
    /// no `node` field was seen.
    fn into_tag(self, fallback_name: Option<&str>) -> Option<NodeTag> {
        let node_id = self.node_id?;
        let name = self
            .node
            .or_else(|| fallback_name.map(str::to_owned))
            .unwrap_or_else(|| node_id.clone());
        Some(NodeTag { name, node_id })
    }
}

impl Visit for TagVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            NODE_FIELD => self.node = Some(value.to_owned()),
            NODE_ID_FIELD => self.node_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            NODE_FIELD => self.node = Some(format!("{value:?}")),
            NODE_ID_FIELD => self.node_id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

/// Formats an event's fields; also picks out `node` and `node_id`.
#[derive(Default)]
struct EventVisitor {
    message: String,
    fields: String,
    tag: TagVisitor,
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            NODE_FIELD | NODE_ID_FIELD => self.tag.record_str(field, value),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            NODE_FIELD | NODE_ID_FIELD => self.tag.record_debug(field, value),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

/// Which events and spans the capture layer sees.
struct CaptureFilter;

impl CaptureFilter {
    fn wants(meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            // Spans carry the node tags, whatever their level.
            return true;
        }
        let most_verbose = if meta.target().starts_with("minotaur") {
            Level::DEBUG
        } else {
            Level::INFO
        };
        *meta.level() <= most_verbose
    }
}

impl<S> Filter<S> for CaptureFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

/// Tags spans with their node and stores the events of tagged spans.
struct CaptureLayer;

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = TagVisitor::default();
        attrs.record(&mut visitor);
        if visitor.node_id.is_none() {
            if let Some(name) = visitor.node.take() {
                // A `node_id` may be recorded later: remember the name.
                span.extensions_mut().insert(PendingNodeName(name));
            }
        }
        let tag = match visitor.into_tag(None) {
            Some(tag) => Some(Arc::new(tag)),
            None => span
                .parent()
                .and_then(|parent| parent.extensions().get::<Arc<NodeTag>>().cloned()),
        };
        if let Some(tag) = tag {
            span.extensions_mut().insert(tag);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = TagVisitor::default();
        values.record(&mut visitor);
        if visitor.node.is_none() && visitor.node_id.is_none() {
            return;
        }
        let mut extensions = span.extensions_mut();
        let old = extensions
            .get_mut::<Arc<NodeTag>>()
            .map(|tag| Arc::clone(tag));
        if visitor.node_id.is_none() {
            // Only the name changed: keep the id.
            visitor.node_id = old.as_ref().map(|tag| tag.node_id.clone());
        }
        let old_name = match &old {
            Some(tag) => Some(tag.name.clone()),
            None => extensions
                .get_mut::<PendingNodeName>()
                .map(|pending| pending.0.clone()),
        };
        if let Some(tag) = visitor.into_tag(old_name.as_deref()) {
            extensions.replace(Arc::new(tag));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span_tag = ctx
            .event_span(event)
            .and_then(|span| span.extensions().get::<Arc<NodeTag>>().cloned());
        let carries_id = event.metadata().fields().field(NODE_ID_FIELD).is_some();
        if span_tag.is_none() && !carries_id {
            return;
        }

        let mut visitor = EventVisitor::default();
        event.record(&mut visitor);
        let own_tag = visitor
            .tag
            .into_tag(span_tag.as_ref().map(|t| t.name.as_str()));
        let (name, node_id) = match (&own_tag, &span_tag) {
            (Some(own), _) => (own.name.as_str(), own.node_id.as_str()),
            (None, Some(span)) => (span.name.as_str(), span.node_id.as_str()),
            (None, None) => return,
        };
        let meta = event.metadata();
        let line = format!(
            "[{name}] {:.3}s {} {}: {}{}",
            epoch().elapsed().as_secs_f64(),
            meta.level(),
            meta.target(),
            visitor.message,
            visitor.fields,
        );
        push_line(node_id, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(prefix: &str) -> String {
        format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
    }

    #[test]
    fn captures_events_inside_a_node_span() {
        install();
        assert!(is_capturing());
        let id = unique("n1");
        tracing::info_span!("node", node = "n1", node_id = %id).in_scope(|| {
            tracing::info!(answer = 42, text = "hi", "hello {}", "world");
        });
        let lines = lines(&id);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("[n1] "), "{}", lines[0]);
        assert!(
            lines[0]
                .ends_with("INFO minotaur_testkit::logs::tests: hello world answer=42 text=\"hi\""),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn events_outside_node_spans_are_not_captured() {
        install();
        let id = unique("n1");
        let marker = unique("marker");
        tracing::info!(marker = %marker, "outside");
        tracing::info_span!("other", request = 1).in_scope(|| tracing::info!("still outside"));
        let span = tracing::info_span!("node", node = "n1", node_id = %id);
        span.in_scope(|| tracing::info!("inside"));
        tracing::info!(marker = %marker, "after");
        let lines = lines(&id);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("inside"));
    }

    #[test]
    fn same_name_different_ids_are_kept_apart() {
        install();
        let (first, second) = (unique("n1"), unique("n1"));
        let one = tracing::info_span!("node", node = "n1", node_id = %first);
        let two = tracing::info_span!("node", node = "n1", node_id = %second);
        one.in_scope(|| tracing::warn!("from the first"));
        two.in_scope(|| tracing::warn!("from the second"));
        one.in_scope(|| tracing::error!("first again"));
        let first_lines = lines(&first);
        let second_lines = lines(&second);
        assert_eq!(first_lines.len(), 2, "{first_lines:?}");
        assert!(first_lines[0].contains("WARN") && first_lines[0].contains("from the first"));
        assert!(first_lines[1].contains("ERROR") && first_lines[1].contains("first again"));
        assert_eq!(second_lines.len(), 1, "{second_lines:?}");
        assert!(second_lines[0].contains("from the second"));
    }

    #[test]
    fn nested_spans_inherit_the_node() {
        install();
        let id = unique("n2");
        let node = tracing::info_span!("node", node = "n2", node_id = %id);
        let _node = node.enter();
        let inner = tracing::debug_span!("handler", op = "join");
        inner.in_scope(|| {
            tracing::trace_span!("deeper").in_scope(|| tracing::debug!("deep inside"));
        });
        let lines = lines(&id);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("[n2] ") && lines[0].contains("DEBUG"));
    }

    #[tokio::test]
    async fn instrumented_tasks_are_captured() {
        use tracing::Instrument;
        install();
        let id = unique("n3");
        let span = tracing::info_span!("node", node = "n3", node_id = %id);
        tokio::spawn(async { tracing::info!("from a task") }.instrument(span))
            .await
            .expect("task");
        assert_eq!(lines(&id).len(), 1);
    }

    #[test]
    fn events_carrying_a_node_id_are_captured() {
        install();
        let id = unique("n4");
        tracing::warn!(node = "n4", node_id = %id, peer = "n5", "peer lost");
        tracing::warn!(node_id = %id, "no name");
        let lines = lines(&id);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("[n4] ") && lines[0].ends_with("peer lost peer=\"n5\""));
        assert!(lines[1].starts_with(&format!("[{id}] ")), "{}", lines[1]);

        // An event's own id wins over the span's.
        let other = unique("n6");
        tracing::info_span!("node", node = "n6", node_id = %other)
            .in_scope(|| tracing::info!(node = "n4", node_id = %id, "routed"));
        assert_eq!(super::lines(&id).len(), 3);
        assert!(super::lines(&other).is_empty());
    }

    #[test]
    fn levels_depend_on_the_target() {
        install();
        let id = unique("n7");
        tracing::info_span!("node", node = "n7", node_id = %id).in_scope(|| {
            tracing::debug!(target: "minotaur_cluster::membership", "kept");
            tracing::trace!(target: "minotaur_cluster::membership", "too verbose");
            tracing::debug!(target: "ractor_cluster::node", "not ours");
            tracing::info!(target: "ractor_cluster::node", "kept too");
        });
        let lines = lines(&id);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("minotaur_cluster::membership: kept"));
        assert!(lines[1].contains("ractor_cluster::node: kept too"));
    }

    #[test]
    fn node_id_recorded_later_applies() {
        install();
        let id = unique("n8");
        let span = tracing::info_span!("node", node = "n8", node_id = tracing::field::Empty);
        span.in_scope(|| tracing::info!("before"));
        span.record("node_id", id.as_str());
        span.in_scope(|| tracing::info!("after"));
        let lines = lines(&id);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("[n8] ") && lines[0].contains("after"),
            "{lines:?}"
        );
    }

    #[test]
    fn ring_buffer_clear_and_dump() {
        install();
        let id = unique("n9");
        let span = tracing::info_span!("node", node = "n9", node_id = %id);
        span.in_scope(|| {
            for i in 0..MAX_LINES_PER_NODE + 5 {
                tracing::info!(i, "line");
            }
        });
        let lines = lines(&id);
        assert_eq!(lines.len(), MAX_LINES_PER_NODE);
        assert!(lines[0].ends_with("line i=5"), "{}", lines[0]);

        let missing = unique("n10");
        let dump = dump(&[("n9", &id), ("n10", &missing)]);
        assert!(dump.contains(&format!(
            "===== logs of n9 ({id}): {MAX_LINES_PER_NODE} lines ====="
        )));
        assert!(dump.contains("(5 earlier lines dropped)"));
        assert!(dump.contains(&format!("===== logs of n10 ({missing}): 0 lines =====")));
        assert!(dump.contains("(nothing captured)"));

        clear(&id);
        assert!(super::lines(&id).is_empty());
    }
}
