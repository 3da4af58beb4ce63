//! Private-channel authorisation (PROTOCOL.md §11) as channels see it: the cached policies of
//! a joined channel, when they are evaluated, and upstream's wording for failed checks. The
//! checks themselves run in the tenant database ([`realtime_cdc::channel_policies`]).

use std::sync::Arc;

pub use realtime_cdc::channel_policies::{PolicyContext, PolicyError};
use realtime_protocol::wording::{join, stop};

use crate::gateway::core::Core;
use crate::gateway::Gateway;

/// What the policies allow; `None` is "not evaluated yet".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policies {
    /// broadcast.read
    pub broadcast_read: Option<bool>,
    /// presence.read
    pub presence_read: Option<bool>,
    /// broadcast.write
    pub broadcast_write: Option<bool>,
    /// presence.write
    pub presence_write: Option<bool>,
}

/// Join reason for a check that could not run (policy errors are "Unauthorized" instead).
pub fn join_reason(e: &PolicyError) -> Option<String> {
    match e {
        PolicyError::Unavailable(_) => Some(join::UNABLE_TO_CONNECT.into()),
        PolicyError::MissingPartition => Some(join::MISSING_PARTITION.into()),
        PolicyError::Canceled(detail) => Some(join::query_canceled(detail)),
        PolicyError::Policy(_) => None,
    }
}

/// Channel-stop message when a token refresh cannot be authorised.
pub fn refresh_message(e: &PolicyError) -> String {
    match e {
        PolicyError::Canceled(_) => stop::QUERY_CANCELLED.into(),
        _ => stop::UNABLE_TO_CONNECT.into(),
    }
}

impl Gateway {
    /// Lets private channels reach tenant databases: `crypto` decrypts the `postgres_cdc_rls`
    /// settings of the registry rows. Without it private joins fail with
    /// `UnableToConnectToProject`.
    pub fn enable_tenant_databases(&self, crypto: Arc<realtime_tenants::Crypto>) {
        self.databases.set_crypto(crypto);
    }

    /// Read check for `broadcast` (and `presence` when `with_presence`); the answers replace
    /// those in `policies`.
    pub async fn read_policies(
        &self,
        tenant: &str,
        ctx: &PolicyContext,
        with_presence: bool,
        mut policies: Policies,
    ) -> Result<Policies, PolicyError> {
        let started = std::time::Instant::now();
        let access = self
            .databases
            .read_policies(tenant, self.registry_row(tenant), ctx, with_presence)
            .await;
        self.limits
            .rates(tenant)
            .metrics
            .authorization_check(false, started.elapsed());
        let access = access?;
        policies.broadcast_read = Some(access.broadcast);
        if let Some(presence) = access.presence {
            policies.presence_read = Some(presence);
        }
        Ok(policies)
    }

    /// Write check for both extensions; the answers replace those in `policies`.
    pub async fn write_policies(
        &self,
        tenant: &str,
        ctx: &PolicyContext,
        mut policies: Policies,
    ) -> Result<Policies, PolicyError> {
        let started = std::time::Instant::now();
        let access = self
            .databases
            .write_policies(tenant, self.registry_row(tenant), ctx)
            .await;
        self.limits
            .rates(tenant)
            .metrics
            .authorization_check(true, started.elapsed());
        let access = access?;
        policies.broadcast_write = Some(access.broadcast);
        policies.presence_write = Some(access.presence);
        Ok(policies)
    }
}

/// The two extensions policies distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Broadcast.
    Broadcast,
    /// Presence.
    Presence,
}

impl Core {
    /// The authorisation context of a joined channel.
    pub(crate) fn auth_context(&self, topic: &str) -> Option<PolicyContext> {
        let ch = self.channels.get(topic)?;
        Some(PolicyContext {
            topic: ch.sub().to_string(),
            claims: ch.claims(),
            headers: self.headers.clone(),
        })
    }

    /// Whether the channel may write `ext`: always on public channels; on private ones what the
    /// write policies said. Frames that need them are only handled once their check ran
    /// (`write_check.rs`), so an unknown answer means a failed check, which denies.
    pub(crate) fn may_write(&self, topic: &str, ext: Extension) -> bool {
        let Some(ch) = self.channels.get(topic) else {
            return false;
        };
        if !ch.private {
            return true;
        }
        let known = match ext {
            Extension::Broadcast => ch.policies.broadcast_write,
            Extension::Presence => ch.policies.presence_write,
        };
        known == Some(true)
    }
}

/// The verdict on a private channel's read policies after a token change: the new policies, or
/// the channel-stop message (no read left, a read permission lost, or the check failed).
pub fn judge_refresh(
    sub: &str,
    before: Policies,
    result: Result<Policies, PolicyError>,
) -> Result<Policies, String> {
    let after = match result {
        Ok(p) => p,
        Err(PolicyError::Policy(_)) => return Err(stop::no_read_permission(sub)),
        Err(e) => return Err(refresh_message(&e)),
    };
    let br = after.broadcast_read == Some(true);
    let pr = after.presence_read == Some(true);
    if !br && !pr {
        return Err(stop::no_read_permission(sub));
    }
    let lost = (before.broadcast_read == Some(true) && !br)
        || (before.presence_read == Some(true) && after.presence_read == Some(false));
    if lost {
        return Err(stop::read_permission_revoked(sub));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_wording_of_failed_checks() {
        assert_eq!(
            join_reason(&PolicyError::Unavailable("x".into())).as_deref(),
            Some(
                "UnableToConnectToProject: Realtime was unable to connect to the project database"
            )
        );
        assert_eq!(
            join_reason(&PolicyError::MissingPartition).as_deref(),
            Some("MissingPartition: Realtime was unable to find the expected messages partition")
        );
        assert_eq!(
            join_reason(&PolicyError::Canceled("slow".into())).as_deref(),
            Some("QueryCanceled: slow")
        );
        assert_eq!(join_reason(&PolicyError::Policy("boom".into())), None);
        assert_eq!(
            refresh_message(&PolicyError::Canceled("slow".into())),
            "Query was cancelled, please try again"
        );
        assert_eq!(
            refresh_message(&PolicyError::MissingPartition),
            "Realtime was unable to connect to the project database"
        );
    }
}
