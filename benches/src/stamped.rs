//! Broadcasts stamped with their sequence number and send time, as the fan-out benches send
//! them (kind-3 user broadcasts, as realtime-js does) and read them back, so latency is
//! measured from the payload alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::client::{self, Ws};
use crate::BenchError;

/// One received broadcast: sequence number, latency in µs, receive time in ns since the epoch.
pub type Seen = (u64, u64, u64);

/// Sends broadcast `seq` on `topic`, stamped with the time since `epoch`.
pub async fn publish(
    ws: &mut Ws,
    topic: &str,
    join_ref: &str,
    seq: usize,
    epoch: Instant,
) -> Result<(), BenchError> {
    let payload = json!({"s": seq, "t": epoch.elapsed().as_nanos() as u64});
    let frame = client::user_broadcast_push(join_ref, &seq.to_string(), topic, "bench", &payload)?;
    ws.send(frame).await?;
    Ok(())
}

/// Reads stamped broadcasts until `total` arrived or the socket went quiet for `idle`;
/// `delivered` counts them as they come.
pub async fn receive(
    mut ws: Ws,
    epoch: Instant,
    total: usize,
    delivered: Arc<AtomicU64>,
    idle: Duration,
) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        let msg = match tokio::time::timeout(idle, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let Some(p) = client::broadcast_payload(&msg) else {
            continue;
        };
        let now = epoch.elapsed().as_nanos() as u64;
        if let (Some(s), Some(t)) = (p["s"].as_u64(), p["t"].as_u64()) {
            seen.push((s, now.saturating_sub(t) / 1000, now));
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = ws.close(None).await;
    seen
}
