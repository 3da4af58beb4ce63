//! A database restart in the middle of a stream of inserts: every committed insert arrives
//! exactly once, to subscribers whose rows go through the RLS gate in batches. Its own test
//! binary, since it restarts the process's whole cluster.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use realtime_cdc::CdcEvent;
use serde_json::json;

const ROWS: i32 = 120;

#[tokio::test]
async fn restart_loses_and_duplicates_nothing() {
    // A policy that depends on the claims, so every batch is judged by the database.
    let env = env("alter table public.test enable row level security;
         create policy p on public.test for select
           using (current_user = 'anon' or (auth.jwt() ->> 'sub') is not null);")
    .await;
    let entry = vec![json!({"event": "INSERT", "schema": "public", "table": "test"})];
    let anon_ch = env.subscribe(anon(), entry.clone()).await;
    let user_ch = env
        .subscribe(
            json!({"role": "authenticated", "sub": "00000000-0000-0000-0000-00000000000a"}),
            entry,
        )
        .await;
    let db = env.db.clone();
    let writer = tokio::spawn(async move {
        let mut client = db.connect().await;
        for i in 1..=ROWS {
            if i == ROWS / 3 {
                tokio::task::spawn_blocking(|| realtime_testkit::Cluster::shared().restart())
                    .await
                    .unwrap();
            }
            loop {
                // `on conflict do nothing`: a retry after an ambiguous failure cannot insert twice.
                match client
                    .execute(
                        "insert into public.test values ($1, 'x', null) on conflict do nothing",
                        &[&i],
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        client = db.connect().await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
    });
    let client = writer.await.unwrap();
    let committed: BTreeSet<i32> = client
        .query("select id from public.test", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(committed.len(), ROWS as usize);

    for mut ch in [anon_ch, user_ch] {
        let mut seen: Vec<i32> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < committed.len() && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, ch.rx.recv()).await {
                Ok(Some(CdcEvent::Change { data, .. })) => {
                    let d: serde_json::Value = serde_json::from_str(data.get()).unwrap();
                    seen.push(d["record"]["id"].as_i64().unwrap() as i32);
                }
                Ok(Some(CdcEvent::System(v))) => panic!("unexpected system message {v}"),
                Ok(None) | Err(_) => break,
            }
        }
        // Nothing more arrives: no duplicates after the last one either.
        ch.assert_quiet(1000).await;
        let unique: BTreeSet<i32> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
        assert_eq!(unique, committed);
        // Commit order is kept.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
    }
}
