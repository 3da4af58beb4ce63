//! The replication stream against a real cluster: authentication, slots, decoding of every
//! change kind, keepalives, and resuming from a confirmed position.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{assert_quiet, opts, opts_as, read_transactions, slot_name, wait_slot_inactive};
use realtime_pg::pgoutput::{decode, LogicalMessage, TupleValue, TRUNCATE_RESTART_IDENTITY};
use realtime_pg::replication::{ReplicationError, ReplicationStream};
use realtime_pg::slots::{drop_slot_if_exists, slot_info, terminate_slot_backend};
use realtime_pg::Lsn;
use realtime_testkit::Cluster;

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// Runs each `;`-separated statement in its own transaction (one simple query would make
/// them a single transaction).
async fn commit_each(client: &tokio_postgres::Client, statements: &str) {
    for sql in statements
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        client.batch_execute(sql).await.unwrap();
    }
}

#[tokio::test]
async fn scram_authentication_for_replication_role_and_superuser() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    let method: String = admin
        .query_one("show password_encryption", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "scram-sha-256");

    for (user, password) in [("postgres", "postgres"), ("supabase_admin", "postgres")] {
        let mut stream = ReplicationStream::connect(&opts_as(&db, user, password))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let system = stream.identify_system().await.unwrap();
        assert_eq!(system.dbname.as_deref(), Some(db.name.as_str()));
        assert!(system.timeline >= 1);
        assert!(system.xlog_pos > Lsn::ZERO);
        assert!(stream.server_version().is_some());
        let pid = stream.backend_pid().unwrap();
        let backend_type: String = admin
            .query_one(
                "select backend_type from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(backend_type, "walsender");
        stream.close().await;
    }

    let err = ReplicationStream::connect(&opts_as(&db, "postgres", "wrong-password-123"))
        .await
        .err()
        .expect("wrong password accepted");
    assert!(matches!(err, ReplicationError::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("wrong-password-123"), "{err}");

    // A role without REPLICATION may not open a walsender.
    admin
        .batch_execute("create role plain_login login password 'pw'")
        .await
        .ok();
    let err = ReplicationStream::connect(&opts_as(&db, "plain_login", "pw"))
        .await
        .err()
        .expect("role without replication accepted");
    assert!(matches!(err, ReplicationError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn tls_required_but_not_offered_is_a_tls_error() {
    let db = Cluster::shared().create_database().await;
    let mut o = opts(&db);
    o.tls = realtime_pg::TlsMode::RequireNoVerify;
    let err = ReplicationStream::connect(&o)
        .await
        .err()
        .expect("connected without TLS");
    assert!(matches!(err, ReplicationError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn decodes_insert_update_delete_truncate() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table items (id int primary key, name text, note text, big text);
             alter table items alter column big set storage external;
             create table full_items (id int primary key, name text);
             alter table full_items replica identity full;
             create publication pub_decode for table items, full_items;",
        )
        .await
        .unwrap();
    let items_oid: u32 = admin
        .query_one("select 'items'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let full_oid: u32 = admin
        .query_one("select 'full_items'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);

    let slot = slot_name(&db, "decode");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    let point = session.create_slot(&slot, false).await.unwrap();
    assert!(point > Lsn::ZERO);
    let mut stream = session.start(&slot, Lsn::ZERO, "pub_decode").await.unwrap();

    let big: String = (0..300).map(|i| format!("{i:08x}")).collect();
    assert!(big.len() > 2048);
    let statements = format!(
        "insert into items values (1, 'a', null, '{big}');
             update items set name = 'b' where id = 1;
             update items set note = 'n', name = null where id = 1;
             update items set id = 2 where id = 1;
             delete from items where id = 2;
             insert into full_items values (10, 'x');
             update full_items set name = 'y' where id = 10;
             delete from full_items where id = 10;
             truncate items restart identity;"
    );
    commit_each(&admin, &statements).await;
    let txs = read_transactions(&mut stream, 9).await;

    // The first change of a relation comes with its description.
    let LogicalMessage::Relation(rel) = txs[0].decoded()[1] else {
        panic!("no relation first: {:?}", txs[0].decoded())
    };
    assert_eq!(rel.oid, items_oid);
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "items")
    );
    assert_eq!(rel.replica_identity, b'd');
    let cols: Vec<(&str, bool, u32)> = rel
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.is_key, c.type_oid))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", true, 23),
            ("name", false, 25),
            ("note", false, 25),
            ("big", false, 25)
        ]
    );

    let LogicalMessage::Begin { final_lsn, xid, .. } = txs[0].decoded()[0] else {
        panic!("no begin")
    };
    let LogicalMessage::Commit { commit_lsn, .. } = txs[0].decoded().last().unwrap() else {
        panic!("no commit")
    };
    assert_eq!(final_lsn, commit_lsn);
    assert!(*xid > 0);

    assert_eq!(
        txs[0].changes(),
        [&LogicalMessage::Insert {
            relation: items_oid,
            new: vec![text("1"), text("a"), TupleValue::Null, text(&big)],
        }]
    );
    // The toasted column was not updated: it is not sent.
    assert_eq!(
        txs[1].changes(),
        [&LogicalMessage::Update {
            relation: items_oid,
            old: None,
            old_is_key: false,
            new: vec![
                text("1"),
                text("b"),
                TupleValue::Null,
                TupleValue::UnchangedToast
            ],
        }]
    );
    assert_eq!(
        txs[2].changes(),
        [&LogicalMessage::Update {
            relation: items_oid,
            old: None,
            old_is_key: false,
            new: vec![
                text("1"),
                TupleValue::Null,
                text("n"),
                TupleValue::UnchangedToast
            ],
        }]
    );
    // A changed key sends the old key; non-key columns are NULL placeholders.
    assert_eq!(
        txs[3].changes(),
        [&LogicalMessage::Update {
            relation: items_oid,
            old: Some(vec![
                text("1"),
                TupleValue::Null,
                TupleValue::Null,
                TupleValue::Null
            ]),
            old_is_key: true,
            new: vec![
                text("2"),
                TupleValue::Null,
                text("n"),
                TupleValue::UnchangedToast
            ],
        }]
    );
    assert_eq!(
        txs[4].changes(),
        [&LogicalMessage::Delete {
            relation: items_oid,
            old: vec![
                text("2"),
                TupleValue::Null,
                TupleValue::Null,
                TupleValue::Null
            ],
            old_is_key: true,
        }]
    );

    let LogicalMessage::Relation(full) = txs[5].decoded()[1] else {
        panic!("no relation for full_items")
    };
    assert_eq!(full.oid, full_oid);
    assert_eq!(full.replica_identity, b'f');
    assert!(full.columns.iter().all(|c| c.is_key));
    assert_eq!(
        txs[5].changes(),
        [&LogicalMessage::Insert {
            relation: full_oid,
            new: vec![text("10"), text("x")],
        }]
    );
    assert_eq!(
        txs[6].changes(),
        [&LogicalMessage::Update {
            relation: full_oid,
            old: Some(vec![text("10"), text("x")]),
            old_is_key: false,
            new: vec![text("10"), text("y")],
        }]
    );
    assert_eq!(
        txs[7].changes(),
        [&LogicalMessage::Delete {
            relation: full_oid,
            old: vec![text("10"), text("y")],
            old_is_key: false,
        }]
    );
    assert_eq!(
        txs[8].changes(),
        [&LogicalMessage::Truncate {
            options: TRUNCATE_RESTART_IDENTITY,
            relations: vec![items_oid],
        }]
    );

    // Commit order, increasing LSNs.
    let ends: Vec<Lsn> = txs.iter().map(|t| t.end_lsn()).collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");

    // Every proper prefix of every real message is rejected, without panicking.
    for tx in &txs {
        for (x, message) in &tx.messages {
            assert_eq!(&decode(&x.data).unwrap(), message);
            for len in 0..x.data.len() {
                assert!(
                    decode(&x.data[..len]).is_err(),
                    "prefix {len} of {message:?}"
                );
            }
        }
    }

    stream.close().await;
    wait_slot_inactive(&admin, &slot).await;
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.drop_slot(&slot).await.unwrap();
    assert!(slot_info(&admin, &slot).await.unwrap().is_none());
}

#[tokio::test]
async fn keepalive_replies_keep_the_stream_alive_past_wal_sender_timeout() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table ticks (id int primary key);
             create publication pub_keepalive for table ticks;",
        )
        .await
        .unwrap();
    let mut o = opts(&db);
    o.options = Some("-c wal_sender_timeout=2s".into());

    // A polled stream survives several timeouts' worth of silence.
    let mut session = ReplicationStream::connect(&o).await.unwrap();
    let timeout = session
        .simple_query("SHOW wal_sender_timeout")
        .await
        .unwrap();
    assert_eq!(timeout[0][0].as_deref(), Some("2s"));
    session
        .create_slot(&slot_name(&db, "alive"), true)
        .await
        .unwrap();
    let mut alive = session
        .start(&slot_name(&db, "alive"), Lsn::ZERO, "pub_keepalive")
        .await
        .unwrap();

    // The same, never polled: the server gives up on it.
    let mut session = ReplicationStream::connect(&o).await.unwrap();
    session
        .create_slot(&slot_name(&db, "idle"), true)
        .await
        .unwrap();
    let mut idle = session
        .start(&slot_name(&db, "idle"), Lsn::ZERO, "pub_keepalive")
        .await
        .unwrap();

    assert_quiet(&mut alive, Duration::from_secs(7)).await;
    admin
        .batch_execute("insert into ticks values (1)")
        .await
        .unwrap();
    let txs = read_transactions(&mut alive, 1).await;
    assert!(matches!(txs[0].changes()[0], LogicalMessage::Insert { .. }));

    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match idle.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("unpolled stream still open after the timeout");
    let err = outcome.expect_err("unpolled stream ended cleanly");
    assert!(
        matches!(err, ReplicationError::ConnectionLost(_)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    alive.close().await;
}

#[tokio::test]
async fn resumes_from_the_confirmed_commit_without_loss_or_redelivery() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table events (id int primary key);
             create publication pub_resume for table events;",
        )
        .await
        .unwrap();
    let slot = slot_name(&db, "resume");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, false).await.unwrap();
    let mut stream = session.start(&slot, Lsn::ZERO, "pub_resume").await.unwrap();

    commit_each(
        &admin,
        "insert into events values (1); insert into events values (2); insert into events values (3);",
    )
    .await;
    let first = read_transactions(&mut stream, 3).await;
    let ids = |txs: &[common::Transaction]| -> Vec<TupleValue> {
        txs.iter()
            .flat_map(|t| t.changes().into_iter().cloned().collect::<Vec<_>>())
            .map(|m| match m {
                LogicalMessage::Insert { new, .. } => new[0].clone(),
                other => panic!("unexpected change {other:?}"),
            })
            .collect()
    };
    assert_eq!(ids(&first), [text("1"), text("2"), text("3")]);

    // Only the first transaction was handed on.
    let confirmed = first[0].end_lsn();
    stream.confirm(confirmed);
    stream.send_status().await.unwrap();
    for _ in 0..100 {
        let info = slot_info(&admin, &slot).await.unwrap().unwrap();
        if info.confirmed_flush_lsn == Some(confirmed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = slot_info(&admin, &slot).await.unwrap().unwrap();
    assert_eq!(info.confirmed_flush_lsn, Some(confirmed));
    assert!(info.active && !info.temporary && !info.is_lost());
    assert_eq!(info.plugin.as_deref(), Some("pgoutput"));

    // Lose the connection, commit more while nobody listens.
    drop(stream);
    wait_slot_inactive(&admin, &slot).await;
    admin
        .batch_execute("insert into events values (4)")
        .await
        .unwrap();

    let session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    let mut stream = session.start(&slot, confirmed, "pub_resume").await.unwrap();
    let second = read_transactions(&mut stream, 3).await;
    assert_eq!(ids(&second), [text("2"), text("3"), text("4")]);
    assert_eq!(second[0].end_lsn(), first[1].end_lsn());
    assert_eq!(second[1].end_lsn(), first[2].end_lsn());
    assert_quiet(&mut stream, Duration::from_secs(1)).await;

    stream.close().await;
    wait_slot_inactive(&admin, &slot).await;
    assert!(drop_slot_if_exists(&admin, &slot).await.unwrap());
}

#[tokio::test]
async fn slot_exists_in_use_and_terminated_holder() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table t (id int primary key); create publication pub_busy for table t;",
        )
        .await
        .unwrap();
    let slot = slot_name(&db, "busy");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, false).await.unwrap();
    let err = session.create_slot(&slot, false).await.unwrap_err();
    assert!(matches!(err, ReplicationError::SlotExists(_)), "{err:?}");
    let mut holder = session.start(&slot, Lsn::ZERO, "pub_busy").await.unwrap();
    let holder_pid = holder.backend_pid().unwrap();

    let info = slot_info(&admin, &slot).await.unwrap().unwrap();
    assert!(info.active);
    assert_eq!(info.active_pid, Some(holder_pid));

    let other = ReplicationStream::connect(&opts(&db)).await.unwrap();
    let err = other
        .start(&slot, Lsn::ZERO, "pub_busy")
        .await
        .err()
        .expect("second consumer accepted");
    match &err {
        ReplicationError::SlotInUse { pid, .. } => assert_eq!(*pid, Some(holder_pid)),
        other => panic!("expected SlotInUse, got {other:?}"),
    }
    assert!(err.is_retryable());

    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    let err = session.drop_slot("no_such_slot_here").await.unwrap_err();
    assert!(matches!(err, ReplicationError::SlotNotFound(_)), "{err:?}");

    assert!(terminate_slot_backend(&admin, &slot).await.unwrap());
    let err = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match holder.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("terminated stream still open")
    .expect_err("terminated stream ended cleanly");
    assert!(
        matches!(err, ReplicationError::ConnectionLost(_)),
        "{err:?}"
    );

    // DROP_REPLICATION_SLOT ... WAIT waits for the terminated holder to let go.
    session.drop_slot(&slot).await.unwrap();
    assert!(slot_info(&admin, &slot).await.unwrap().is_none());
    assert!(!terminate_slot_backend(&admin, &slot).await.unwrap());
}

