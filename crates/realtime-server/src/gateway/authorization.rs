//! Private-channel authorisation (PROTOCOL.md §11): read and write checks evaluated by the
//! tenant database's RLS policies on `realtime.messages`, inside transactions that are always
//! rolled back. One connection per tenant, used by one check at a time.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::gateway::session::Session;
use crate::gateway::Gateway;

/// Application name of the policy-check connections.
const APPLICATION_NAME: &str = "realtime_rls";

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

/// Who asks, about which topic.
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// Sub-topic.
    pub topic: String,
    /// Verified claims.
    pub claims: Map<String, Value>,
    /// The socket's `x-` headers.
    pub headers: Map<String, Value>,
}

/// Why a check could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The tenant database could not be reached (or has no usable settings).
    #[error("tenant database unavailable: {0}")]
    Unavailable(String),
    /// The day's `realtime.messages` partition is missing.
    #[error("missing messages partition")]
    MissingPartition,
    /// The statement was cancelled.
    #[error("query canceled: {0}")]
    Canceled(String),
    /// A policy raised an error (counts as "no permission" at join).
    #[error("RLS policy error: {0}")]
    Policy(String),
}

impl AuthError {
    /// Join reason for an infrastructure failure (policy errors are "Unauthorized" instead).
    pub fn join_reason(&self) -> Option<String> {
        match self {
            AuthError::Unavailable(_) => Some(
                "UnableToConnectToProject: Realtime was unable to connect to the project database"
                    .into(),
            ),
            AuthError::MissingPartition => Some(
                "MissingPartition: Realtime was unable to find the expected messages partition"
                    .into(),
            ),
            AuthError::Canceled(detail) => Some(format!("QueryCanceled: {detail}")),
            AuthError::Policy(_) => None,
        }
    }

    /// Channel-stop message when a token refresh cannot be authorised.
    pub fn refresh_message(&self) -> String {
        match self {
            AuthError::Canceled(_) => "Query was cancelled, please try again".into(),
            _ => "Realtime was unable to connect to the project database".into(),
        }
    }
}

pub(crate) fn classify(e: tokio_postgres::Error) -> AuthError {
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => AuthError::Canceled(e.to_string()),
        Some(c) if *c == SqlState::CHECK_VIOLATION => AuthError::MissingPartition,
        Some(_) => AuthError::Policy(e.to_string()),
        None => AuthError::Unavailable(e.to_string()),
    }
}

/// Connections to tenant databases for policy checks.
#[derive(Default)]
pub struct TenantDatabases {
    crypto: OnceLock<Arc<realtime_tenants::Crypto>>,
    conns: DashMap<String, Arc<Mutex<Option<Client>>>>,
}

impl TenantDatabases {
    /// Sets the keys that decrypt the tenants' database settings (once).
    pub fn set_crypto(&self, crypto: Arc<realtime_tenants::Crypto>) {
        let _ = self.crypto.set(crypto);
    }

    /// The keys, once set.
    pub fn crypto(&self) -> Option<Arc<realtime_tenants::Crypto>> {
        self.crypto.get().cloned()
    }

    /// Drops a tenant's connection (e.g. after its settings changed).
    pub fn forget(&self, tenant: &str) {
        self.conns.remove(tenant);
    }
}

impl Gateway {
    /// Lets private channels reach tenant databases: `crypto` decrypts the `postgres_cdc_rls`
    /// settings of the registry rows. Without it private joins fail with
    /// `UnableToConnectToProject`.
    pub fn enable_tenant_databases(&self, crypto: Arc<realtime_tenants::Crypto>) {
        self.databases.set_crypto(crypto);
    }

