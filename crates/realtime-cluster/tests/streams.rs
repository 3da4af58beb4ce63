//! The relay's stream against a real `redis-server`: entries read back in order after the
//! tail they were appended behind, and an append trims what is older than it is told to keep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use realtime_cluster::{Inbox, Link, NodeId, RedisTarget};
use realtime_testkit::redis::Redis;

struct Quiet;

impl Inbox for Quiet {
    fn message(&self, _channel: &[u8], _payload: Bytes) {}
}

async fn link(redis: &Redis) -> Arc<Link> {
    let target = RedisTarget::parse(&redis.url()).unwrap();
    let link = Link::start(target, NodeId::random(), Arc::new(Quiet));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !link.is_up() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    link
}

fn length(redis: &Redis, key: &str) -> usize {
    redis
        .cli(&["XLEN", key])
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn appended_entries_are_read_in_order_and_old_ones_trimmed() {
    let redis = Redis::start();
    let link = link(&redis).await;
    let key = b"realtime:0:wal:test";
    let tail = link.stream_tail(key).await.unwrap();
    assert_eq!(tail, "0-0");
    let mut last_ms = 0;
    for i in 0..300u32 {
        last_ms = link
            .stream_append(key, &Bytes::from(i.to_be_bytes().to_vec()), None)
            .await
            .expect("stored");
    }
    let mut conn = link
        .reading_connection(Duration::from_secs(1))
        .await
        .unwrap();
    let mut cursor = tail;
    let mut got = Vec::new();
    while got.len() < 300 {
        let (next, entries) = realtime_cluster::streams::stream_read(
            &mut conn,
            key,
            &cursor,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert!(!entries.is_empty(), "stopped at {}", got.len());
        got.extend(
            entries
                .iter()
                .map(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]])),
        );
        cursor = next;
    }
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    // Keeping only what is newer than the last append trims whole blocks of the old ones.
    tokio::time::sleep(Duration::from_millis(5)).await;
    link.stream_append(key, &Bytes::from_static(b"new"), Some(last_ms + 1))
        .await
        .expect("stored");
    let left = length(&redis, "realtime:0:wal:test");
    assert!(left < 300, "nothing trimmed: {left} entries");
}
