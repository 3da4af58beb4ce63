//! postgres_changes through the whole server (PROTOCOL.md §8; §16 cases 65 and 66): the join
//! registers bindings with the change pipeline, the channel is told the outcome, and changes
//! arrive as `{"ids","data"}` pushes.

mod gateway_common;
mod support;

use std::time::{Duration, Instant};

use gateway_common::{event, join_config, payload, Client};
use serde_json::json;
use support::{now, sign, wait_migrated, TestServer, JWT_SECRET};

/// Creating a logical slot waits for every transaction running in the cluster, which on a
/// loaded machine (other tests migrating their databases) can take tens of seconds.
const REPLICATION_START_WAIT_MS: u64 = 120_000;

async fn connect(server: &TestServer) -> Client {
    let token = sign(
        &json!({"role": "authenticated", "exp": now() + 3600, "sub": "u1"}),
        JWT_SECRET,
    );
    Client {
        ws: server.socket(&token, "2.0.0").await,
        v2: true,
    }
}

/// Waits for the next `system` push, skipping nothing else.
async fn system(c: &mut Client) -> serde_json::Value {
    let f = match c.next_within(REPLICATION_START_WAIT_MS).await {
        gateway_common::Seen::Text(f) => f,
        other => panic!("expected a system message, got {other:?}"),
    };
    assert_eq!(event(&f), "system", "{f}");
    f
}

/// A server over a fresh database, with its own replication slot names (the tests of this
/// file run at once).
async fn server() -> TestServer {
    TestServer::with_own_slots(&[("CHANNEL_ERROR_BACKOFF_MS", "50")]).await
}

/// Waits for the tenant schema, then creates `public.<table> (<columns>)`, readable by
/// `authenticated` and published in `supabase_realtime`; returns a superuser connection.
async fn published_table(
    server: &TestServer,
    table: &str,
    columns: &str,
) -> tokio_postgres::Client {
    let db = server.db.as_ref().unwrap().connect().await;
    wait_migrated(&db).await;
    db.batch_execute(&format!(
        "create table public.{table} ({columns});
         grant select on public.{table} to authenticated;
         alter publication supabase_realtime add table public.{table};"
    ))
    .await
    .unwrap();
    db
}

