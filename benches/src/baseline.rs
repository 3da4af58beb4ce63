//! The baseline: a minimal tokio-tungstenite broadcast server with no protocol. Every data
//! frame a client sends is relayed, as the same bytes, to every other connected client. It is
//! what a WebSocket fan-out costs before channels, tokens, serializers and limits.
//!
//! Each benchmark binary becomes this server when run as `<bench> baseline-server <port>
//! [<read buffer bytes>]`, so the baseline is measured as its own process, like the `realtime`
//! binary. Without a size, tungstenite's default read buffer (128 KiB per socket) is used, as
//! axum's WebSocket upgrade does.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// First argument that turns a benchmark binary into the baseline server.
pub const ARG: &str = "baseline-server";

/// Frames queued per subscriber before a slow one starts skipping.
const QUEUE: usize = 4096;

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

/// Accepts WebSocket clients forever and relays their frames to each other; `read_buffer`
/// overrides tungstenite's per-socket read buffer size.
pub async fn serve(listener: TcpListener, read_buffer: Option<usize>) {
    let mut config = WebSocketConfig::default();
    if let Some(size) = read_buffer {
        config = config.read_buffer_size(size);
    }
    let (tx, _) = broadcast::channel::<(u64, Message)>(QUEUE);
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        tokio::spawn(connection(stream, next_id, tx.clone(), config));
    }
}

async fn connection(
    stream: TcpStream,
    id: u64,
    tx: broadcast::Sender<(u64, Message)>,
    config: WebSocketConfig,
) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            inbound = source.next() => match inbound {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    // No receivers is fine: the frame is simply dropped.
                    let _ = tx.send((id, m));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            outbound = rx.recv() => match outbound {
                Ok(first) => {
                    // Queue everything already waiting, then write it with one flush.
                    let mut queued = Some(first);
                    let mut failed = false;
                    while let Some((from, m)) = queued.take() {
                        if from != id && sink.feed(m).await.is_err() {
                            failed = true;
                            break;
                        }
                        queued = rx.try_recv().ok();
                    }
                    if failed || sink.flush().await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
}
