//! Events a session receives from outside its read loop (timers, the change pipeline, the
//! tenant's lifecycle), and the delayed send that arms its timers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gateway::mailbox::Mailbox;

/// Events delivered to a session from outside its read loop.
pub enum Control {
    /// Stop a channel with a `system` error then `phx_close`.
    StopChannel {
        /// The channel.
        channel_id: u64,
        /// The `system` message text.
        message: String,
    },
    /// Outcome of a change subscription attempt.
    CdcResult {
        /// The channel.
        channel_id: u64,
        /// Attempt generation.
        generation: u64,
        /// The subscription or why it failed (boxed: every socket's control queue has room
        /// for a few dozen controls from the start, so the enum is kept small).
        result: Box<Result<realtime_cdc::Subscription, realtime_cdc::SubscribeError>>,
    },
    /// Retry a failed change subscription.
    CdcRetry {
        /// The channel.
        channel_id: u64,
        /// Attempt generation that failed.
        generation: u64,
    },
    /// The change pipeline stopped under a live subscription (the tenant's pipeline was
    /// stopped): subscribe again after upstream's 1–3 s (`postgres_cdc_rls_down`).
    CdcDown {
        /// The channel.
        channel_id: u64,
        /// Attempt generation the pipeline stopped under.
        generation: u64,
    },
    /// Check whether the replication connection is ready (`replication_ready` opt-in).
    ReplicationCheck {
        /// The channel.
        channel_id: u64,
        /// Give up at this time.
        deadline: Instant,
    },
    /// The tenant database answered for a pending join.
    JoinChecked {
        /// The join.
        join: Box<crate::gateway::join::PendingJoin>,
        /// Its outcome.
        verdict: Box<crate::gateway::join::DbVerdict>,
    },
    /// The tenant database answered a private channel's write check.
    WriteChecked(Box<crate::gateway::write_check::WriteVerdict>),
    /// The tenant database answered a private channel's read check after a token change.
    Reauthorized(Box<crate::gateway::access_token::RefreshVerdict>),
    /// Tenant-wide drain: "Server requested disconnect" on every channel, then close 1012.
    ServerDisconnect,
    /// Close the socket with this code.
    Close(u16),
}

/// Sends `c` to the session after `delay`.
pub(crate) fn spawn_after(control: &Arc<Mailbox<Control>>, delay: Duration, c: Control) {
    let tx = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // A full queue means a stuck socket; its kill is on its way from other pushes.
        let _ = tx.push(c);
    });
}

impl std::fmt::Debug for Control {
    /// The variant and its channel, enough to tell effects apart in test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::StopChannel {
                channel_id,
                message,
            } => write!(f, "StopChannel({channel_id}, {message:?})"),
            Control::CdcResult {
                channel_id,
                generation,
                ..
            } => write!(f, "CdcResult({channel_id}, {generation})"),
            Control::CdcRetry {
                channel_id,
                generation,
            } => write!(f, "CdcRetry({channel_id}, {generation})"),
            Control::CdcDown {
                channel_id,
                generation,
            } => write!(f, "CdcDown({channel_id}, {generation})"),
            Control::ReplicationCheck { channel_id, .. } => {
                write!(f, "ReplicationCheck({channel_id})")
            }
            Control::JoinChecked { .. } => f.write_str("JoinChecked"),
            Control::WriteChecked(_) => f.write_str("WriteChecked"),
            Control::Reauthorized(_) => f.write_str("Reauthorized"),
            Control::ServerDisconnect => f.write_str("ServerDisconnect"),
            Control::Close(code) => write!(f, "Close({code})"),
        }
    }
}
