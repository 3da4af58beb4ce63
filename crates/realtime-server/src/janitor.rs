//! The partition janitor (`RUN_JANITOR=true`): after `JANITOR_RUN_AFTER_IN_MS` plus one period,
//! and then every `JANITOR_SCHEDULE_TIMER_IN_MS` (plus 1–59 random minutes when
//! `JANITOR_SCHEDULE_RANDOMIZE`), every tenant database gets its `realtime.messages` partitions
//! for today-1 … today+3 and loses the expired ones.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use realtime_cdc::tenant_admin;

/// Starts the janitor when enabled; it stops with `shutdown`.
pub fn spawn(state: AppState, shutdown: CancellationToken) {
    if !state.config.janitor.enabled {
        return;
    }
    tokio::spawn(async move {
        let first = state.config.janitor.run_after + period(&state);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(first) => {}
        }
        loop {
            run_once(&state).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period(&state)) => {}
            }
        }
    });
}

fn period(state: &AppState) -> Duration {
    let janitor = &state.config.janitor;
    let extra = if janitor.schedule_randomize {
        Duration::from_secs(60 * rand::thread_rng().gen_range(1..60u64))
    } else {
        Duration::ZERO
    };
    janitor.schedule_timer + extra
}

/// One pass over every tenant with a database, `JANITOR_MAX_CHILDREN` at a time.
pub async fn run_once(state: &AppState) {
    let tenants = match state.registry.list().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(
                error_code = "JanitorFailedToDeleteOldMessages",
                "JanitorFailedToDeleteOldMessages: cannot list tenants: {e}"
            );
            return;
        }
    };
    let crypto = state.crypto.clone();
    let timeout = state
        .config
        .janitor
        .children_timeout
        .max(Duration::from_secs(30));
    stream::iter(tenants.into_iter().filter(|t| t.cdc_extension().is_some()))
        .for_each_concurrent(state.config.janitor.max_children.max(1), |tenant| {
            let crypto = Arc::clone(&crypto);
            async move {
                let id = tenant.external_id.clone();
                match tokio::time::timeout(timeout, tenant_admin::maintain_partitions(&crypto, &tenant)).await {
                    Ok(Ok(dropped)) => {
                        if !dropped.is_empty() {
                            tracing::info!(project = %id, external_id = %id, "Janitor dropped {} old partitions", dropped.len());
                        }
                    }
                    Ok(Err(e)) => tracing::error!(
                        project = %id,
                        external_id = %id,
                        error_code = "JanitorFailedToDeleteOldMessages",
                        "JanitorFailedToDeleteOldMessages: {e}"
                    ),
                    Err(_) => tracing::error!(
                        project = %id,
                        external_id = %id,
                        error_code = "JanitorFailedToDeleteOldMessages",
                        "JanitorFailedToDeleteOldMessages: timed out"
                    ),
                }
            }
        })
        .await;
}