#[tokio::test]
async fn temporary_slot_goes_with_its_session() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    let slot = slot_name(&db, "temp");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, true).await.unwrap();
    let info = slot_info(&admin, &slot).await.unwrap().unwrap();
    assert!(info.temporary);
    session.close().await;
    for _ in 0..100 {
        if slot_info(&admin, &slot).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("temporary slot survived its session");
}

/// Calls `next()` until `check` holds (or `limit` passes), failing on data or errors.
async fn drive_until<F, Fut>(
    stream: &mut realtime_pg::replication::LogicalStream,
    limit: Duration,
    mut check: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            panic!("unexpected stream item {r:?}");
        }
        if check().await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn status_updates_report_confirmed_and_quiet_positions() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table watched (id int primary key);
             create table unwatched (id int primary key);
             create publication pub_status for table watched;",
        )
        .await
        .unwrap();
    let slot = slot_name(&db, "status");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, true).await.unwrap();
    let mut stream = session.start(&slot, Lsn::ZERO, "pub_status").await.unwrap();
    stream.set_status_interval(Duration::from_millis(300));

    admin
        .batch_execute("insert into watched values (1)")
        .await
        .unwrap();
    let tx = read_transactions(&mut stream, 1).await.remove(0);
    let end = tx.end_lsn();
    let flushed = || async {
        slot_info(&admin, &slot)
            .await
            .unwrap()
            .unwrap()
            .confirmed_flush_lsn
            .unwrap()
    };

    // Not confirmed: unrelated WAL and keepalives must not move the slot past the change.
    admin
        .batch_execute("insert into unwatched values (1)")
        .await
        .unwrap();
    assert!(
        !drive_until(&mut stream, Duration::from_secs(2), || async {
            flushed().await >= end
        })
        .await
    );
    assert!(flushed().await < end);

    // Confirmed: the periodic update carries it without an explicit send_status.
    stream.confirm(end);
    assert!(
        drive_until(&mut stream, Duration::from_secs(10), || async {
            flushed().await >= end
        })
        .await
    );

    // Quiet publication, busy database: keepalive positions are confirmed too.
    admin
        .batch_execute("insert into unwatched values (2)")
        .await
        .unwrap();
    let current: String = admin
        .query_one("select pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let current: Lsn = current.parse().unwrap();
    assert!(current > end);
    assert!(
        drive_until(&mut stream, Duration::from_secs(10), || async {
            flushed().await >= current
        })
        .await
    );
    stream.close().await;
}

