//! A socket's own log level (the `log_level` query parameter, PROTOCOL.md §1.2): `info`,
//! `warning` or `error`, anything else `error`, as upstream. Lines written while a socket's task
//! handles its frames are printed only at that level or above; `LOG_LEVEL` still applies, so the
//! stricter of the two wins (Elixir's process level works the same way).

use std::future::Future;

use realtime_protocol::wording::join;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

tokio::task_local! {
    /// The level of the socket whose task is running.
    static SOCKET_LEVEL: Level;
}

/// The level a socket asked for with `log_level`.
pub fn parse(value: Option<&str>) -> Level {
    match value {
        Some("info") => Level::INFO,
        Some("warning") => Level::WARN,
        // Upstream's default, also for `warn` (what realtime-js documents) and `debug`.
        _ => Level::ERROR,
    }
}

/// Runs a socket's task with its level in scope (one thread-local swap per poll).
///
/// Not an `async fn`: that would keep the task's future twice in the socket's task (once as
/// the argument, once inside the scope).
pub fn scope<F: Future>(level: Level, task: F) -> impl Future<Output = F::Output> {
    SOCKET_LEVEL.scope(level, task)
}

/// The level upstream logs a refused join at: warnings for an expired token or missing claims,
/// nothing for the channel and join rate limits (info here; so is the topic length limit, which
/// upstream does not have), errors for everything else.
pub fn refusal_level(reason: &str) -> Level {
    if reason.starts_with(join::TOKEN_EXPIRED_PREFIX) || reason == join::ROLE_AND_EXP_REQUIRED {
        Level::WARN
    } else if [
        join::CHANNEL_RATE_LIMIT,
        join::CLIENT_JOIN_RATE_LIMIT,
        join::TOPIC_NAME_TOO_LONG,
    ]
    .contains(&reason)
    {
        Level::INFO
    } else {
        Level::ERROR
    }
}

/// Logs a refused join at [`refusal_level`]; the socket's level decides whether it is printed.
pub fn join_refused(tenant: &str, topic: &str, reason: &str) {
    match refusal_level(reason) {
        Level::ERROR => tracing::error!(tenant, topic, reason, "join refused"),
        Level::WARN => tracing::warn!(tenant, topic, reason, "join refused"),
        _ => tracing::info!(tenant, topic, reason, "join refused"),
    }
}

/// Log lines the socket level can hide: below `error`, written by the gateway. Lines about
/// other sockets written on a socket's task (a slow consumer cut while this one publishes) are
/// not this socket's and stay under `LOG_LEVEL` alone.
fn applies(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && *meta.level() != Level::ERROR
        && meta.target().starts_with("realtime_server::gateway")
        && !meta
            .target()
            .starts_with("realtime_server::gateway::outbound")
}

/// The filter for the log layer. Only the gateway's non-error call sites are checked per
/// event; every other call site keeps its cached answer, so the filter costs nothing elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketLevelFilter;

impl<S> Filter<S> for SocketLevelFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if !applies(meta) {
            return true;
        }
        // Outside a socket's task (HTTP routes, pipelines) only `LOG_LEVEL` counts.
        SOCKET_LEVEL
            .try_with(|level| meta.level() <= level)
            .unwrap_or(true)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if applies(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_values() {
        assert_eq!(parse(Some("info")), Level::INFO);
        assert_eq!(parse(Some("warning")), Level::WARN);
        assert_eq!(parse(Some("error")), Level::ERROR);
        for other in [None, Some("warn"), Some("debug"), Some("INFO"), Some("")] {
            assert_eq!(parse(other), Level::ERROR, "{other:?}");
        }
    }

    #[test]
    fn refusals_at_upstream_levels() {
        assert_eq!(
            refusal_level("InvalidJWTToken: Token has expired 3 seconds ago"),
            Level::WARN
        );
        assert_eq!(
            refusal_level("InvalidJWTToken: Token expiration time is invalid"),
            Level::ERROR
        );
        assert_eq!(
            refusal_level("ChannelRateLimitReached: Too many channels"),
            Level::INFO
        );
        assert_eq!(
            refusal_level(
                "Unauthorized: You do not have permissions to read from this Channel topic: r"
            ),
            Level::ERROR
        );
    }
}
