//! Private-channel authorization (PROTOCOL.md §11): read and write checks decided by the
//! tenant database's RLS policies on `realtime.messages`, inside transactions that are always
//! rolled back, as upstream's `Realtime.Tenants.Authorization` runs them.

use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

/// Application name of the policy-check connections.
pub const APPLICATION_NAME: &str = "realtime_rls";

/// Read probe: one row per extension, inserted with the connection's own rights.
const INSERT_PROBE: &str =
    "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
     VALUES ($1, $2, $3, now(), now())";
/// Read check: which probe rows the caller's settings make visible.
const SELECT_PROBES: &str = "SELECT id FROM realtime.messages WHERE id = ANY($1)";
/// Write check: an insert under the caller's settings.
const INSERT_AS_CALLER: &str =
    "INSERT INTO realtime.messages (topic, extension, inserted_at, updated_at) \
     VALUES ($1, $2, now(), now())";
/// The transaction-local settings policies read.
const SET_CALLER: &str =
    "SELECT set_config('role', $1, true), set_config('realtime.topic', $2, true), \
     set_config('request.jwt.claims', $3, true), set_config('request.jwt.claim.sub', $4, true), \
     set_config('request.jwt.claim.role', $5, true), set_config('request.headers', $6, true)";
/// Savepoint around each write probe, so a refused insert does not end the transaction.
const WRITE_SAVEPOINT: &str = "realtime_write_check";

/// Who asks, about which topic.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Sub-topic (`room1`, not `realtime:room1`).
    pub topic: String,
    /// Verified claims.
    pub claims: Map<String, Value>,
    /// The caller's `x-` headers.
    pub headers: Map<String, Value>,
}

/// What the read policies allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAccess {
    /// `broadcast` rows are readable.
    pub broadcast: bool,
    /// `presence` rows are readable; `None` when not asked.
    pub presence: Option<bool>,
}

/// What the write policies allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAccess {
    /// `broadcast` rows may be inserted.
    pub broadcast: bool,
    /// `presence` rows may be inserted.
    pub presence: bool,
}

/// Why a check could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
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

impl PolicyError {
    /// Classifies a failed statement: cancelled, missing partition (an insert no partition
    /// accepts is a check violation), a policy's own error, or no database at all.
    pub fn from_sql(e: &tokio_postgres::Error) -> PolicyError {
        PolicyError::from_code(e.code(), e.to_string())
    }

    fn from_code(code: Option<&SqlState>, text: String) -> PolicyError {
        match code {
            Some(c) if *c == SqlState::QUERY_CANCELED => PolicyError::Canceled(text),
            Some(c) if *c == SqlState::CHECK_VIOLATION => PolicyError::MissingPartition,
            Some(_) => PolicyError::Policy(text),
            None => PolicyError::Unavailable(text),
        }
    }
}

/// The values [`SET_CALLER`] gives the transaction, in its parameter order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallerSettings {
    /// `role` (also `request.jwt.claim.role`): the claims' `role` string, else empty.
    role: String,
    /// `realtime.topic`.
    topic: String,
    /// `request.jwt.claims`: the claims as JSON.
    claims: String,
    /// `request.jwt.claim.sub`: a string `sub` as is, another value as JSON, none as empty.
    sub: String,
    /// `request.headers`: the `x-` headers as JSON.
    headers: String,
}

impl CallerSettings {
    fn new(ctx: &PolicyContext) -> CallerSettings {
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
        CallerSettings {
            role,
            topic: ctx.topic.clone(),
            claims: Value::Object(ctx.claims.clone()).to_string(),
            sub,
            headers: Value::Object(ctx.headers.clone()).to_string(),
        }
    }

    /// Sets them for the rest of `tx`.
    async fn apply(&self, tx: &Transaction<'_>) -> Result<(), PolicyError> {
        tx.query(
            SET_CALLER,
            &[
                &self.role,
                &self.topic,
                &self.claims,
                &self.sub,
                &self.role,
                &self.headers,
            ],
        )
        .await
        .map_err(|e| PolicyError::from_sql(&e))?;
        Ok(())
    }
}

