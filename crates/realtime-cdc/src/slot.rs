//! The persistent pgoutput slot both WAL consumers stream from: its name, setting it up before
//! streaming (create, adopt, recreate one that vanished or was invalidated) and releasing it.
//!
//! A slot another session holds is never taken from a live holder: only one whose lease ran
//! out ([`crate::slot_lease`]) is terminated; otherwise opening fails with
//! [`SlotError::InUse`] and the consumer waits as a standby.

use std::time::Duration;

use realtime_pg::replication::{LogicalStream, ReplicationError, ReplicationStream, StartOptions};
use realtime_pg::slot_holder;
use realtime_pg::{ConnectOptions, Lsn};

use crate::slot_lease::{Lease, Verdict};

/// How long a terminated holder gets to exit before the attempt is left to the next round.
const TERMINATED_EXIT_WAIT: Duration = Duration::from_secs(5);

/// `<base>_<suffix>`; an absent suffix counts as empty, as in the official image, so the
/// default is `supabase_realtime_replication_slot_`. Characters PostgreSQL does not allow in
/// slot names are replaced by `_`, upper case becomes lower case, and the name is cut at
/// PostgreSQL's 63 bytes.
pub fn slot_name(base: &str, suffix: Option<&str>) -> String {
    let raw = format!("{base}_{}", suffix.unwrap_or(""));
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    name.truncate(63);
    name
}

/// What to do with a slot found invalidated (`wal_status = 'lost'`: the WAL it needed was
/// removed, beyond `max_slot_wal_keep_size`). It is dropped either way, since it can never
/// stream again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLost {
    /// Report [`SlotError::Lost`]: the consumer stops and says changes were lost.
    Report,
    /// Log `ReplicationSlotLost` and carry on with a new slot.
    Recreate,
}

/// Where a consumer streams from.
#[derive(Debug, Clone)]
pub struct SlotTarget {
    /// Tenant external id, for logs.
    pub external_id: String,
    /// The replication session's connection settings.
    pub conn: ConnectOptions,
    /// The slot, `[a-z0-9_]` only (see [`slot_name`]).
    pub slot: String,
    /// pgoutput options of `START_REPLICATION`.
    pub start: StartOptions,
    /// What to do with an invalidated slot.
    pub on_lost: OnLost,
    /// Progress figures, updated by the session loop.
    pub stats: std::sync::Arc<crate::stats::SlotStats>,
    /// When another holder counts as gone; also bounds our own status interval.
    pub lease: Lease,
}

/// Why the slot cannot be streamed from, or released. No variant carries a password.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Another session streams from the slot and is not known to be gone; try again later.
    #[error("replication slot {slot} is in use by {}", holder.as_deref().unwrap_or("another session"))]
    InUse {
        /// The slot name.
        slot: String,
        /// The holder's process id, when known.
        pid: Option<i32>,
        /// The holder, for logs (`PID 42 (application from address, state)`), when known.
        holder: Option<String>,
    },
    /// A slot with our name was made for another database or plugin: never touched.
    #[error("replication slot {slot} exists for another use ({detail}); set SLOT_NAME_SUFFIX so each tenant database gets its own slot")]
    Conflict {
        /// The slot name.
        slot: String,
        /// Its plugin and database.
        detail: String,
    },
    /// The slot was invalidated and has been dropped ([`OnLost::Report`]).
    #[error("replication slot {slot} was invalidated (wal_status 'lost'): the WAL it needed was removed, so changes were lost")]
    Lost {
        /// The slot name.
        slot: String,
    },
    /// The replication connection could not be opened.
    #[error("cannot open the replication connection to the tenant database: {0}")]
    Connect(#[source] ReplicationError),
    /// `CREATE_REPLICATION_SLOT` failed.
    #[error("cannot create replication slot {slot}: {source}")]
    Create {
        /// The slot name.
        slot: String,
        /// The server's answer (boxed: it is large and rare).
        source: Box<ReplicationError>,
    },
    /// Checking the slot or starting to stream failed.
    #[error("{0}")]
    Replication(#[from] ReplicationError),
    /// Releasing the slot failed; it keeps holding WAL until a later start adopts it or an
    /// operator drops it.
    #[error("replication slot {slot} was not released: {reason}")]
    NotReleased {
        /// The slot name.
        slot: String,
        /// Why.
        reason: String,
    },
}

/// What a look at `pg_replication_slots` found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    active: bool,
    pid: Option<i32>,
    plugin: Option<String>,
    same_database: bool,
    lost: bool,
}