    pub(crate) async fn connection(
        &self,
        tenant: &str,
    ) -> Result<Arc<Mutex<Option<Client>>>, AuthError> {
        let slot = self
            .databases
            .conns
            .entry(tenant.to_string())
            .or_default()
            .clone();
        {
            let mut guard = slot.lock().await;
            if guard.as_ref().map(|c| !c.is_closed()).unwrap_or(false) {
                drop(guard);
                return Ok(slot);
            }
            let crypto =
                self.databases.crypto.get().ok_or_else(|| {
                    AuthError::Unavailable("no database access configured".into())
                })?;
            let row = self
                .registry_row(tenant)
                .await
                .ok_or_else(|| AuthError::Unavailable("tenant row unavailable".into()))?;
            let settings = row
                .cdc_settings(crypto)
                .map_err(|e| AuthError::Unavailable(e.to_string()))?
                .ok_or_else(|| AuthError::Unavailable("tenant has no database settings".into()))?;
            let opts = crate::tenant_db::connect_options(&settings, APPLICATION_NAME);
            let client = realtime_pg::connect::connect(&opts)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            *guard = Some(client);
        }
        Ok(slot)
    }

    /// Read check: probe rows for `broadcast` (and `presence` when `with_presence`), visible
    /// under the caller's settings ⇒ read allowed.
    pub async fn read_policies(
        &self,
        tenant: &str,
        ctx: &AuthContext,
        with_presence: bool,
        mut policies: Policies,
    ) -> Result<Policies, AuthError> {
        let slot = self.connection(tenant).await?;
        let mut guard = slot.lock().await;
        let client = guard
            .as_mut()
            .ok_or_else(|| AuthError::Unavailable("no connection".into()))?;
        let mut exts = vec![("broadcast", uuid::Uuid::new_v4())];
        if with_presence {
            exts.push(("presence", uuid::Uuid::new_v4()));
        }
        let tx = client.transaction().await.map_err(classify)?;
        for (ext, id) in &exts {
            tx.execute(
                "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
                 VALUES ($1, $2, $3, now(), now())",
                &[id, &ctx.topic, ext],
            )
            .await
            .map_err(classify)?;
        }
        apply_settings(&tx, ctx).await?;
        let ids: Vec<uuid::Uuid> = exts.iter().map(|(_, id)| *id).collect();
        let rows = tx
            .query(
                "SELECT id FROM realtime.messages WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(classify)?;
        let visible: Vec<uuid::Uuid> = rows.iter().map(|r| r.get::<_, uuid::Uuid>(0)).collect();
        let _ = tx.rollback().await;
        for (ext, id) in &exts {
            let ok = visible.contains(id);
            match *ext {
                "broadcast" => policies.broadcast_read = Some(ok),
                _ => policies.presence_read = Some(ok),
            }
        }
        Ok(policies)
    }

    /// Write check: inserts under the caller's settings, each in a savepoint; an RLS refusal
    /// (42501) means "denied". Both extensions are evaluated together.
    pub async fn write_policies(
        &self,
        tenant: &str,
        ctx: &AuthContext,
        mut policies: Policies,
    ) -> Result<Policies, AuthError> {
        let slot = self.connection(tenant).await?;
        let mut guard = slot.lock().await;
        let client = guard
            .as_mut()
            .ok_or_else(|| AuthError::Unavailable("no connection".into()))?;
        let mut tx = client.transaction().await.map_err(classify)?;
        apply_settings(&tx, ctx).await?;
        for ext in ["broadcast", "presence"] {
            let sp = tx
                .savepoint("realtime_write_check")
                .await
                .map_err(classify)?;
            let res = sp
                .execute(
                    "INSERT INTO realtime.messages (topic, extension, inserted_at, updated_at) \
                     VALUES ($1, $2, now(), now())",
                    &[&ctx.topic, &ext],
                )
                .await;
            let allowed = match res {
                Ok(_) => true,
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
                Err(e) => return Err(classify(e)),
            };
            let _ = sp.rollback().await;
            match ext {
                "broadcast" => policies.broadcast_write = Some(allowed),
                _ => policies.presence_write = Some(allowed),
            }
        }
        let _ = tx.rollback().await;
        Ok(policies)
    }
}

/// The transaction-local settings policies read (`role`, `realtime.topic`, claims, headers).
async fn apply_settings(
    tx: &tokio_postgres::Transaction<'_>,
    ctx: &AuthContext,
) -> Result<(), AuthError> {
    let role = ctx
        .claims
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let sub = match ctx.claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let claims = Value::Object(ctx.claims.clone()).to_string();
    let headers = Value::Object(ctx.headers.clone()).to_string();
    tx.query(
        "SELECT set_config('role', $1, true), set_config('realtime.topic', $2, true), \
         set_config('request.jwt.claims', $3, true), set_config('request.jwt.claim.sub', $4, true), \
         set_config('request.jwt.claim.role', $5, true), set_config('request.headers', $6, true)",
        &[&role, &ctx.topic, &claims, &sub, &role, &headers],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

/// The two extensions policies distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Broadcast.
    Broadcast,
    /// Presence.
    Presence,
}

impl Session {
    /// The authorisation context of a joined channel.
    pub(crate) fn auth_context(&self, topic: &str) -> Option<AuthContext> {
        let ch = self.channels.get(topic)?;
        Some(AuthContext {
            topic: ch.sub().to_string(),
            claims: ch.claims.clone(),
            headers: self.headers.clone(),
        })
    }

    /// Whether the channel may write `ext`: always on public channels; on private ones the
    /// write policies are evaluated on first use and cached until the token changes (presence
    /// read is evaluated with them when still unknown). Database failures deny.
    pub(crate) async fn may_write(&mut self, topic: &str, ext: Extension) -> bool {
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
        if let Some(allowed) = known {
            return allowed;
        }
        let mut policies = ch.policies;
        let Some(ctx) = self.auth_context(topic) else {
            return false;
        };
        let tenant = self.link.tenant.clone();
        match self.gw.write_policies(&tenant, &ctx, policies).await {
            Ok(p) => policies = p,
            Err(e) => {
                tracing::warn!(tenant = %tenant, topic, error = %e, "write policy check failed");
                return false;
            }
        }
        if ext == Extension::Presence && policies.presence_read.is_none() {
            match self.gw.read_policies(&tenant, &ctx, true, policies).await {
                Ok(p) => policies = p,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, topic, error = %e, "read policy check failed");
                    return false;
                }
            }
        }
        let Some(ch) = self.channels.get_mut(topic) else {
            return false;
        };
        ch.policies = policies;
        ch.perms.set(&policies);
        match ext {
            Extension::Broadcast => policies.broadcast_write == Some(true),
            Extension::Presence => policies.presence_write == Some(true),
        }
    }

