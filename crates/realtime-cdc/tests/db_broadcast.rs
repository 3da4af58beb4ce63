//! Broadcast from the database end to end: `realtime.send`, `send_binary` and
//! `broadcast_changes` rows streamed from a real cluster, the slot's lifecycle, a cluster
//! restart mid-stream, and replay.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use realtime_cdc::db_broadcast::{
    replay, slot_name, DbBroadcast, DbBroadcastError, DbBroadcastOptions, DbBroadcastStream,
    DbPayload,
};
use realtime_tenants::tenant_migrations::{create_partitions, migrate};
use realtime_tenants::{Crypto, Tenant};
use realtime_testkit::{Cluster, TestDb};
use serde_json::json;
use tokio::sync::{mpsc, RwLock};

/// The restart test takes this exclusively; every other test shares it, so no test sees the
/// cluster go away under it.
static CLUSTER_GATE: RwLock<()> = RwLock::const_new(());

const WAIT: Duration = Duration::from_secs(20);

struct Env {
    db: TestDb,
    sql: tokio_postgres::Client,
    tenant: Arc<Tenant>,
    crypto: Arc<Crypto>,
}

/// A database with upstream's `realtime` schema and today's partitions, and a tenant on it.
async fn env() -> Env {
    common::tracing();
    let db = Cluster::shared().create_database().await;
    let sql = db.connect().await;
    migrate(&sql).await.unwrap();
    create_partitions(&sql, Utc::now().date_naive())
        .await
        .unwrap();
    let crypto = common::crypto();
    let tenant = Arc::new(common::tenant_for(&db, &crypto, json!({})));
    Env {
        db,
        sql,
        tenant,
        crypto,
    }
}

impl Env {
    fn options(&self) -> DbBroadcastOptions {
        DbBroadcastOptions {
            // Slot names are cluster-wide: one per test database.
            slot_name_suffix: Some(self.db.name.clone()),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(1),
            ..DbBroadcastOptions::default()
        }
    }

    fn slot(&self) -> String {
        slot_name(Some(&self.db.name))
    }

    async fn start_with(
        &self,
        opts: DbBroadcastOptions,
    ) -> (DbBroadcastStream, mpsc::Receiver<DbBroadcast>) {
        let (tx, rx) = mpsc::channel(64);
        let stream = DbBroadcastStream::start(self.tenant.clone(), self.crypto.clone(), opts, tx)
            .await
            .unwrap();
        (stream, rx)
    }

    async fn start(&self) -> (DbBroadcastStream, mpsc::Receiver<DbBroadcast>) {
        self.start_with(self.options()).await
    }

    async fn active_pid(&self) -> Option<i32> {
        self.sql
            .query_opt(
                "select active_pid from pg_replication_slots where slot_name = $1",
                &[&self.slot()],
            )
            .await
            .unwrap()
            .and_then(|r| r.get(0))
    }

    async fn slot_row(&self) -> Option<(bool, bool)> {
        self.sql
            .query_opt(
                "select temporary, active from pg_replication_slots where slot_name = $1",
                &[&self.slot()],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    }

    /// The latest stored row of `topic`: (id, payload text).
    async fn latest(&self, topic: &str) -> (String, Option<String>) {
        let r = self
            .sql
            .query_one(
                "select id::text, payload::text from realtime.messages where topic = $1 \
                 order by inserted_at desc limit 1",
                &[&topic],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }
}

async fn next(rx: &mut mpsc::Receiver<DbBroadcast>) -> DbBroadcast {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(b)) => b,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no broadcast within {WAIT:?}"),
    }
}

