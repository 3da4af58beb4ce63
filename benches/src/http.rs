//! One HTTP/1.1 request over a fresh connection, enough for health checks and admin calls
//! without an HTTP client dependency.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method path` with `headers` and returns the status code of the answer.
pub async fn status(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<u16> {
    request(addr, method, path, headers, None).await
}

/// Sends `method path` with `headers` and a JSON `body`; returns the status code.
pub async fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<u16> {
    request(addr, method, path, headers, Some(body)).await
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = json_body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(json_body.unwrap_or_default());
    stream.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    // Only the status line matters.
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {line:?}")))
}
