//! The listener(s) on `PORT`: `[::]` (dual-stack where the kernel allows it) plus `0.0.0.0`
//! when the IPv6 socket does not also take IPv4, falling back to IPv4 alone when IPv6 is
//! unavailable; `REALTIME_IP_VERSION` forces one family. Accepted connections are tuned by
//! [`accepted`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

use crate::config::IpVersion;

/// Binds the listeners for `port`.
pub async fn bind(port: u16, family: Option<IpVersion>) -> std::io::Result<Vec<TcpListener>> {
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match family {
        Some(IpVersion::V4) => Ok(vec![TcpListener::bind(v4).await?]),
        Some(IpVersion::V6) => Ok(vec![TcpListener::bind(v6).await?]),
        None => match TcpListener::bind(v6).await {
            Ok(l6) => {
                let bound = l6.local_addr()?.port();
                // With a dual-stack socket this bind fails (the port is taken), which is fine.
                match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, bound))).await {
                    Ok(l4) => Ok(vec![l6, l4]),
                    Err(_) => Ok(vec![l6]),
                }
            }
            Err(e6) => match TcpListener::bind(v4).await {
                Ok(l4) => Ok(vec![l4]),
                Err(_) => Err(e6),
            },
        },
    }
}

/// Tunes an accepted connection: frames go out as soon as they are written (`TCP_NODELAY`, as
/// upstream's listener sets). With Nagle's algorithm a small frame written while an earlier one
/// is unacknowledged waits for the client's delayed ack, which doubled the median
/// publish-to-receive latency under a steady fan-out (`benches/README.md`).
pub fn accepted(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut tcp, _) = listener.accept().await.unwrap();
        assert!(!tcp.nodelay().unwrap(), "the kernel's default changed");
        accepted(&mut tcp);
        assert!(tcp.nodelay().unwrap());
    }
}