#[tokio::test]
async fn case65_66_changes_reach_the_channel() {
    let server = server().await;
    let db = published_table(&server, "todos", "id bigint primary key, title text").await;

    let mut c = connect(&server).await;
    let binding = json!({"event":"INSERT","schema":"public","table":"todos"});
    let r = c
        .join(
            "room1",
            "1",
            join_config(json!({"postgres_changes":[binding]})),
        )
        .await;
    let id = payload(&r)["response"]["postgres_changes"][0]["id"]
        .as_u64()
        .expect("binding id");
    let sys = system(&mut c).await;
    assert_eq!(
        sys,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}])
    );

    db.execute("insert into public.todos values (1, 'hello')", &[])
        .await
        .unwrap();
    let change = c.recv().await;
    assert_eq!(change[0], json!(null));
    assert_eq!(change[3], "postgres_changes");
    assert_eq!(change[4]["ids"], json!([id]));
    let data = &change[4]["data"];
    assert_eq!(data["type"], "INSERT");
    assert_eq!(data["record"], json!({"id":1,"title":"hello"}));
    assert_eq!(data["errors"], json!(null));
    let ts = data["commit_timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z'));

    // 66: a bad filter is reported; the channel stays joined.
    let r = c
        .join(
            "room2",
            "2",
            join_config(json!({"postgres_changes":[{"event":"*","schema":"public","table":"todos","filter":"wrong"}]})),
        )
        .await;
    assert_eq!(payload(&r)["status"], "ok");
    let sys = system(&mut c).await;
    assert_eq!(sys[4]["status"], "error");
    assert_eq!(
        sys[4]["message"],
        "Error parsing `filter` params: [\"wrong\"]"
    );
    c.push(None, Some("9"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(c.recv().await[1], "9");
}

/// The frame carries the pipeline's `data` text unchanged: jsonb keeps PostgreSQL's rendering
/// (`{"a": 1, "b": [1, 2]}`), which a decode/re-encode round trip would compact.
#[tokio::test]
async fn change_frames_keep_the_jsonb_text() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let server = server().await;
    let db = published_table(&server, "docs", "id bigint primary key, j jsonb").await;
    let mut c = connect(&server).await;
    let binding = json!({"event":"INSERT","schema":"public","table":"docs"});
    let r = c
        .join(
            "docs",
            "1",
            join_config(json!({"postgres_changes":[binding]})),
        )
        .await;
    let id = payload(&r)["response"]["postgres_changes"][0]["id"]
        .as_u64()
        .expect("binding id");
    assert_eq!(system(&mut c).await[4]["status"], "ok");

    db.execute(
        r#"insert into public.docs values (1, '{"b":[1,2],"a":1}')"#,
        &[],
    )
    .await
    .unwrap();
    let text = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), c.ws.next())
            .await
            .expect("a change within 10 s")
            .expect("socket open")
            .expect("frame");
        if let WsMessage::Text(t) = msg {
            break t.as_str().to_string();
        }
    };
    assert!(
        text.starts_with(r#"[null,null,"realtime:docs","postgres_changes",{"data":{"#),
        "{text}"
    );
    assert!(text.ends_with(&format!(r#"}},"ids":[{id}]}}]"#)), "{text}");
    assert!(text.contains(r#""j": {"a": 1, "b": [1, 2]}"#), "{text}");
}

/// The tenant's replication slots in its own database (slot names are cluster-wide).
async fn realtime_slots(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "select slot_name::text from pg_replication_slots \
         where database = current_database() and slot_name like 'supabase_realtime%' \
         order by 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `POST /api/tenants/:id/reload` stops the tenant's pipeline and database broadcast stream
/// (their slots are gone when it answers) and a new join subscribes again; after `shutdown`
/// the open channel subscribes again by itself.
#[tokio::test]
async fn reload_releases_the_slots_and_a_new_join_subscribes_again() {
    let server = server().await;
    let db = published_table(&server, "items", "id bigint primary key").await;
    let binding = json!({"event":"INSERT","schema":"public","table":"items"});
    let mut c = connect(&server).await;
    c.join_ok(
        "items",
        "1",
        join_config(json!({"postgres_changes":[binding]})),
    )
    .await;
    assert_eq!(system(&mut c).await[4]["status"], "ok");
    let deadline = Instant::now() + Duration::from_secs(30);
    while realtime_slots(&db).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "slots: {:?}",
            realtime_slots(&db).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let r = server
        .admin("POST", "/api/tenants/realtime-dev/reload", None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(realtime_slots(&db).await, Vec::<String>::new());
    c.closed().await;

    let mut c = connect(&server).await;
    c.join_ok(
        "items",
        "1",
        join_config(json!({"postgres_changes":[binding]})),
    )
    .await;
    assert_eq!(system(&mut c).await[4]["status"], "ok");
    db.execute("insert into public.items values (1)", &[])
        .await
        .unwrap();
    let change = c.recv().await;
    assert_eq!(change[3], "postgres_changes", "{change}");
    assert_eq!(change[4]["data"]["record"], json!({"id": 1}));

    // `shutdown` stops the database work but keeps the sockets: the channel subscribes
    // again on its own and keeps receiving changes.
    let r = server
        .admin("POST", "/api/tenants/realtime-dev/shutdown", None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(realtime_slots(&db).await, Vec::<String>::new());
    let sys = system(&mut c).await;
    assert_eq!(sys[4]["message"], "Subscribed to PostgreSQL", "{sys}");
    db.execute("insert into public.items values (2)", &[])
        .await
        .unwrap();
    let change = c.recv().await;
    assert_eq!(change[4]["data"]["record"], json!({"id": 2}), "{change}");
}

/// Upstream counts Postgres Changes against its own database-events counter, never against the
/// events limit that stops channels: a tenant limited to one event per second keeps a busy
/// change subscription.
#[tokio::test]
async fn postgres_changes_are_not_channel_events() {
    let server = server().await;
    let db = published_table(&server, "busy", "id bigint primary key").await;
    let res = server
        .admin(
            "PATCH",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"max_events_per_second": 1}})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());

    let mut c = connect(&server).await;
    let binding = json!({"event":"INSERT","schema":"public","table":"busy"});
    c.join_ok(
        "busy",
        "1",
        join_config(json!({"postgres_changes":[binding]})),
    )
    .await;
    assert_eq!(system(&mut c).await[4]["status"], "ok");
    // Two batches a rate bucket (5 s) apart: were changes channel events, the first would put
    // the tenant over its limit and the second would stop the channel.
    for batch in 0..2i64 {
        for i in 0..100 {
            db.execute("insert into public.busy values ($1)", &[&(batch * 100 + i)])
                .await
                .unwrap();
        }
        for _ in 0..100 {
            let f = c.recv().await;
            assert_eq!(event(&f), "postgres_changes", "{f}");
        }
        if batch == 0 {
            tokio::time::sleep(Duration::from_millis(5500)).await;
        }
    }
    c.silent(500).await;
}
