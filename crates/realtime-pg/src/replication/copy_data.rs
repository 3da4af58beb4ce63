//! The payloads exchanged inside CopyBoth during streaming replication: `XLogData` (`w`) and
//! primary keepalives (`k`) from the server, standby status updates (`r`) to it. Pure.

use bytes::{BufMut, Bytes, BytesMut};

use crate::lsn::Lsn;

/// One `XLogData` message: for a logical slot, one pgoutput message in `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// WAL position the data belongs to.
    pub wal_start: Lsn,
    /// Current end of WAL on the server.
    pub wal_end: Lsn,
    /// Server clock when sent, microseconds since 2000-01-01 UTC.
    pub server_time: i64,
    /// The plugin output (decode with [`crate::pgoutput::decode`]).
    pub data: Bytes,
}

/// A primary keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// Current end of WAL on the server (everything before it has been sent).
    pub wal_end: Lsn,
    /// Server clock, microseconds since 2000-01-01 UTC.
    pub server_time: i64,
    /// Whether the server wants a status update now (to avoid `wal_sender_timeout`).
    pub reply_requested: bool,
}

/// What the server sends inside CopyBoth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCopyData {
    /// `w`
    XLogData(XLogData),
    /// `k`
    Keepalive(PrimaryKeepalive),
}

/// Why a CopyData payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyDataError {
    /// Shorter than its fixed header.
    #[error("truncated replication {0} message")]
    Truncated(&'static str),
    /// Unknown first byte.
    #[error("unknown replication message tag {0:#04x}")]
    UnknownTag(u8),
}

const XLOG_HEADER: usize = 1 + 8 + 8 + 8;
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;

/// Parses one CopyData payload from the server.
pub fn parse_server_copy_data(data: Bytes) -> Result<ServerCopyData, CopyDataError> {
    let be64 = |at: usize| -> Option<u64> {
        data.get(at..at + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
    };
    match data.first() {
        Some(b'w') => {
            let (Some(start), Some(end), Some(time)) = (be64(1), be64(9), be64(17)) else {
                return Err(CopyDataError::Truncated("XLogData"));
            };
            Ok(ServerCopyData::XLogData(XLogData {
                wal_start: Lsn(start),
                wal_end: Lsn(end),
                server_time: time as i64,
                data: data.slice(XLOG_HEADER..),
            }))
        }
        Some(b'k') => {
            let (Some(end), Some(time), Some(&reply)) = (be64(1), be64(9), data.get(17)) else {
                return Err(CopyDataError::Truncated("keepalive"));
            };
            if data.len() != KEEPALIVE_LEN {
                return Err(CopyDataError::Truncated("keepalive"));
            }
            Ok(ServerCopyData::Keepalive(PrimaryKeepalive {
                wal_end: Lsn(end),
                server_time: time as i64,
                reply_requested: reply == 1,
            }))
        }
        Some(&tag) => Err(CopyDataError::UnknownTag(tag)),
        None => Err(CopyDataError::Truncated("empty")),
    }
}

/// The payload of a standby status update (`r`), to be wrapped in a CopyData message.
pub fn standby_status_update(write: Lsn, flush: Lsn, apply: Lsn, now: i64, reply: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(34);
    buf.put_u8(b'r');
    buf.put_u64(write.0);
    buf.put_u64(flush.0);
    buf.put_u64(apply.0);
    buf.put_i64(now);
    buf.put_u8(u8::from(reply));
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlogdata() {
        let mut raw = vec![b'w'];
        raw.extend_from_slice(&0x10u64.to_be_bytes());
        raw.extend_from_slice(&0x20u64.to_be_bytes());
        raw.extend_from_slice(&7i64.to_be_bytes());
        raw.extend_from_slice(b"Bxyz");
        let parsed = parse_server_copy_data(Bytes::from(raw.clone())).unwrap();
        assert_eq!(
            parsed,
            ServerCopyData::XLogData(XLogData {
                wal_start: Lsn(0x10),
                wal_end: Lsn(0x20),
                server_time: 7,
                data: Bytes::from_static(b"Bxyz"),
            })
        );
        for len in 0..XLOG_HEADER {
            assert!(parse_server_copy_data(Bytes::copy_from_slice(&raw[..len])).is_err());
        }
    }

    #[test]
    fn keepalive() {
        let mut raw = vec![b'k'];
        raw.extend_from_slice(&0x30u64.to_be_bytes());
        raw.extend_from_slice(&9i64.to_be_bytes());
        raw.push(1);
        assert_eq!(
            parse_server_copy_data(Bytes::from(raw.clone())),
            Ok(ServerCopyData::Keepalive(PrimaryKeepalive {
                wal_end: Lsn(0x30),
                server_time: 9,
                reply_requested: true,
            }))
        );
        for len in 0..raw.len() {
            assert!(parse_server_copy_data(Bytes::copy_from_slice(&raw[..len])).is_err());
        }
        assert_eq!(
            parse_server_copy_data(Bytes::from_static(b"q")),
            Err(CopyDataError::UnknownTag(b'q'))
        );
    }

    #[test]
    fn status_update_layout() {
        let b = standby_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(b.len(), 34);
        assert_eq!(b[0], b'r');
        assert_eq!(&b[1..9], &1u64.to_be_bytes());
        assert_eq!(&b[9..17], &2u64.to_be_bytes());
        assert_eq!(&b[17..25], &3u64.to_be_bytes());
        assert_eq!(&b[25..33], &4i64.to_be_bytes());
        assert_eq!(b[33], 1);
    }
}
