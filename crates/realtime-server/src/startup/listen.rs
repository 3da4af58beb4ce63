//! The listener(s) on `PORT`: `[::]` (dual-stack where the kernel allows it) plus `0.0.0.0`
//! when the IPv6 socket does not also take IPv4, falling back to IPv4 alone when IPv6 is
//! unavailable; `REALTIME_IP_VERSION` forces one family.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

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