fn json_text(b: &DbBroadcast) -> &str {
    match &b.payload {
        DbPayload::Json(j) => j.get(),
        DbPayload::Binary(_) => panic!("binary payload: {b:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_public_arrives_with_its_row_fields() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    assert!(stream.is_connected());
    let before = Utc::now();
    env.sql
        .batch_execute(r#"select realtime.send('{"a":1}'::jsonb, 'ev', 'room1', false)"#)
        .await
        .unwrap();
    let b = next(&mut rx).await;
    let (id, stored) = env.latest("room1").await;
    assert_eq!(b.topic, "room1");
    assert_eq!(b.event, "ev");
    assert!(!b.private);
    assert_eq!(b.id, id);
    // The jsonb text verbatim, with the id `send` injected.
    assert_eq!(json_text(&b), format!(r#"{{"a": 1, "id": "{id}"}}"#));
    assert_eq!(Some(json_text(&b).to_string()), stored);
    let inserted: chrono::NaiveDateTime = env
        .sql
        .query_one(
            "select inserted_at from realtime.messages where id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(b.inserted_at, inserted);
    let slack = chrono::Duration::seconds(5);
    assert!(b.committed_at >= before - slack && b.committed_at <= Utc::now() + slack);
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_flag_existing_id_and_binary_payloads() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    // `send` defaults to private.
    env.sql
        .batch_execute(r#"select realtime.send('{"a":1}', 'ev', 'room1')"#)
        .await
        .unwrap();
    let b = next(&mut rx).await;
    assert!(b.private);
    assert_eq!(b.topic, "room1");
    // A payload with its own id keeps it; the row id is still the uuid.
    env.sql
        .batch_execute(r#"select realtime.send('{"a":1,"id":7}', 'ev', 'room1', false)"#)
        .await
        .unwrap();
    let b = next(&mut rx).await;
    assert_eq!(json_text(&b), r#"{"a": 1, "id": 7}"#);
    assert_eq!(b.id, env.latest("room1").await.0);
    assert_ne!(b.id, "7");
    env.sql
        .batch_execute(r"select realtime.send_binary('\xdeadbeef', 'bin', 'room1', true)")
        .await
        .unwrap();
    let b = next(&mut rx).await;
    assert_eq!(b.event, "bin");
    assert!(b.private);
    assert_eq!(
        b.payload,
        DbPayload::Binary(vec![0xde, 0xad, 0xbe, 0xef].into())
    );
    assert_eq!(b.id, env.latest("room1").await.0);
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_changes_trigger_payloads() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    env.sql
        .batch_execute(
            "create table public.todos (id int primary key, title text);
             create function public.todos_broadcast() returns trigger language plpgsql as $$
             begin
               perform realtime.broadcast_changes('todos:' || coalesce(new.id, old.id)::text,
                 tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
               return null;
             end $$;
             create trigger todos_broadcast after insert or update or delete on public.todos
               for each row execute function public.todos_broadcast();",
        )
        .await
        .unwrap();
    let (stream, mut rx) = env.start().await;
    env.sql
        .batch_execute("insert into public.todos values (1, 'a')")
        .await
        .unwrap();
    env.sql
        .batch_execute("update public.todos set title = 'b' where id = 1")
        .await
        .unwrap();
    env.sql
        .batch_execute("delete from public.todos where id = 1")
        .await
        .unwrap();
    let expected = [
        ("INSERT", r#"{"id": 1, "title": "a"}"#, "null"),
        (
            "UPDATE",
            r#"{"id": 1, "title": "b"}"#,
            r#"{"id": 1, "title": "a"}"#,
        ),
        ("DELETE", "null", r#"{"id": 1, "title": "b"}"#),
    ];
    for (op, record, old) in expected {
        let b = next(&mut rx).await;
        assert_eq!(b.topic, "todos:1");
        assert_eq!(b.event, op);
        assert!(b.private, "broadcast_changes sends privately");
        assert_eq!(
            json_text(&b),
            format!(
                r#"{{"id": "{}", "table": "todos", "record": {record}, "schema": "public", "operation": "{op}", "old_record": {old}}}"#,
                b.id
            )
        );
    }
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_are_not_broadcasts() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    let presence = "insert into realtime.messages (topic, extension, payload, event, private) \
                    values ('room1', 'presence', '{\"p\":1}', 'pres', false)";
    env.sql
        .batch_execute(&format!(
            "insert into realtime.messages (topic, extension, payload, private) values ('room1', 'broadcast', '{{}}', false);
             select realtime.send('[1]'::jsonb, 'ev', 'room1', false);
             update realtime.messages set event = 'late' where event is null;
             delete from realtime.messages where topic = 'room1';
             {presence};
             select realtime.send('{{}}', 'marker', 'room1', false);"
        ))
        .await
        .unwrap();
    // No event, a rejected payload, updates and deletes give nothing. Like upstream, the
    // extension is not looked at: the presence row is broadcast.
    let b = next(&mut rx).await;
    assert_eq!((b.event.as_str(), json_text(&b)), ("pres", r#"{"p": 1}"#));
    assert_eq!(next(&mut rx).await.event, "marker");
    stream.stop().await.unwrap();

    // Asked for, the extension check drops it.
    let (stream, mut rx) = env
        .start_with(DbBroadcastOptions {
            broadcast_extension_only: true,
            ..env.options()
        })
        .await;
    env.sql
        .batch_execute(&format!(
            "{presence}; select realtime.send('{{}}', 'marker2', 'room1', false);"
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.event, "marker2");
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_the_tenant_limit_is_dropped() {
    let _gate = CLUSTER_GATE.read().await;
    let mut env = env().await;
    let mut tenant = (*env.tenant).clone();
    tenant.max_payload_size_in_kb = Some(1);
    env.tenant = Arc::new(tenant);
    let (stream, mut rx) = env.start().await;
    // Limit 1 × 1000 + 500 bytes; the body plus 6 must fit.
    env.sql
        .batch_execute(
            "select realtime.send(jsonb_build_object('x', repeat('y', 1600)), 'big', 'room1', false);
             select realtime.send(jsonb_build_object('x', repeat('y', 100)), 'small', 'room1', false);",
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.event, "small");
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_released_on_stop_drop_and_receiver_loss() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, _rx) = env.start().await;
    assert_eq!(env.slot_row().await, Some((false, true)));
    let publication: i64 = env
        .sql
        .query_one(
            "select count(*) from pg_publication_tables \
             where pubname = 'supabase_realtime_messages_publication' and schemaname = 'realtime'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(publication >= 5, "partitions are published: {publication}");
    stream.stop().await.unwrap();
    assert_eq!(env.slot_row().await, None);

    // Dropping the handle releases it in the background.
    let (stream, _rx) = env.start().await;
    assert!(env.slot_row().await.is_some());
    drop(stream);
    wait_for_no_slot(&env).await;

    // So does dropping the receiver.
    let (stream, rx) = env.start().await;
    drop(rx);
    wait_for_no_slot(&env).await;
    for _ in 0..50 {
        if stream.has_ended() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stream.has_ended() && !stream.is_connected());
    stream.stop().await.unwrap();
}

async fn send(sql: &tokio_postgres::Client, event: String) {
    sql.batch_execute(&format!(
        "select realtime.send('{{}}', '{event}', 'room1', false)"
    ))
    .await
    .unwrap()
}

async fn wait_for_no_slot(env: &Env) {
    for _ in 0..100 {
        if env.slot_row().await.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot {} still exists", env.slot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_held_by_another_session_is_not_taken() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    let holder_pid = env.active_pid().await;
    assert!(holder_pid.is_some());
    // A second stream on the same slot starts as a standby and leaves the live holder alone
    // for many of its (short) leases.
    let (tx2, mut rx2) = mpsc::channel(4);
    let opts = DbBroadcastOptions {
        slot_lease: Duration::from_secs(3),
        ..env.options()
    };
    let standby = DbBroadcastStream::start(env.tenant.clone(), env.crypto.clone(), opts, tx2)
        .await
        .unwrap();
    assert!(standby.is_standby() && !standby.is_connected());
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(env.active_pid().await, holder_pid);
        assert!(standby.is_standby());
    }
    // The first stream is unaffected, and the standby receives nothing.
    env.sql
        .batch_execute("select realtime.send('{}', 'still', 'room1', false)")
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.event, "still");
    assert!(tokio::time::timeout(Duration::from_millis(500), rx2.recv())
        .await
        .is_err());
    // Stopping the standby leaves the slot to its holder.
    standby.stop().await.unwrap();
    assert_eq!(env.active_pid().await, holder_pid);
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_closed_holder_within_seconds() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    // Another instance's session: the publication and slot, streamed from and replied on.
    env.sql
        .batch_execute(&format!(
            "create publication {} for table realtime.messages",
            realtime_cdc::db_broadcast::PUBLICATION
        ))
        .await
        .unwrap();
    let conn = realtime_pg::ConnectOptions::new(
        env.db.host(),
        env.db.port,
        &env.db.name,
        realtime_testkit::SUPERUSER,
        realtime_testkit::SUPERUSER_PASSWORD,
    );
    let mut repl = realtime_pg::replication::ReplicationStream::connect(&conn)
        .await
        .unwrap();
    repl.create_slot(&env.slot(), false).await.unwrap();
    let mut holder = repl
        .start(
            &env.slot(),
            realtime_pg::Lsn::ZERO,
            realtime_cdc::db_broadcast::PUBLICATION,
        )
        .await
        .unwrap();
    holder.set_status_interval(Duration::from_millis(500));
    let holder_task = tokio::spawn(async move { while let Ok(Some(_)) = holder.next().await {} });
    let (stream, mut rx) = env
        .start_with(DbBroadcastOptions {
            slot_lease: Duration::from_secs(3),
            ..env.options()
        })
        .await;
    assert!(stream.is_standby());
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!holder_task.is_finished(), "the live holder was terminated");
    // Read by the holder but never confirmed.
    send(&env.sql, "before".into()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder_task.abort();
    let _ = holder_task.await;
    let closed = std::time::Instant::now();
    send(&env.sql, "after".into()).await;
    assert_eq!(next(&mut rx).await.event, "before");
    let took = closed.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "took over after {took:?}"
    );
    assert!(stream.is_connected() && !stream.is_standby());
    assert_eq!(next(&mut rx).await.event, "after");
    assert!(tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .is_err());
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    let _gate = CLUSTER_GATE.write().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    send(&env.sql, "m1".into()).await;
    assert_eq!(next(&mut rx).await.event, "m1");
    // Committed but possibly not yet streamed or confirmed when the server goes down.
    send(&env.sql, "m2".into()).await;
    tokio::task::spawn_blocking(|| Cluster::shared().restart())
        .await
        .unwrap();
    let sql = env.db.connect().await;
    for i in 3..=6 {
        send(&sql, format!("m{i}")).await;
    }
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("m6") {
        seen.push(next(&mut rx).await.event);
    }
    assert_eq!(seen, ["m2", "m3", "m4", "m5", "m6"]);
    // Nothing delivered twice afterwards either.
    send(&sql, "end".into()).await;
    assert_eq!(next(&mut rx).await.event, "end");
    assert!(stream.is_connected());
    stream.stop().await.unwrap();
    let left: i64 = sql
        .query_one(
            "select count(*) from pg_replication_slots where slot_name = $1",
            &[&env.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_ends_the_stream_and_the_next_start_adopts_the_slot() {
    let _gate = CLUSTER_GATE.write().await;
    let env = env().await;
    let (stream, mut rx) = env
        .start_with(DbBroadcastOptions {
            give_up_after: Duration::from_secs(1),
            ..env.options()
        })
        .await;
    tokio::task::spawn_blocking(|| Cluster::shared().stop())
        .await
        .unwrap();
    // The receiver learns that the stream ended.
    let ended = tokio::time::timeout(WAIT, rx.recv()).await;
    tokio::task::spawn_blocking(|| Cluster::shared().start_again())
        .await
        .unwrap();
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    assert!(stream.has_ended() && !stream.is_connected());
    let err = stream.stop().await.unwrap_err();
    assert!(matches!(err, DbBroadcastError::GaveUp { .. }), "{err:?}");
    // The database was unreachable, so the slot could not be dropped; the next start takes
    // it over and its stop drops it.
    let sql = env.db.connect().await;
    let slot = env.slot();
    let count = |sql: tokio_postgres::Client| {
        let slot = slot.clone();
        async move {
            let n: i64 = sql
                .query_one(
                    "select count(*) from pg_replication_slots where slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap()
                .get(0);
            (n, sql)
        }
    };
    let (n, sql) = count(sql).await;
    assert_eq!(n, 1);
    send(&sql, "meanwhile".into()).await;
    let (stream, mut rx) = env.start().await;
    assert_eq!(next(&mut rx).await.event, "meanwhile");
    stream.stop().await.unwrap();
    assert_eq!(count(sql).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_holds_the_stream_without_losing_the_session() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    env.sql
        .batch_execute(&format!(
            "alter database {} set wal_sender_timeout = '3s'",
            env.db.name
        ))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let stream =
        DbBroadcastStream::start(env.tenant.clone(), env.crypto.clone(), env.options(), tx)
            .await
            .unwrap();
    let pid = || async {
        env.sql
            .query_one(
                "select active_pid from pg_replication_slots where slot_name = $1",
                &[&env.slot()],
            )
            .await
            .unwrap()
            .get::<_, Option<i32>>(0)
    };
    let walsender = pid().await;
    assert!(walsender.is_some());
    for i in 1..=4 {
        send(&env.sql, format!("b{i}")).await;
    }
    // Nobody reads for longer than the server waits for a sign of life.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(stream.is_connected());
    assert_eq!(pid().await, walsender, "the same session, never timed out");
    for i in 1..=4 {
        assert_eq!(next(&mut rx).await.event, format!("b{i}"));
    }
    stream.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_publication_is_recreated_and_streaming_resumes() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (stream, mut rx) = env.start().await;
    send(&env.sql, "before".into()).await;
    assert_eq!(next(&mut rx).await.event, "before");
    // What upstream's migration 20250123174212 does to a running tenant.
    env.sql
        .batch_execute("drop publication supabase_realtime_messages_publication")
        .await
        .unwrap();
    send(&env.sql, "gap".into()).await;
    // The slot cannot decode past the drop; the stream recreates publication and slot and
    // then delivers again.
    let mut i = 0;
    let resumed = loop {
        i += 1;
        assert!(i < 100, "the stream did not resume");
        send(&env.sql, format!("after{i}")).await;
        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            Ok(Some(b)) if b.event.starts_with("after") => break b,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended"),
            Err(_) => {}
        }
    };
    assert!(resumed.event.starts_with("after"));
    let tables: i64 = env
        .sql
        .query_one(
            "select count(*) from pg_publication_tables \
             where pubname = 'supabase_realtime_messages_publication'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tables >= 5);
    stream.stop().await.unwrap();
    assert_eq!(env.slot_row().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_next_start_delivers_what_was_committed_meanwhile() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let (tenant, crypto, opts) = (env.tenant.clone(), env.crypto.clone(), env.options());
    // A process that dies without stopping: its runtime goes away with the stream task.
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let stream = rt
            .block_on(DbBroadcastStream::start(tenant, crypto, opts, tx))
            .unwrap();
        std::mem::forget(stream);
        std::mem::forget(rx);
        drop(rt);
    })
    .await
    .unwrap();
    for _ in 0..100 {
        if env.slot_row().await == Some((false, false)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.slot_row().await, Some((false, false)), "left inactive");
    send(&env.sql, "while_down".into()).await;
    let (stream, mut rx) = env.start().await;
    assert_eq!(next(&mut rx).await.event, "while_down");
    send(&env.sql, "after".into()).await;
    assert_eq!(next(&mut rx).await.event, "after");
    stream.stop().await.unwrap();
    assert_eq!(env.slot_row().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_slot_with_our_name_is_left_alone() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    env.sql
        .query_one(
            "select pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&env.slot()],
        )
        .await
        .unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = DbBroadcastStream::start(env.tenant.clone(), env.crypto.clone(), env.options(), tx)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbBroadcastError::SlotConflict { .. }),
        "{err:?}"
    );
    assert_eq!(env.slot_row().await, Some((false, false)));
    env.sql
        .query_one("select pg_drop_replication_slot($1)", &[&env.slot()])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_returns_the_newest_oldest_first() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    for sql in [
        r#"select realtime.send('{"n":1}', 'ev', 'room:1', true)"#,
        r#"select realtime.send('{"n":2}', 'ev', 'room:1', true)"#,
        r"select realtime.send_binary('\x0102', 'bin', 'room:1', true)",
        r#"select realtime.send('{"n":4, "b": [1, 2.50]}', 'ev', 'room:1', true)"#,
        // Not replayed: public, other topic, other extension.
        r#"select realtime.send('{"n":5}', 'ev', 'room:1', false)"#,
        r#"select realtime.send('{"n":6}', 'ev', 'room:2', true)"#,
        r#"insert into realtime.messages (topic, extension, payload, event, private)
           values ('room:1', 'presence', '{"n":7}', 'ev', true)"#,
    ] {
        // One transaction each, so each row has its own inserted_at.
        env.sql.batch_execute(sql).await.unwrap();
    }
    let since = (Utc::now() - chrono::Duration::minutes(1)).timestamp_millis();
    let ids: Vec<String> = env
        .sql
        .query(
            "select id::text from realtime.messages where topic = 'room:1' and private \
             and extension = 'broadcast' order by inserted_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 4);

    let all = replay(&env.sql, "room:1", true, since, 25).await.unwrap();
    assert_eq!(all.iter().map(|b| b.id.clone()).collect::<Vec<_>>(), ids);
    assert!(all.iter().all(|b| b.private && b.topic == "room:1"));
    // Re-encoded as upstream's decode/encode round trip does.
    assert_eq!(
        json_text(&all[0]),
        format!(r#"{{"id":"{}","n":1}}"#, ids[0])
    );
    assert_eq!(all[2].payload, DbPayload::Binary(vec![1, 2].into()));
    assert_eq!(
        json_text(&all[3]),
        format!(r#"{{"b":[1,2.5],"id":"{}","n":4}}"#, ids[3])
    );

    // The newest `limit`, oldest first; the limit is clamped to 1..=25.
    let two = replay(&env.sql, "room:1", true, since, 2).await.unwrap();
    assert_eq!(
        two.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        ids[2..]
    );
    let one = replay(&env.sql, "room:1", true, since, 0).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, ids[3]);
    assert_eq!(
        replay(&env.sql, "room:1", true, since, 1000)
            .await
            .unwrap()
            .len(),
        4
    );
    // `since` bounds the window.
    let future = (Utc::now() + chrono::Duration::minutes(10)).timestamp_millis();
    assert!(replay(&env.sql, "room:1", true, future, 25)
        .await
        .unwrap()
        .is_empty());

    let public = replay(&env.sql, "room:1", false, since, 25)
        .await
        .unwrap_err();
    assert_eq!(
        public.to_string(),
        "UnableToReplayMessages: Replay is not allowed for public channels"
    );
    let bad = replay(&env.sql, "room:1", true, i64::MAX, 25)
        .await
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "UnableToReplayMessages: Replay params are not valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_failure_is_reported_in_upstream_words() {
    let _gate = CLUSTER_GATE.read().await;
    common::tracing();
    // A database without the realtime schema.
    let db = Cluster::shared().create_database().await;
    let sql = db.connect().await;
    let err = replay(&sql, "room:1", true, 0, 25).await.unwrap_err();
    assert!(
        matches!(err, DbBroadcastError::ReplayFailed(Some(_))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "UnableToReplayMessages: Realtime was unable to replay messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_are_typed() {
    let _gate = CLUSTER_GATE.read().await;
    let env = env().await;
    let mut tenant = (*env.tenant).clone();
    tenant.extensions.clear();
    let (tx, _rx) = mpsc::channel(1);
    let err = DbBroadcastStream::start(Arc::new(tenant), env.crypto.clone(), env.options(), tx)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbBroadcastError::NoDatabase { .. }),
        "{err:?}"
    );

    // Without the realtime schema the publication cannot be created.
    let bare = Cluster::shared().create_database().await;
    let tenant = common::tenant_for(&bare, &env.crypto, json!({}));
    let (tx, _rx) = mpsc::channel(1);
    let err = DbBroadcastStream::start(
        Arc::new(tenant),
        env.crypto.clone(),
        DbBroadcastOptions {
            slot_name_suffix: Some(bare.name.clone()),
            ..DbBroadcastOptions::default()
        },
        tx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Error creating publication: relation "realtime.messages" does not exist"#
    );
    let slots: i64 = env
        .sql
        .query_one(
            "select count(*) from pg_replication_slots where slot_name = $1",
            &[&slot_name(Some(&bare.name))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "no slot is left behind by a failed start");
}