    /// After a token change on a private channel: drop cached policies and re-run the read
    /// check. `Err` carries the channel-stop message.
    pub(crate) async fn reauthorize(
        &mut self,
        topic: &str,
        before: Policies,
    ) -> Result<(), String> {
        let Some(ch) = self.channels.get(topic) else {
            return Ok(());
        };
        if !ch.private {
            return Ok(());
        }
        let sub = ch.sub().to_string();
        let with_presence = ch.presence_on;
        let Some(ctx) = self.auth_context(topic) else {
            return Ok(());
        };
        let denied = format!("You do not have permissions to read from this Channel topic: {sub}");
        let after = match self
            .gw
            .read_policies(&self.link.tenant, &ctx, with_presence, Policies::default())
            .await
        {
            Ok(p) => p,
            Err(AuthError::Policy(_)) => return Err(denied),
            Err(e) => return Err(e.refresh_message()),
        };
        let br = after.broadcast_read == Some(true);
        let pr = after.presence_read == Some(true);
        if !br && !pr {
            return Err(denied);
        }
        let lost = (before.broadcast_read == Some(true) && !br)
            || (before.presence_read == Some(true) && after.presence_read == Some(false));
        if lost {
            return Err(format!(
                "You no longer have permission to read from this Channel topic: {sub}"
            ));
        }
        if let Some(ch) = self.channels.get_mut(topic) {
            ch.policies = after;
            ch.perms.set(&after);
        }
        Ok(())
    }
}
