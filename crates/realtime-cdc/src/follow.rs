//! A consumer waiting for a slot another node streams follows that node's relay
//! ([`crate::relay`]): it runs the relayed messages through its own
//! [`WalConsumer`], routing and handing on for its own subscribers, and confirms nothing.
//! Its consumer keeps what it handed on across the switch to the slot, so the slot's
//! re-sent transactions are skipped.

use std::time::{Duration, Instant};

use realtime_pg::pgoutput;

use crate::reconnect::{act, Consumer, Exit};
use crate::relay::{decode_batch, RelayFilter, RelayHandle};
use crate::wal_consumer::WalConsumer;

/// Longest wait for the relay's end when taking over the slot.
const FINISH_WAIT: Duration = Duration::from_secs(2);

/// A consumer's position in the relay.
pub(crate) struct Follower {
    handle: RelayHandle,
    /// After the last batch handed on; `None` when not following.
    cursor: Option<String>,
    filter: RelayFilter,
    /// The consumer is ready to route relayed rows.
    prepared: bool,
}

impl Follower {
    pub(crate) fn new(handle: RelayHandle) -> Follower {
        Follower {
            handle,
            cursor: None,
            filter: RelayFilter::default(),
            prepared: false,
        }
    }

    /// Gets ready to follow: the consumer's connections, and the relay's end as the place to
    /// start reading. `false` when either is not available yet (tried again next round).
    pub(crate) async fn start<C: Consumer>(
        &mut self,
        consumer: &mut C,
        wal: &mut WalConsumer,
    ) -> bool {
        if !self.prepared {
            if let Err(exit) = consumer.prepare_follow().await {
                tracing::debug!(external_id = %consumer.target().external_id, ?exit, "not ready to follow the relay");
                return false;
            }
            self.prepared = true;
        }
        if self.cursor.is_none() {
            let Some(tail) = self.handle.transport.tail(&self.handle.key).await else {
                return false;
            };
            // A fresh start: what this consumer held of an earlier session is re-read.
            wal.new_session();
            self.filter.reset();
            self.cursor = Some(tail);
        }
        true
    }

    /// Follows for about `period` (the standby's retry period), starting at the relay's end.
    pub(crate) async fn follow_for<C: Consumer>(
        &mut self,
        consumer: &mut C,
        wal: &mut WalConsumer,
        period: Duration,
    ) -> Result<(), Exit> {
        let deadline = Instant::now() + period;
        if !self.start(consumer, wal).await {
            tokio::time::sleep(period).await;
            return Ok(());
        }
        loop {
            let now = Instant::now();
            if now >= deadline || consumer.should_stop() {
                return Ok(());
            }
            if self
                .read_once(consumer, wal, deadline - now)
                .await?
                .is_none()
            {
                tokio::time::sleep((deadline - Instant::now()).min(Duration::from_millis(200)))
                    .await;
            }
        }
    }

    /// Before streaming the slot: reads what remains in the relay, then stops following.
    pub(crate) async fn finish<C: Consumer>(
        &mut self,
        consumer: &mut C,
        wal: &mut WalConsumer,
    ) -> Result<(), Exit> {
        if self.cursor.is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + FINISH_WAIT;
        let result = loop {
            if Instant::now() >= deadline {
                break Ok(());
            }
            match self.read_once(consumer, wal, Duration::ZERO).await {
                Ok(Some(0)) | Ok(None) => break Ok(()),
                Ok(Some(_)) => continue,
                Err(exit) => break Err(exit),
            }
        };
        self.cursor = None;
        self.filter.reset();
        result
    }

    /// Reads once and hands on what came; the number of batches, `None` when the relay
    /// could not be read. After a failed hand-on the same batches are read again next time
    /// (what was handed on is skipped by its position), with the consumer prepared again.
    async fn read_once<C: Consumer>(
        &mut self,
        consumer: &mut C,
        wal: &mut WalConsumer,
        wait: Duration,
    ) -> Result<Option<usize>, Exit> {
        let Some(cursor) = self.cursor.clone() else {
            return Ok(None);
        };
        let Some((next, batches)) = self
            .handle
            .transport
            .read(&self.handle.key, cursor, wait)
            .await
        else {
            return Ok(None);
        };
        let n = batches.len();
        match self.hand_on(consumer, wal, batches).await {
            Ok(()) => {
                self.cursor = Some(next);
                Ok(Some(n))
            }
            Err(exit) => {
                wal.new_session();
                self.filter.reset();
                consumer.session_ended();
                self.prepared = false;
                Err(exit)
            }
        }
    }

    async fn hand_on<C: Consumer>(
        &mut self,
        consumer: &mut C,
        wal: &mut WalConsumer,
        batches: Vec<bytes::Bytes>,
    ) -> Result<(), Exit> {
        let external_id = consumer.target().external_id.clone();
        for batch in batches {
            let messages = match decode_batch(&batch) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%external_id, error = %e, "malformed relayed changes skipped");
                    continue;
                }
            };
            for raw in messages {
                let message = match pgoutput::decode(&raw.data) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%external_id, error = %e, "undecodable relayed message skipped");
                        continue;
                    }
                };
                if !self.filter.admit(&raw, &message) {
                    continue;
                }
                let step = wal.message(message);
                act(consumer, None, wal, step, &mut None).await?;
            }
        }
        if wal.waiting() {
            let step = wal.drained();
            act(consumer, None, wal, step, &mut None).await?;
        }
        Ok(())
    }
}