/// Read check: probe rows for `broadcast` (and `presence` when `with_presence`) are inserted,
/// then selected under the caller's settings; a visible probe means read allowed.
pub async fn check_read(
    client: &mut Client,
    ctx: &PolicyContext,
    with_presence: bool,
) -> Result<ReadAccess, PolicyError> {
    let sql = |e: tokio_postgres::Error| PolicyError::from_sql(&e);
    let broadcast_id = Uuid::new_v4();
    let presence_id = with_presence.then(Uuid::new_v4);
    let mut probes = vec![("broadcast", broadcast_id)];
    if let Some(id) = presence_id {
        probes.push(("presence", id));
    }
    let tx = client.transaction().await.map_err(sql)?;
    for (ext, id) in &probes {
        tx.execute(INSERT_PROBE, &[id, &ctx.topic, ext])
            .await
            .map_err(sql)?;
    }
    CallerSettings::new(ctx).apply(&tx).await?;
    let ids: Vec<Uuid> = probes.iter().map(|(_, id)| *id).collect();
    let rows = tx.query(SELECT_PROBES, &[&ids]).await.map_err(sql)?;
    let mut visible = Vec::with_capacity(rows.len());
    for r in &rows {
        visible.push(r.try_get::<_, Uuid>(0).map_err(sql)?);
    }
    let _ = tx.rollback().await;
    Ok(ReadAccess {
        broadcast: visible.contains(&broadcast_id),
        presence: presence_id.map(|id| visible.contains(&id)),
    })
}

/// Write check: under the caller's settings, one insert per extension, each in a savepoint;
/// an RLS refusal (42501) means denied. Both extensions are evaluated together.
pub async fn check_write(
    client: &mut Client,
    ctx: &PolicyContext,
) -> Result<WriteAccess, PolicyError> {
    let sql = |e: tokio_postgres::Error| PolicyError::from_sql(&e);
    let mut tx = client.transaction().await.map_err(sql)?;
    CallerSettings::new(ctx).apply(&tx).await?;
    let mut allowed = [false; 2];
    for (slot, ext) in allowed.iter_mut().zip(["broadcast", "presence"]) {
        let sp = tx.savepoint(WRITE_SAVEPOINT).await.map_err(sql)?;
        *slot = match sp.execute(INSERT_AS_CALLER, &[&ctx.topic, &ext]).await {
            Ok(_) => true,
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
            Err(e) => return Err(sql(e)),
        };
        let _ = sp.rollback().await;
    }
    let _ = tx.rollback().await;
    Ok(WriteAccess {
        broadcast: allowed[0],
        presence: allowed[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(claims: Value) -> PolicyContext {
        PolicyContext {
            topic: "room:1".into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            headers: json!({"x-tenant": "a"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn caller_settings_from_claims() {
        let s = CallerSettings::new(&ctx(json!({"role": "authenticated", "sub": "u1"})));
        assert_eq!(s.role, "authenticated");
        assert_eq!(s.sub, "u1");
        assert_eq!(s.topic, "room:1");
        assert_eq!(s.claims, r#"{"role":"authenticated","sub":"u1"}"#);
        assert_eq!(s.headers, r#"{"x-tenant":"a"}"#);
    }

    #[test]
    fn caller_settings_without_role_or_string_sub() {
        let s = CallerSettings::new(&ctx(json!({"role": 5, "sub": 42})));
        assert_eq!(s.role, "");
        assert_eq!(s.sub, "42");
        let s = CallerSettings::new(&ctx(json!({"sub": null})));
        assert_eq!(s.role, "");
        assert_eq!(s.sub, "");
        assert_eq!(s.claims, r#"{"sub":null}"#);
    }

    #[test]
    fn errors_by_sqlstate() {
        let e = |c: Option<&SqlState>| PolicyError::from_code(c, "x".into());
        assert!(matches!(
            e(Some(&SqlState::QUERY_CANCELED)),
            PolicyError::Canceled(_)
        ));
        assert!(matches!(
            e(Some(&SqlState::CHECK_VIOLATION)),
            PolicyError::MissingPartition
        ));
        assert!(matches!(
            e(Some(&SqlState::RAISE_EXCEPTION)),
            PolicyError::Policy(_)
        ));
        assert!(matches!(e(None), PolicyError::Unavailable(_)));
    }
}
