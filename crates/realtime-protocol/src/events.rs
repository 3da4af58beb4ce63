//! Event and topic names of the Phoenix and Realtime layers (PROTOCOL.md §2, §3).

/// Client joins a topic.
pub const PHX_JOIN: &str = "phx_join";
/// Client leaves a topic.
pub const PHX_LEAVE: &str = "phx_leave";
/// Every reply, with payload `{"status":…,"response":…}`.
pub const PHX_REPLY: &str = "phx_reply";
/// The channel is gone (server stop, leave, duplicate join).
pub const PHX_CLOSE: &str = "phx_close";
/// The channel crashed.
pub const PHX_ERROR: &str = "phx_error";
/// Socket-level liveness ping on topic [`PHOENIX_TOPIC`].
pub const HEARTBEAT: &str = "heartbeat";
/// Broadcast messages (client and fan-out).
pub const BROADCAST: &str = "broadcast";
/// Client presence commands (`track`, `untrack`).
pub const PRESENCE: &str = "presence";
/// `presence` payload `event`: track a meta (matched case-insensitively, lower-cased first).
pub const PRESENCE_TRACK: &str = "track";
/// `presence` payload `event`: drop the tracked meta.
pub const PRESENCE_UNTRACK: &str = "untrack";
/// Full presence state pushed after a join.
pub const PRESENCE_STATE: &str = "presence_state";
/// Presence joins and leaves fanned out to subscribers.
pub const PRESENCE_DIFF: &str = "presence_diff";
/// Client hands the channel a refreshed JWT.
pub const ACCESS_TOKEN: &str = "access_token";
/// Server status messages (§9).
pub const SYSTEM: &str = "system";
/// Database change events.
pub const POSTGRES_CHANGES: &str = "postgres_changes";

/// The socket-level topic heartbeats go to.
pub const PHOENIX_TOPIC: &str = "phoenix";
/// Prefix every joinable topic carries.
pub const TOPIC_PREFIX: &str = "realtime:";

/// The sub-topic: `realtime:room1` → `room1`; `None` for topics that cannot be joined.
pub fn sub_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix(TOPIC_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::sub_topic;

    #[test]
    fn sub_topic_strips_the_case_sensitive_prefix() {
        assert_eq!(sub_topic("realtime:room1"), Some("room1"));
        assert_eq!(sub_topic("realtime:"), Some(""));
        assert_eq!(sub_topic("realtime:a:b"), Some("a:b"));
        assert_eq!(sub_topic("Realtime:room1"), None);
        assert_eq!(sub_topic("room1"), None);
    }
}