/// What to do with the slot before streaming, from what was found: the pure part of the
/// set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Create it.
    Create,
    /// Stream from it as it is.
    Adopt,
    /// Drop it, then create it; `lost` when it was invalidated.
    Replace { lost: bool },
}

fn plan(slot: &str, found: Option<Found>, recreate: bool) -> Result<Plan, SlotError> {
    let Some(f) = found else {
        return Ok(Plan::Create);
    };
    if f.active {
        return Err(SlotError::InUse {
            slot: slot.to_string(),
            pid: f.pid,
            holder: f.pid.map(|p| format!("PID {p}")),
        });
    }
    if f.plugin.as_deref() != Some("pgoutput") || !f.same_database {
        return Err(SlotError::Conflict {
            slot: slot.to_string(),
            detail: format!("plugin {:?}, same database: {}", f.plugin, f.same_database),
        });
    }
    // Dropped even when it is only to be reported, so the next start begins afresh.
    if f.lost {
        return Ok(Plan::Replace { lost: true });
    }
    Ok(if recreate {
        Plan::Replace { lost: false }
    } else {
        Plan::Adopt
    })
}

/// Slot names the server accepts, `[a-z0-9_]{1,63}`; checked before a name is spliced into
/// SQL.
fn check_name(slot: &str) -> Result<(), SlotError> {
    realtime_pg::replication::check_slot_name(slot).map_err(SlotError::from)
}

