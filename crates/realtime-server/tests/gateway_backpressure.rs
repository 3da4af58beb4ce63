//! Overload without casualties: a burst slows its publishers (socket and REST) while a
//! receiver that keeps reading catches up; nobody who reads is closed, nothing is lost.

mod gateway_common;

use std::time::{Duration, Instant};

use gateway_common::*;
use serde_json::{json, Value};

/// Messages of a burst.
const BURST: usize = 1000;

/// Each message carries this much, so a burst (7 MB) overflows the TCP buffers between the
/// server and a paused reader (at most 4 MiB of send buffer here; the reader's receive buffer
/// is fixed small), not only its queue.
fn blob() -> String {
    "x".repeat(7000)
}

/// A gateway with a 16-frame outbound queue (so a burst overflows it at once) and no events
/// limit, and a reader joined to `room1` that reads nothing for `pause`, then everything.
async fn gateway_and_late_reader(
    pause: Duration,
) -> (TestGateway, tokio::task::JoinHandle<Vec<i64>>) {
    let mut settings = fast_settings();
    settings.outbound_queue = 16;
    let s = TestGateway::start(settings).await;
    s.update(|t| t.limits.max_events_per_second = 1_000_000);
    let mut reader = s.client_with_receive_buffer("1.0.0", 16 * 1024).await;
    reader.join_ok("room1", "1", join_config(json!({}))).await;
    let task = tokio::spawn(async move {
        tokio::time::sleep(pause).await;
        let mut seen = Vec::new();
        while seen.len() < BURST {
            match reader.next_within(5000).await {
                Seen::Text(v) if v["event"] == "broadcast" => {
                    seen.push(v["payload"]["payload"]["i"].as_i64().unwrap_or(-1));
                }
                Seen::Text(_) | Seen::Binary(_) => {}
                Seen::Closed(code) => {
                    panic!("reader closed ({code:?}) after {} messages", seen.len())
                }
                Seen::Nothing => panic!("reader starved after {} messages", seen.len()),
            }
        }
        seen
    });
    (s, task)
}

fn in_order() -> Vec<i64> {
    (0..BURST as i64).collect()
}

#[tokio::test]
async fn a_socket_burst_waits_for_a_reader_that_catches_up() {
    let (s, reader) = gateway_and_late_reader(Duration::from_millis(500)).await;
    let mut publisher = s.client("2.0.0").await;
    publisher
        .join_ok("room1", "1", join_config(json!({})))
        .await;
    let blob = blob();
    let started = Instant::now();
    for i in 0..BURST {
        publisher.broadcast_blob(i, &blob).await;
    }
    assert_eq!(reader.await.unwrap(), in_order());
    // The reader was paused for longer than the queue could hold: the publisher was held back
    // rather than the reader dropped.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(s.gw.connected_count(TENANT), 2);
}

#[tokio::test]
async fn a_reader_idle_for_longer_than_the_stall_time_is_still_given_it_when_a_burst_comes() {
    // The reader is quiet (nothing to read) for 2.5 s, longer than the stall time, then
    // takes 0.5 s to start reading the burst: that is 0.5 s of stall, not 3.
    let (s, reader) = gateway_and_late_reader(Duration::from_millis(3000)).await;
    let mut publisher = s.client("2.0.0").await;
    publisher
        .join_ok("room1", "1", join_config(json!({})))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let blob = blob();
    for i in 0..BURST {
        publisher.broadcast_blob(i, &blob).await;
    }
    assert_eq!(reader.await.unwrap(), in_order());
    assert_eq!(s.gw.connected_count(TENANT), 2);
}

#[tokio::test]
async fn a_rest_burst_is_answered_once_the_reader_has_room() {
    let (s, reader) = gateway_and_late_reader(Duration::from_millis(500)).await;
    let auth = format!("Bearer {}", token_ok());
    let blob = blob();
    let messages: Vec<Value> = (0..BURST)
        .map(|i| json!({"topic":"room1","event":"e","payload":{"i":i,"blob":blob}}))
        .collect();
    let body = json!({ "messages": messages }).to_string();
    let started = Instant::now();
    let (status, _, _) = post_broadcast(&s, &auth, body.as_bytes()).await;
    assert_eq!(status, 202);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered before the reader had room: {:?}",
        started.elapsed()
    );
    assert_eq!(reader.await.unwrap(), in_order());
}

#[tokio::test]
async fn a_stalled_reader_is_closed_after_the_stall_and_the_others_get_everything() {
    let mut settings = fast_settings();
    settings.outbound_queue = 16;
    let s = TestGateway::start(settings).await;
    s.update(|t| t.limits.max_events_per_second = 1_000_000);
    let mut publisher = s.client("2.0.0").await;
    let mut reader = s.client("2.0.0").await;
    let mut stalled = s.client("2.0.0").await;
    for c in [&mut publisher, &mut reader, &mut stalled] {
        c.join_ok("room1", "1", join_config(json!({}))).await;
    }
    // 64 KiB messages fill the stalled socket's TCP buffers, then its queue.
    let blob = "z".repeat(64 * 1024);
    let reading = tokio::spawn(async move {
        let mut n = 0;
        while n < 200 {
            match reader.next_within(5000).await {
                Seen::Text(v) if v[3] == "broadcast" => n += 1,
                Seen::Text(_) | Seen::Binary(_) => {}
                other => panic!("reader lost after {n}: {other:?}"),
            }
        }
    });
    let started = Instant::now();
    for i in 0..200 {
        publisher.broadcast_blob(i, &blob).await;
    }
    reading.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.gw.connected_count(TENANT) != 2 {
        assert!(Instant::now() < deadline, "stalled reader still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It was given the stall time before it was closed.
    assert!(started.elapsed() >= Duration::from_secs(2));
}