#[tokio::test]
async fn protocol_2_messages_binary_values_and_streamed_transactions() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute(
            "create table bulk (id int primary key, flag bool);
             create publication pub_proto2 for table bulk;",
        )
        .await
        .unwrap();
    let mut o = opts(&db);
    // Small enough that a few thousand rows overflow it and get streamed before commit.
    o.options = Some("-c logical_decoding_work_mem=64kB".into());
    let slot = slot_name(&db, "proto2");
    let mut session = ReplicationStream::connect(&o).await.unwrap();
    session.create_slot(&slot, true).await.unwrap();
    let options = realtime_pg::replication::StartOptions {
        publications: vec!["pub_proto2".into()],
        proto_version: 2,
        messages: true,
        binary: true,
        streaming: true,
    };
    let mut stream = session
        .start_with(&slot, Lsn::ZERO, &options)
        .await
        .unwrap();

    // A small transaction with a transactional logical message, binary values.
    admin
        .batch_execute(
            "begin;
             insert into bulk values (1, true);
             select pg_logical_emit_message(true, 'realtime', 'hello');
             commit;",
        )
        .await
        .unwrap();
    let tx = read_transactions(&mut stream, 1).await.remove(0);
    let bulk_oid: u32 = admin
        .query_one("select 'bulk'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let changes = tx.changes();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0],
        &LogicalMessage::Insert {
            relation: bulk_oid,
            new: vec![
                TupleValue::Binary(Bytes::from_static(&[0, 0, 0, 1])),
                TupleValue::Binary(Bytes::from_static(&[1])),
            ],
        }
    );
    let LogicalMessage::Message {
        transactional,
        prefix,
        content,
        ..
    } = changes[1]
    else {
        panic!("expected a logical message, got {:?}", changes[1])
    };
    assert!(*transactional);
    assert_eq!(prefix, "realtime");
    assert_eq!(content, &Bytes::from_static(b"hello"));

    // A large transaction arrives in streamed blocks whose changes carry its xid.
    admin
        .batch_execute("insert into bulk select g, false from generate_series(2, 5001) g")
        .await
        .unwrap();
    let mut in_stream = false;
    let mut blocks = 0;
    let mut streamed_xid = None;
    let mut inserts = 0;
    loop {
        let x = tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .expect("stream stalled")
            .unwrap()
            .unwrap();
        let (xid, message) = if in_stream {
            realtime_pg::pgoutput::decode_in_stream(&x.data).unwrap()
        } else {
            (None, decode(&x.data).unwrap())
        };
        match message {
            LogicalMessage::StreamStart { xid, first_segment } => {
                assert_eq!(first_segment, blocks == 0);
                assert!(streamed_xid.is_none_or(|x| x == xid));
                streamed_xid = Some(xid);
                in_stream = true;
                blocks += 1;
            }
            LogicalMessage::StreamStop => in_stream = false,
            LogicalMessage::Insert { .. } => {
                assert!(in_stream);
                assert_eq!(xid, streamed_xid);
                inserts += 1;
            }
            LogicalMessage::Relation(_) => assert_eq!(xid, streamed_xid),
            LogicalMessage::StreamCommit { xid, end_lsn, .. } => {
                assert_eq!(Some(xid), streamed_xid);
                stream.confirm(end_lsn);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(blocks >= 1);
    assert_eq!(inserts, 5000);
    stream.close().await;
}
