//! Plain-text log lines in upstream's layout: `HH:MM:SS.mmm key=value [level] message`.
//!
//! The self-hosted log pipeline (Vector → Logflare → Studio) parses this layout, so it is kept
//! exactly: local wall-clock time with milliseconds, then the metadata keys `request_id`,
//! `project`, `external_id`, `application_name`, `error_code`, `sub`, `iss`, `exp` (in that
//! order, taken from the event or its enclosing spans), then the level as Elixir's Logger
//! names it. Any other event field is appended to the message as ` key=value`.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogLevel;

/// Metadata keys printed before the level, in upstream's order.
pub const METADATA_KEYS: [&str; 8] = [
    "request_id",
    "project",
    "external_id",
    "application_name",
    "error_code",
    "sub",
    "iss",
    "exp",
];

/// Installs the global subscriber writing to stdout. Returns false when one was already set
/// (tests that start several servers in one process).
pub fn init(level: LogLevel) -> bool {
    subscriber(level, std::io::stdout).try_init().is_ok()
}

/// The server's subscriber writing to `make_writer`: `LOG_LEVEL`, then each socket's own
/// `log_level` for the lines its task writes.
pub fn subscriber<W>(level: LogLevel, make_writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(
        LineLayer::new(make_writer)
            .with_filter(filter(level).and(crate::gateway::socket_log::SocketLevelFilter)),
    )
}

/// The global filter: `LOG_LEVEL` for the server, and at most `warning` for chatty
/// dependencies whose debug output is of no use to an operator.
pub fn filter(level: LogLevel) -> Targets {
    let level = LevelFilter::from_level(level.as_tracing());
    let quiet = std::cmp::min(level, LevelFilter::WARN);
    Targets::new()
        .with_default(level)
        .with_target("tokio_postgres", quiet)
        .with_target("hyper", quiet)
        .with_target("hyper_util", quiet)
        .with_target("tungstenite", quiet)
        .with_target("tokio_tungstenite", quiet)
        .with_target("rustls", quiet)
        .with_target("h2", quiet)
        .with_target("tower_http", quiet)
        .with_target("axum", quiet)
}

/// Elixir Logger's name for a level.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// A layer writing one line per event in upstream's layout.
pub struct LineLayer<W> {
    make_writer: W,
}

impl<W> LineLayer<W> {
    /// A layer writing to `make_writer` (stdout in the server, a buffer in tests).
    pub fn new(make_writer: W) -> Self {
        LineLayer { make_writer }
    }
}

