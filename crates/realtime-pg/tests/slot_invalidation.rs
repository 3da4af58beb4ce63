//! A slot that fell behind `max_slot_wal_keep_size` is reported as lost and refuses to stream.
//!
//! Its own test binary, hence its own cluster: shrinking `max_slot_wal_keep_size` cluster-wide
//! would otherwise invalidate other tests' slots.

mod common;

use common::{opts, slot_name, wait_slot_inactive};
use realtime_pg::replication::{ReplicationError, ReplicationStream};
use realtime_pg::slots::{drop_slot_if_exists, slot_info, WalStatus};
use realtime_pg::Lsn;
use realtime_testkit::Cluster;

#[tokio::test]
async fn invalidated_slot_is_lost_and_cannot_start() {
    let db = Cluster::shared().create_database().await;
    let admin = db.connect().await;
    admin
        .batch_execute("alter system set max_slot_wal_keep_size = '1MB'")
        .await
        .unwrap();
    admin
        .batch_execute(
            "select pg_reload_conf();
             create table filler (id serial primary key, pad text);
             create publication pub_lost for table filler;",
        )
        .await
        .unwrap();
    let slot = slot_name(&db, "lost");
    let mut session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    session.create_slot(&slot, false).await.unwrap();
    session.close().await;

    let info = slot_info(&admin, &slot).await.unwrap().unwrap();
    assert!(!info.is_lost(), "{info:?}");

    // Move several segments past the slot and let a checkpoint remove them.
    let mut lost = false;
    for _ in 0..10 {
        for sql in [
            "insert into filler (pad) select repeat('x', 200) from generate_series(1, 5000)",
            "select pg_switch_wal()",
            "checkpoint",
        ] {
            admin.batch_execute(sql).await.unwrap();
        }
        let info = slot_info(&admin, &slot).await.unwrap().unwrap();
        if info.is_lost() {
            assert_eq!(info.wal_status, Some(WalStatus::Lost));
            lost = true;
            break;
        }
    }
    assert!(lost, "slot never invalidated");

    // The walsender that created the slot exits asynchronously after the session closed;
    // until it has, starting reports "in use" rather than the invalidation under test.
    wait_slot_inactive(&admin, &slot).await;
    let session = ReplicationStream::connect(&opts(&db)).await.unwrap();
    let err = session
        .start(&slot, Lsn::ZERO, "pub_lost")
        .await
        .err()
        .expect("lost slot streamed");
    assert!(
        matches!(err, ReplicationError::SlotInvalidated(_)),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // Same for the walsender that refused to start: the slot can only be dropped once it is gone.
    wait_slot_inactive(&admin, &slot).await;
    assert!(drop_slot_if_exists(&admin, &slot).await.unwrap());
    admin
        .batch_execute("alter system reset max_slot_wal_keep_size")
        .await
        .unwrap();
    admin
        .batch_execute("select pg_reload_conf()")
        .await
        .unwrap();
}
