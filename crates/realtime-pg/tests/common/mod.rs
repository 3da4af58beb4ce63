//! Shared helpers of the end-to-end tests: options for the test cluster, reading whole
//! transactions off a logical stream.
#![allow(dead_code)]

use std::time::Duration;

use realtime_pg::pgoutput::{decode, LogicalMessage};
use realtime_pg::replication::{LogicalStream, XLogData};
use realtime_pg::ConnectOptions;
use realtime_testkit::{TestDb, SUPERUSER, SUPERUSER_PASSWORD};

/// Options for `db` as `user`.
pub fn opts_as(db: &TestDb, user: &str, password: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(db.host(), db.port, &db.name, user, password);
    opts.application_name = "realtime_pg_test".into();
    opts.connect_timeout = Duration::from_secs(10);
    opts
}

/// Options for `db` as the superuser.
pub fn opts(db: &TestDb) -> ConnectOptions {
    opts_as(db, SUPERUSER, SUPERUSER_PASSWORD)
}

/// A slot name unique in the cluster (slots are cluster-wide, databases per test).
pub fn slot_name(db: &TestDb, suffix: &str) -> String {
    format!("{}_{suffix}", db.name)
}

/// One transaction as received: every message from Begin to Commit, with its raw XLogData.
#[derive(Debug)]
pub struct Transaction {
    pub messages: Vec<(XLogData, LogicalMessage)>,
}

impl Transaction {
    /// The decoded messages without the raw data.
    pub fn decoded(&self) -> Vec<&LogicalMessage> {
        self.messages.iter().map(|(_, m)| m).collect()
    }

    /// The Commit's end LSN.
    pub fn end_lsn(&self) -> realtime_pg::Lsn {
        match self.messages.last() {
            Some((_, LogicalMessage::Commit { end_lsn, .. })) => *end_lsn,
            other => panic!("transaction does not end in a commit: {other:?}"),
        }
    }

    /// Changes only (no Begin/Commit/Relation).
    pub fn changes(&self) -> Vec<&LogicalMessage> {
        self.decoded()
            .into_iter()
            .filter(|m| {
                !matches!(
                    m,
                    LogicalMessage::Begin { .. }
                        | LogicalMessage::Commit { .. }
                        | LogicalMessage::Relation(_)
                        | LogicalMessage::Type { .. }
                )
            })
            .collect()
    }
}

/// Reads `n` whole transactions (each within 15 s), without confirming anything.
pub async fn read_transactions(stream: &mut LogicalStream, n: usize) -> Vec<Transaction> {
    let mut out = Vec::new();
    let mut current: Vec<(XLogData, LogicalMessage)> = Vec::new();
    while out.len() < n {
        let x = tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .expect("no replication message within 15 s")
            .expect("replication stream failed")
            .expect("replication stream ended");
        let message = decode(&x.data).unwrap_or_else(|e| panic!("decode {:?}: {e}", x.data));
        let is_commit = matches!(message, LogicalMessage::Commit { .. });
        current.push((x, message));
        if is_commit {
            out.push(Transaction {
                messages: std::mem::take(&mut current),
            });
        }
    }
    assert!(current.is_empty(), "partial transaction left: {current:?}");
    out
}

/// Asserts that nothing arrives on the stream for `wait`.
pub async fn assert_quiet(stream: &mut LogicalStream, wait: Duration) {
    match tokio::time::timeout(wait, stream.next()).await {
        Err(_) => {}
        Ok(other) => panic!("expected no message, got {other:?}"),
    }
}

/// Waits until the slot has no active backend (a closed walsender takes a moment to exit).
pub async fn wait_slot_inactive(client: &tokio_postgres::Client, slot: &str) {
    for _ in 0..100 {
        let info = realtime_pg::slots::slot_info(client, slot)
            .await
            .unwrap()
            .expect("slot exists");
        if !info.active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot {slot} still active after 10 s");
}