/// Metadata fields recorded on a span, kept in its extensions.
#[derive(Default)]
struct SpanMetadata(Vec<(&'static str, String)>);

/// Collects the metadata keys, the message and the other fields of an event or span.
#[derive(Default)]
struct FieldVisitor {
    metadata: Vec<(&'static str, String)>,
    message: String,
    extra: String,
}

/// Longest field value and message kept in a line; clients choose topics, `kid`s and
/// payloads, and a 100 KB topic must not become a 100 KB log line per attempt.
const MAX_FIELD_BYTES: usize = 512;
const MAX_MESSAGE_BYTES: usize = 4096;

/// A value fit for one log line: control characters (a newline would start a forged line)
/// written as escapes, and at most `max` bytes kept.
pub fn sanitize(value: String, max: usize) -> String {
    if value.len() <= max && !value.chars().any(char::is_control) {
        return value;
    }
    let mut out = String::with_capacity(value.len().min(max) + 24);
    for (i, c) in value.char_indices() {
        if out.len() >= max {
            let _ = write!(out, "…(+{} bytes)", value.len() - i);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

impl FieldVisitor {
    fn record(&mut self, field: &Field, value: String) {
        let name = field.name();
        let max = if name == "message" {
            MAX_MESSAGE_BYTES
        } else {
            MAX_FIELD_BYTES
        };
        let value = sanitize(value, max);
        if name == "message" {
            self.message = value;
        } else if let Some(key) = METADATA_KEYS.iter().find(|k| **k == name) {
            self.metadata.retain(|(k, _)| k != key);
            self.metadata.push((key, value));
        } else if !name.starts_with("log.") {
            let _ = write!(self.extra, " {name}={value}");
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl<S, W> Layer<S> for LineLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = FieldVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanMetadata(visitor.metadata));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = FieldVisitor::default();
        values.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(meta) = ext.get_mut::<SpanMetadata>() {
                for (k, v) in visitor.metadata {
                    meta.0.retain(|(key, _)| *key != k);
                    meta.0.push((k, v));
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);

        // Outer spans first, so inner spans and the event itself win.
        let mut metadata: Vec<(&'static str, String)> = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(meta) = span.extensions().get::<SpanMetadata>() {
                    for (k, v) in &meta.0 {
                        metadata.retain(|(key, _)| key != k);
                        metadata.push((k, v.clone()));
                    }
                }
            }
        }
        for (k, v) in visitor.metadata {
            metadata.retain(|(key, _)| *key != k);
            metadata.push((k, v));
        }

        let line = format_line(
            &chrono::Local::now().format("%H:%M:%S%.3f").to_string(),
            &metadata,
            event.metadata().level(),
            &format!("{}{}", visitor.message, visitor.extra),
        );
        let mut writer = self.make_writer.make_writer();
        // A full stdout cannot be reported anywhere else; the line is dropped.
        let _ = writer.write_all(line.as_bytes());
    }
}

/// One log line (with its trailing newline): `time key=value [level] message`. Metadata
/// values with whitespace are joined with `_` so each pair stays one `key=value` token.
pub fn format_line(
    time: &str,
    metadata: &[(&'static str, String)],
    level: &Level,
    message: &str,
) -> String {
    let mut line = String::with_capacity(64 + message.len());
    line.push_str(time);
    line.push(' ');
    for key in METADATA_KEYS {
        if let Some((_, v)) = metadata.iter().find(|(k, _)| *k == key) {
            if v.is_empty() {
                continue;
            }
            let v: String = v
                .chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect();
            let _ = write!(line, "{key}={v} ");
        }
    }
    let _ = writeln!(line, "[{}] {}", level_name(level), message);
    line
}

/// Whether `line` has upstream's layout, `HH:MM:SS.mmm (key=value )*[level] message`, which the
/// self-hosted log pipeline (Vector → Logflare → Studio) parses.
pub fn matches_layout(line: &str) -> bool {
    // ^\d{2}:\d{2}:\d{2}\.\d{3} (\S+=\S+ )*\[(level)\]
    let b = line.as_bytes();
    if b.len() < 13 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..2)
        && b[2] == b':'
        && digits(3..5)
        && b[5] == b':'
        && digits(6..8)
        && b[8] == b'.'
        && digits(9..12)
        && b[12] == b' ')
    {
        return false;
    }
    let mut rest = &line[13..];
    loop {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find("] ") else {
                return false;
            };
            return [
                "debug",
                "info",
                "notice",
                "warning",
                "error",
                "critical",
                "alert",
                "emergency",
            ]
            .contains(&&after[..end]);
        }
        let Some(sp) = rest.find(' ') else {
            return false;
        };
        let token = &rest[..sp];
        match token.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => rest = &rest[sp + 1..],
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(level: LogLevel, f: impl FnOnce()) -> Vec<String> {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(LineLayer::new(buf.clone()).with_filter(filter(level)));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn layout_metadata_order_and_levels() {
        let lines = capture(LogLevel::Debug, || {
            let span = tracing::info_span!("socket", external_id = "foo", project = "foo");
            let _g = span.enter();
            tracing::error!(
                error_code = "TenantNotFound",
                "TenantNotFound: Tenant not found: foo"
            );
            tracing::warn!("careful");
            tracing::debug!(sub = "user 1", other = 5, "with extras");
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].ends_with(" project=foo external_id=foo error_code=TenantNotFound [error] TenantNotFound: Tenant not found: foo"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(" project=foo external_id=foo [warning] careful"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2]
                .ends_with(" project=foo external_id=foo sub=user_1 [debug] with extras other=5"),
            "{}",
            lines[2]
        );
        for l in &lines {
            assert!(matches_layout(l), "{l}");
        }
    }

    #[test]
    fn client_chosen_text_cannot_forge_lines_or_flood() {
        let lines = capture(LogLevel::Info, || {
            let topic = "room\n12:00:00.000 [error] forged";
            tracing::info!(topic = %topic, kid = "a\rb\u{1b}", "join refused");
            tracing::info!(topic = %"x".repeat(100_000), "join refused");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0]
                .ends_with(r"join refused topic=room\n12:00:00.000 [error] forged kid=a\rb\u{1b}"),
            "{lines:?}"
        );
        assert!(lines[1].len() < 700, "{}", lines[1].len());
        assert!(
            lines[1].ends_with("…(+99488 bytes)"),
            "{}",
            &lines[1][lines[1].len() - 40..]
        );
    }

    #[test]
    fn level_filter() {
        let lines = capture(LogLevel::Warning, || {
            tracing::info!("hidden");
            tracing::warn!("shown");
            tracing::error!("shown too");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("[warning] shown"));
    }

    #[test]
    fn span_record_updates_metadata() {
        let lines = capture(LogLevel::Info, || {
            let span = tracing::info_span!("req", request_id = tracing::field::Empty);
            span.record("request_id", "F1abc");
            let _g = span.enter();
            tracing::info!("GET /healthcheck");
        });
        assert!(
            lines[0].ends_with(" request_id=F1abc [info] GET /healthcheck"),
            "{lines:?}"
        );
        assert!(matches_layout(&lines[0]));
    }
}
