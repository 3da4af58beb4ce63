//! The baseline: a minimal tokio-tungstenite fan-out server with no protocol. A socket belongs
//! to the topic named by its request path (`/` for all the benches that use one topic), and
//! every data frame it sends is relayed, as the same bytes, to every other socket of that topic.
//! It is what a WebSocket fan-out costs before channels, tokens, serializers and limits.
//!
//! Each socket has a bounded outbound queue drained by its own writer with one flush per batch.
//! When a receiver's queue is full the sender stops reading its own socket until there is room
//! (backpressure); a frame is dropped for a receiver only when its queue has not drained for
//! [`STALL`].
//!
//! Each benchmark binary becomes this server when run as `<bench> baseline-server <port>
//! [<read buffer bytes>]`, so the baseline is measured as its own process, like the `realtime`
//! binary. Without a size, tungstenite's default read buffer (128 KiB per socket) is used, as
//! axum's WebSocket upgrade does.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// First argument that turns a benchmark binary into the baseline server.
pub const ARG: &str = "baseline-server";

/// Frames queued per receiver.
const QUEUE: usize = 1024;

/// How long a sender waits for a full receiver before dropping the frame for it.
pub const STALL: Duration = Duration::from_secs(2);

/// Frames written before a flush.
const WRITE_BATCH: usize = 256;

/// When the process was started as the baseline server, serves until killed and returns the
/// exit code; otherwise returns `None` and the benchmark runs.
pub fn run_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(ARG) {
        return None;
    }
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: {ARG} <port>");
        return Some(ExitCode::from(2));
    };
    let read_buffer = args.next().and_then(|b| b.parse::<usize>().ok());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("baseline server: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let served = runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        serve(listener, read_buffer).await;
        Ok::<(), std::io::Error>(())
    });
    match served {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("baseline server on port {port}: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// A socket as its topic's other sockets see it.
#[derive(Clone)]
struct Peer {
    id: u64,
    out: mpsc::Sender<Message>,
}

/// Topic → its sockets; each list is replaced whole on a change so a relay clones one `Arc`.
#[derive(Default)]
struct Topics {
    map: RwLock<HashMap<String, Arc<Vec<Peer>>>>,
    dropped: AtomicU64,
}

impl Topics {
    fn peers(&self, topic: &str) -> Arc<Vec<Peer>> {
        match self.map.read() {
            Ok(map) => map.get(topic).cloned().unwrap_or_default(),
            Err(_) => Arc::default(),
        }
    }

    fn change(&self, topic: &str, edit: impl FnOnce(&mut Vec<Peer>)) {
        let Ok(mut map) = self.map.write() else {
            return;
        };
        let mut peers: Vec<Peer> = map.get(topic).map(|p| p.to_vec()).unwrap_or_default();
        edit(&mut peers);
        if peers.is_empty() {
            map.remove(topic);
        } else {
            map.insert(topic.to_string(), Arc::new(peers));
        }
    }
}

/// Accepts WebSocket clients forever and relays their frames within their topic;
/// `read_buffer` overrides tungstenite's per-socket read buffer size.
pub async fn serve(listener: TcpListener, read_buffer: Option<usize>) {
    let mut config = WebSocketConfig::default();
    if let Some(size) = read_buffer {
        config = config.read_buffer_size(size);
    }
    let topics = Arc::new(Topics::default());
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        tokio::spawn(connection(stream, next_id, topics.clone(), config));
    }
}

async fn connection(stream: TcpStream, id: u64, topics: Arc<Topics>, config: WebSocketConfig) {
    let mut topic = String::from("/");
    // The error type is fixed by tungstenite's handshake callback.
    #[allow(clippy::result_large_err)]
    let remember_path = |req: &Request, resp: Response| {
        topic = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, remember_path, Some(config)).await
    else {
        return;
    };
    let (sink, mut source) = ws.split();
    let (out, rx) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write_loop(sink, rx));
    topics.change(&topic, |peers| peers.push(Peer { id, out }));
    while let Some(Ok(m)) = source.next().await {
        match m {
            Message::Binary(_) | Message::Text(_) => {
                for peer in topics.peers(&topic).iter().filter(|p| p.id != id) {
                    relay(peer, m.clone(), &topics).await;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    topics.change(&topic, |peers| peers.retain(|p| p.id != id));
    writer.abort();
}

/// Queues `m` for `peer`, waiting while its queue is full, up to [`STALL`].
async fn relay(peer: &Peer, m: Message, topics: &Topics) {
    match peer.out.try_send(m) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(m)) => {
            if let Err(mpsc::error::SendTimeoutError::Timeout(_)) =
                peer.out.send_timeout(m, STALL).await
            {
                topics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<TcpStream>,
        Message,
    >,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(first) = rx.recv().await {
        // Everything already queued goes out with one flush.
        let mut next = Some(first);
        let mut batch = 0;
        while let Some(m) = next.take() {
            if sink.feed(m).await.is_err() {
                return;
            }
            batch += 1;
            if batch < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
