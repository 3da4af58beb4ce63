//! Changes judged in batches that span transactions: commit order per subscriber across
//! batches, and a policy that raises for one subscriber in the middle of a batch.

mod common;

use common::*;
use realtime_cdc::CdcEvent;
use serde_json::json;

const ROWS: i32 = 300;

#[tokio::test]
async fn many_transactions_keep_commit_order_and_a_raising_policy_stays_local() {
    let env = env("create table public.feed (id int primary key, owner uuid);
                   alter table public.feed enable row level security;
                   create policy p on public.feed for select to authenticated
                     using (case when (auth.jwt() ->> 'boom') = 'yes' then (1 / (id - id)) = 1
                                 else owner = auth.uid() or owner is null end);
                   grant select on public.feed to authenticated;
                   alter publication supabase_realtime add table public.feed;")
    .await;
    let subs = [
        "00000000-0000-0000-0000-00000000000a",
        "00000000-0000-0000-0000-00000000000b",
        "00000000-0000-0000-0000-00000000000c",
    ];
    let entry = vec![json!({"event": "INSERT", "schema": "public", "table": "feed"})];
    let mut channels = Vec::new();
    for s in subs {
        channels.push(
            env.subscribe(json!({"role": "authenticated", "sub": s}), entry.clone())
                .await,
        );
    }
    let mut boom = env
        .subscribe(
            json!({"role": "authenticated", "sub": subs[0], "boom": "yes"}),
            entry,
        )
        .await;
    // One transaction per row, sent without waiting for each commit's reply, so that many
    // transactions are waiting whenever a check runs.
    let client = env.db.connect().await;
    let stmt = client
        .prepare("insert into public.feed values ($1, $2::text::uuid)")
        .await
        .unwrap();
    let inserts = (1..=ROWS).map(|i| {
        let owner: Option<String> = match i % 4 {
            0 => None,
            k => Some(subs[k as usize - 1].to_string()),
        };
        let (client, stmt) = (&client, &stmt);
        async move { client.execute(stmt, &[&i, &owner]).await.unwrap() }
    });
    futures_util::future::join_all(inserts).await;
    let committed: Vec<(i32, Option<String>)> = client
        .query(
            "select id, owner::text from public.feed order by xmin::text::bigint, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (k, ch) in channels.iter_mut().enumerate() {
        let expected: Vec<i32> = committed
            .iter()
            .filter(|(_, o)| o.as_deref().is_none_or(|o| o == subs[k]))
            .map(|(id, _)| *id)
            .collect();
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            seen.push(ch.next_data().await["record"]["id"].as_i64().unwrap() as i32);
        }
        assert_eq!(seen, expected, "subscriber {k}");
        ch.assert_quiet(300).await;
    }
    // The raising subscriber is told (once per batch at most) and sees nothing.
    match boom.next_event().await {
        CdcEvent::System(v) => {
            assert_eq!(v["status"], "error");
            assert!(
                v["message"].as_str().unwrap().contains("division by zero"),
                "{v}"
            );
        }
        other => panic!("expected a system error, got {other:?}"),
    }
    while let Ok(Some(ev)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), boom.rx.recv()).await
    {
        assert!(
            matches!(ev, CdcEvent::System(_)),
            "a change reached the raising subscriber"
        );
    }
}
