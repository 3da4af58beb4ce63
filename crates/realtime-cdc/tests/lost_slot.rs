//! A slot invalidated by `max_slot_wal_keep_size` (wal_status 'lost') stops the pipeline with
//! a clear error, and is replaced on the next attempt; a pipeline that stops for good under
//! live channels tells them, so they subscribe again. Its own test binary: it changes server
//! settings and the superuser's password of the process's cluster.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_lost_slot_is_reported_and_replaced() {
    let env = env("").await;
    let slot = format!("supabase_realtime_replication_slot_{}", env.db.name);
    env.exec("alter system set max_slot_wal_keep_size = '1MB'")
        .await;
    env.exec("select pg_reload_conf()").await;
    env.sql
        .execute(
            "select pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    // Move WAL past the slot by several segments, then checkpoint: the slot is invalidated.
    let mut lost = false;
    for _ in 0..10 {
        env.exec("insert into public.test select g, repeat('x', 100), null from generate_series(1, 2000) g on conflict do nothing").await;
        env.exec("delete from public.test").await;
        env.exec("select pg_switch_wal()").await;
        env.exec("checkpoint").await;
        let status: Option<String> = env
            .sql
            .query_one(
                "select wal_status from pg_replication_slots where slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        if status.as_deref() == Some("lost") {
            lost = true;
            break;
        }
    }
    env.exec("alter system reset max_slot_wal_keep_size").await;
    env.exec("select pg_reload_conf()").await;
    assert!(lost, "could not get the slot invalidated");

    let err = match env
        .try_subscribe(anon(), vec![json!({"schema": "public", "table": "test"})])
        .await
    {
        Ok(_) => panic!("subscribed on a lost slot"),
        Err(e) => e,
    };
    assert!(
        err.to_string()
            .contains("was invalidated (wal_status 'lost')"),
        "{err}"
    );
    assert!(err.is_retryable());

    // The next attempt creates a fresh slot and streams.
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    env.exec("insert into public.test values (1,'fresh',null)")
        .await;
    assert_eq!(ch.next_data().await["record"]["details"], "fresh");

    // The pipeline's credentials stop working while it streams: after its connection is cut
    // it cannot come back, says so, and lets go of its channels (they subscribe again).
    env.exec("alter role supabase_admin password 'changed'")
        .await;
    env.exec("select pg_terminate_backend(pid) from pg_stat_replication")
        .await;
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut told = false;
        while let Some(ev) = ch.rx.recv().await {
            if let realtime_cdc::CdcEvent::System(v) = ev {
                told |= v["status"] == "error";
            }
        }
        told
    })
    .await;
    env.exec("alter role supabase_admin password 'postgres'")
        .await;
    assert_eq!(stopped, Ok(true), "the channel was not told and released");
}
