//! A bounded queue with one consumer that costs two words while empty: a socket's outbound
//! frames and its control events wait here. (A channel would reserve a block of slots and a
//! padded shared state per socket from the start, which idle sockets pay for.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Items an empty queue keeps room for; a burst's larger buffer is given back.
pub const KEEP: usize = 8;

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity.
    Full,
    /// The consumer is gone.
    Closed,
}

/// A bounded multi-producer, single-consumer queue.
pub struct Mailbox<T> {
    items: Mutex<VecDeque<T>>,
    len: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    ready: Notify,
}

impl<T> Mailbox<T> {
    /// An empty queue for at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Mailbox<T> {
        Mailbox {
            items: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    /// Queues `item` without waiting.
    pub fn push(&self, item: T) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        {
            let Ok(mut items) = self.items.lock() else {
                return Err(Refused::Closed);
            };
            if items.len() >= self.capacity {
                return Err(Refused::Full);
            }
            items.push_back(item);
            self.len.store(items.len(), Ordering::Release);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most items it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses every later push; the consumer still gets what is queued.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Moves up to `max` queued items into `into`, waiting for the first; `false` once the
    /// queue is closed and empty.
    pub async fn recv_many(&self, into: &mut VecDeque<T>, max: usize) -> bool {
        loop {
            if self.take(into, max) > 0 {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                // A push may have raced with the close.
                return self.take(into, max) > 0;
            }
            self.ready.notified().await;
        }
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub async fn recv(&self) -> Option<T> {
        let mut one = VecDeque::with_capacity(1);
        if self.recv_many(&mut one, 1).await {
            one.pop_front()
        } else {
            None
        }
    }

    /// The next item if one waits.
    pub fn try_recv(&self) -> Option<T> {
        let mut one = VecDeque::with_capacity(1);
        self.take(&mut one, 1);
        one.pop_front()
    }

    fn take(&self, into: &mut VecDeque<T>, max: usize) -> usize {
        let Ok(mut items) = self.items.lock() else {
            return 0;
        };
        let n = items.len().min(max);
        into.extend(items.drain(..n));
        if items.is_empty() && items.capacity() > KEEP {
            // A burst's buffer is not kept by an idle socket.
            *items = VecDeque::new();
        }
        self.len.store(items.len(), Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_ordered_and_closed() {
        let m = Mailbox::new(2);
        assert_eq!(m.push(1), Ok(()));
        assert_eq!(m.push(2), Ok(()));
        assert_eq!(m.push(3), Err(Refused::Full));
        assert_eq!(m.len(), 2);
        assert_eq!(m.recv().await, Some(1));
        m.close();
        assert_eq!(m.push(4), Err(Refused::Closed));
        assert_eq!(m.recv().await, Some(2));
        assert_eq!(m.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_a_push() {
        let m = Arc::new(Mailbox::new(8));
        let consumer = tokio::spawn({
            let m = m.clone();
            async move {
                let mut got = VecDeque::new();
                while got.len() < 100 {
                    if !m.recv_many(&mut got, 10).await {
                        break;
                    }
                }
                got
            }
        });
        for i in 0..100 {
            while m.push(i) == Err(Refused::Full) {
                tokio::task::yield_now().await;
            }
        }
        let got: Vec<i32> = consumer.await.unwrap().into_iter().collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
