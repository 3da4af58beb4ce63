//! Reading a slot's holder from `pg_stat_replication`, and terminating it only while it is the
//! same walsender with the same last reply: a holder that replied after it was judged, or a
//! new holder, survives a stale termination.

mod common;

use std::time::Duration;

use common::{opts, slot_name};
use realtime_pg::replication::ReplicationStream;
use realtime_pg::slot_holder::{slot_holder, terminate_unchanged_holder};
use realtime_pg::Lsn;
use realtime_testkit::Cluster;

#[tokio::test]
async fn only_an_unchanged_holder_is_terminated() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute("create table t (id int primary key); create publication p for table t;")
        .await
        .unwrap();
    let slot = slot_name(&db, "holder");
    let mut other = ReplicationStream::connect(&opts(&db)).await.unwrap();
    assert_eq!(slot_holder(&mut other, &slot).await.unwrap(), None);

    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, false).await.unwrap();
    assert_eq!(slot_holder(&mut other, &slot).await.unwrap(), None);
    let mut holder = session.start(&slot, Lsn::ZERO, "p").await.unwrap();
    let pid = holder.backend_pid().unwrap();

    // Never replied yet.
    let silent = slot_holder(&mut other, &slot).await.unwrap().unwrap();
    assert_eq!(silent.pid, pid);
    let w = silent.walsender.clone().expect("a walsender");
    assert_eq!(w.reply_time_us, None);
    assert!(w.backend_start_us > 0);
    assert_eq!(w.application_name.as_deref(), Some("realtime_pg_test"));
    assert!(silent.describe().starts_with(&format!("PID {pid} (")));

    // It replies: the judgement made before is stale, and terminating on it does nothing.
    holder.send_status().await.unwrap();
    let mut replied = None;
    for _ in 0..100 {
        let now = slot_holder(&mut other, &slot).await.unwrap().unwrap();
        if now.walsender.as_ref().unwrap().reply_time_us.is_some() {
            replied = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replied = replied.expect("the reply shows in pg_stat_replication");
    assert!(!terminate_unchanged_holder(&mut other, &slot, &silent)
        .await
        .unwrap());
    assert_eq!(
        slot_holder(&mut other, &slot).await.unwrap().unwrap().pid,
        pid
    );

    // Judged on what it looks like now, it is terminated.
    assert!(terminate_unchanged_holder(&mut other, &slot, &replied)
        .await
        .unwrap());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if holder.next().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the terminated holder kept streaming");
    other.close().await;
}