async fn inspect(repl: &mut ReplicationStream, slot: &str) -> Result<Option<Found>, SlotError> {
    // The name was checked (`check_name`), so splicing it is safe.
    let rows = repl
        .simple_query(&format!(
            "SELECT active::text, active_pid::text, plugin::text, (database = current_database())::text, wal_status::text \
             FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .await?;
    Ok(rows.first().map(|row| {
        let col = |i: usize| row.get(i).cloned().flatten();
        Found {
            active: col(0).as_deref() == Some("true"),
            pid: col(1).and_then(|p| p.parse().ok()),
            plugin: col(2),
            same_database: col(3).as_deref() == Some("true"),
            lost: col(4).as_deref() == Some("lost"),
        }
    }))
}

async fn drop_inactive(repl: &mut ReplicationStream, slot: &str) -> Result<(), SlotError> {
    repl.simple_query(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = '{slot}' AND NOT active"
    ))
    .await?;
    Ok(())
}

/// Opens a replication session and starts streaming from the slot's confirmed position, with
/// no step of the consumer's own before the slot is created. See [`open_with`].
pub async fn open(target: &SlotTarget, recreate: bool) -> Result<LogicalStream, SlotError> {
    open_with(target, recreate, async |_: &mut ReplicationStream| {
        Ok::<(), SlotError>(())
    })
    .await
}

/// Opens a replication session, sets the slot up and starts streaming from its confirmed
/// position:
/// - a slot held by a live session is never taken ([`SlotError::InUse`]); a holder silent
///   for longer than [`SlotTarget::lease`] is terminated and the slot adopted;
/// - a slot made for another database or plugin is never touched ([`SlotError::Conflict`]);
/// - an invalidated slot is dropped, then reported or replaced per [`SlotTarget::on_lost`];
/// - `recreate` drops an existing (inactive) slot first: its pending WAL cannot be decoded;
/// - `before_create` runs before the slot is created (a publication must exist before the
///   slot's starting point);
/// - a slot that vanished before streaming started (dropped by an operator, or by the
///   clean-up of a consumer this process just ended) is made again, once;
/// - a slot made by this call is released when streaming cannot start, so it holds no WAL
///   for nobody.
pub async fn open_with<E>(
    target: &SlotTarget,
    recreate: bool,
    mut before_create: impl AsyncFnMut(&mut ReplicationStream) -> Result<(), E>,
) -> Result<LogicalStream, E>
where
    E: From<SlotError>,
{
    check_name(&target.slot)?;
    let mut recreate = recreate;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut repl = ReplicationStream::connect(&target.conn)
            .await
            .map_err(SlotError::Connect)?;
        let created = match prepare(target, &mut repl, recreate, &mut before_create).await {
            Ok(created) => created,
            Err(e) => {
                repl.close().await;
                return Err(e);
            }
        };
        let e = match repl
            .start_with(&target.slot, Lsn::ZERO, &target.start)
            .await
        {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        if created {
            if let Err(e) = release(target, Duration::from_secs(2)).await {
                tracing::warn!(external_id = %target.external_id, error = %e, "could not release the replication slot");
            }
        }
        match e {
            ReplicationError::SlotInUse { pid, .. } => {
                return Err(SlotError::InUse {
                    slot: target.slot.clone(),
                    pid,
                    holder: pid.map(|p| format!("PID {p}")),
                }
                .into())
            }
            ReplicationError::SlotNotFound(_) if attempt == 1 => {
                tracing::info!(external_id = %target.external_id, slot = %target.slot, "replication slot vanished before streaming started; making it again");
            }
            // Invalidated between the check and the start: the next round sees it lost.
            ReplicationError::SlotInvalidated(_) if attempt == 1 => {}
            e => return Err(SlotError::Replication(e).into()),
        }
        recreate = false;
    }
}

/// Checks, drops and creates as needed; returns whether the slot was created now.
async fn prepare<E: From<SlotError>>(
    target: &SlotTarget,
    repl: &mut ReplicationStream,
    recreate: bool,
    before_create: &mut impl AsyncFnMut(&mut ReplicationStream) -> Result<(), E>,
) -> Result<bool, E> {
    let slot = &target.slot;
    let mut found = inspect(repl, slot).await?;
    if found.as_ref().is_some_and(|f| f.active) && replace_gone_holder(target, repl).await? {
        found = inspect(repl, slot).await?;
    }
    let plan = plan(slot, found, recreate)?;
    match plan {
        Plan::Adopt => {
            tracing::info!(external_id = %target.external_id, %slot, "resuming from the existing replication slot");
        }
        Plan::Replace { lost: true } => {
            drop_inactive(repl, slot).await?;
            if target.on_lost == OnLost::Report {
                return Err(SlotError::Lost { slot: slot.clone() }.into());
            }
            // What was committed while nobody streamed is lost; replay is the clients' way
            // to catch up.
            tracing::error!(
                external_id = %target.external_id,
                %slot,
                "ReplicationSlotLost: replication slot was invalidated (max_slot_wal_keep_size); recreating it, changes committed while disconnected are not delivered"
            );
        }
        Plan::Replace { lost: false } => {
            tracing::error!(
                external_id = %target.external_id,
                %slot,
                "ReplicationSlotUnusable: the slot's pending WAL cannot be decoded; recreating the slot, changes committed in between are not delivered"
            );
            drop_inactive(repl, slot).await?;
        }
        Plan::Create => {}
    }
    before_create(repl).await?;
    if plan == Plan::Adopt {
        return Ok(false);
    }
    match repl.create_slot(slot, false).await {
        Ok(_) => Ok(true),
        // Created by someone else between our check and now.
        Err(ReplicationError::SlotExists(_)) => Err(SlotError::InUse {
            slot: slot.clone(),
            pid: None,
            holder: None,
        }
        .into()),
        Err(e) => Err(SlotError::Create {
            slot: slot.clone(),
            source: Box::new(e),
        }
        .into()),
    }
}

/// Looks at the slot's holder: a live one (or one that is no walsender) ends the attempt with
/// [`SlotError::InUse`]; one whose lease ran out is terminated, in a statement that re-checks
/// it is still the same silent walsender, and waited for. Returns whether the slot was freed.
async fn replace_gone_holder(
    target: &SlotTarget,
    repl: &mut ReplicationStream,
) -> Result<bool, SlotError> {
    let slot = &target.slot;
    let Some(holder) = slot_holder::slot_holder(repl, slot).await? else {
        // Released between the two looks.
        return Ok(true);
    };
    let in_use = |holder: &slot_holder::SlotHolder| SlotError::InUse {
        slot: slot.clone(),
        pid: Some(holder.pid),
        holder: Some(holder.describe()),
    };
    let silent_for = match target.lease.judge(&holder, std::time::Instant::now()) {
        Verdict::Expired { silent_for } => silent_for,
        Verdict::Live { .. } | Verdict::Unknown => return Err(in_use(&holder)),
    };
    tracing::warn!(
        external_id = %target.external_id,
        %slot,
        holder = %holder.describe(),
        ?silent_for,
        lease = ?target.lease.duration(),
        "the replication slot's holder sent no status update for longer than its lease; terminating it"
    );
    if !slot_holder::terminate_unchanged_holder(repl, slot, &holder).await? {
        // It replied, or left, at the last moment: judged again next round.
        return Err(in_use(&holder));
    }
    let deadline = tokio::time::Instant::now() + TERMINATED_EXIT_WAIT;
    while tokio::time::Instant::now() < deadline {
        match slot_holder::slot_holder(repl, slot).await? {
            None => return Ok(true),
            Some(h) if h.pid != holder.pid => return Err(in_use(&h)),
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Err(in_use(&holder))
}

/// Drops the slot once no session holds it (our own walsender may still be exiting); gives up
/// after `wait` rather than touch a slot someone else streams from. A slot a standby waits for
/// ([`crate::slot_standby`]) is left for it to adopt.
pub async fn release(target: &SlotTarget, wait: Duration) -> Result<(), SlotError> {
    let slot = &target.slot;
    let not_released = |reason: String| SlotError::NotReleased {
        slot: slot.clone(),
        reason,
    };
    if let Err(e) = check_name(slot) {
        return Err(not_released(e.to_string()));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let awaited = crate::slot_standby::awaited_sql(slot);
    let attempt = async {
        let mut repl = ReplicationStream::connect(&target.conn)
            .await
            .map_err(|e| not_released(e.to_string()))?;
        let ours = target.stats.walsender();
        let result = loop {
            let rows = repl
                .simple_query(&format!(
                    "SELECT active::text, CASE WHEN active THEN NULL WHEN {awaited} THEN 'awaited' \
                     ELSE pg_drop_replication_slot(slot_name)::text END, active_pid::text \
                     FROM pg_replication_slots WHERE slot_name = '{slot}'"
                ))
                .await;
            match rows {
                Ok(rows) => match rows.first() {
                    None => break Ok(false),
                    Some(row) if row.first().cloned().flatten().as_deref() == Some("false") => {
                        break Ok(row.get(1).cloned().flatten().as_deref() == Some("awaited"))
                    }
                    // Our session is closed: another walsender streaming now is a standby
                    // that already took the slot over.
                    Some(row)
                        if ours.is_some()
                            && row
                                .get(2)
                                .cloned()
                                .flatten()
                                .and_then(|p| p.parse::<i32>().ok())
                                .is_some_and(|pid| Some(pid) != ours) =>
                    {
                        break Ok(true)
                    }
                    Some(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Some(_) => break Err(not_released("the slot is still in use".into())),
                },
                Err(e) => break Err(not_released(e.to_string())),
            }
        };
        repl.close().await;
        result
    };
    let left = match tokio::time::timeout(wait + Duration::from_secs(5), attempt).await {
        Ok(r) => r?,
        Err(_) => return Err(not_released(format!("timed out after {wait:?}"))),
    };
    if left {
        tracing::info!(external_id = %target.external_id, %slot, "replication slot left in place: a standby waits to take it over");
    } else {
        tracing::info!(external_id = %target.external_id, %slot, "replication slot released");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            slot_name("supabase_realtime_replication_slot", None),
            "supabase_realtime_replication_slot_"
        );
        assert_eq!(
            slot_name("supabase_realtime_replication_slot", Some("eu-1")),
            "supabase_realtime_replication_slot_eu_1"
        );
        assert_eq!(slot_name("s", Some(&"x".repeat(80))).len(), 63);
        for name in ["supabase_realtime_replication_slot_", "a1_b"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
        for bad in ["", "Upper", "a-b", "x'; drop", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    fn found() -> Found {
        Found {
            active: false,
            pid: None,
            plugin: Some("pgoutput".into()),
            same_database: true,
            lost: false,
        }
    }

    #[test]
    fn plans() {
        assert_eq!(plan("s", None, false).unwrap(), Plan::Create);
        assert_eq!(plan("s", None, true).unwrap(), Plan::Create);
        assert_eq!(plan("s", Some(found()), false).unwrap(), Plan::Adopt);
        assert_eq!(
            plan("s", Some(found()), true).unwrap(),
            Plan::Replace { lost: false }
        );
        let lost = Found {
            lost: true,
            ..found()
        };
        for recreate in [false, true] {
            assert_eq!(
                plan("s", Some(lost.clone()), recreate).unwrap(),
                Plan::Replace { lost: true }
            );
        }
        let busy = Found {
            active: true,
            pid: Some(42),
            ..lost
        };
        assert!(matches!(
            plan("s", Some(busy), true),
            Err(SlotError::InUse { pid: Some(42), .. })
        ));
        for foreign in [
            Found {
                plugin: Some("test_decoding".into()),
                ..found()
            },
            Found {
                same_database: false,
                ..found()
            },
        ] {
            let e = plan("s", Some(foreign), true).unwrap_err();
            assert!(matches!(e, SlotError::Conflict { .. }), "{e:?}");
            assert!(e.to_string().contains("SLOT_NAME_SUFFIX"), "{e}");
        }
    }
}
