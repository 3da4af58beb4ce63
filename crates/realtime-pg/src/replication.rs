//! The logical replication stream over the streaming replication protocol.
//!
//! tokio-postgres has no replication support, so this speaks the protocol itself with
//! `postgres-protocol`'s frontend/backend messages and SCRAM code:
//! [`ReplicationStream`] is a `replication=database` session for the replication commands
//! (`IDENTIFY_SYSTEM`, slot creation and removal); [`ReplicationStream::start`] turns it into a
//! [`LogicalStream`] of pgoutput `XLogData`, answering keepalives and reporting progress.
//!
//! The stream only moves while its owner calls [`LogicalStream::next`]: keepalive replies are
//! sent from there, so a consumer that stops calling it for longer than the server's
//! `wal_sender_timeout` gets disconnected.

mod copy_data;
mod error;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use copy_data::{
    parse_server_copy_data, standby_status_update, CopyDataError, PrimaryKeepalive, ServerCopyData,
    XLogData,
};
pub use error::{ReplicationError, ServerError};

use crate::connect::{self, ConnectError, ConnectOptions};
use crate::lsn::Lsn;
use crate::tls;
use wire::{Backend, Wire};

/// How often a [`LogicalStream`] reports its position when the server does not ask.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemId {
    /// The cluster's unique system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlog_pos: Lsn,
    /// Database connected to.
    pub dbname: Option<String>,
}

/// Options of `START_REPLICATION` for pgoutput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// Publications to stream.
    pub publications: Vec<String>,
    /// `proto_version`: 1, or 2 for streamed in-progress transactions (PG14+).
    pub proto_version: u32,
    /// `messages`: include `pg_logical_emit_message` output (PG14+).
    pub messages: bool,
    /// `binary`: values in binary instead of text (PG14+).
    pub binary: bool,
    /// `streaming`: stream large in-progress transactions (PG14+, needs `proto_version` 2).
    pub streaming: bool,
}

impl StartOptions {
    /// Protocol 1, text values, no logical messages, no streaming: what PG10+ all accept.
    pub fn new(publication: &str) -> Self {
        StartOptions {
            publications: vec![publication.to_owned()],
            proto_version: 1,
            messages: false,
            binary: false,
            streaming: false,
        }
    }

    /// The option list of `START_REPLICATION ... LOGICAL <lsn> (<this>)`.
    pub fn to_sql(&self) -> String {
        let names: Vec<String> = self
            .publications
            .iter()
            .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
            .collect();
        let mut out = format!(
            "proto_version '{}', publication_names {}",
            self.proto_version,
            quote_literal(&names.join(","))
        );
        if self.messages {
            out.push_str(", messages 'true'");
        }
        if self.binary {
            out.push_str(", binary 'true'");
        }
        if self.streaming {
            out.push_str(", streaming 'on'");
        }
        out
    }
}

/// A `replication=database` session, before streaming starts.
pub struct ReplicationStream {
    wire: Wire,
}

impl ReplicationStream {
    /// Connects and authenticates (SCRAM-SHA-256, MD5, cleartext or trust), TLS per
    /// `opts.tls`, addresses tried IPv6 first, each within `opts.connect_timeout`; then runs
    /// `opts.after_connect_query` if set.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, ReplicationError> {
        let addrs = connect::resolve_family(&opts.host, opts.port, opts.ip_version)
            .await
            .map_err(|e| match e {
                ConnectError::Resolve { host, reason } => {
                    ReplicationError::Resolve { host, reason }
                }
                other => ReplicationError::ConnectionLost(other.to_string()),
            })?;
        let tls = tls::client_config(&opts.tls)?.map(Arc::new);
        let mut last = None;
        for addr in addrs {
            let attempt =
                tokio::time::timeout(opts.connect_timeout, Wire::connect(opts, addr, tls.clone()))
                    .await;
            let error = match attempt {
                Ok(Ok(wire)) => {
                    let mut stream = ReplicationStream { wire };
                    if let Some(sql) = &opts.after_connect_query {
                        stream.wire.simple_query(sql).await?;
                    }
                    tracing::debug!(%addr, pid = ?stream.wire.backend_pid(), "replication connection open");
                    return Ok(stream);
                }
                Ok(Err(e @ (ReplicationError::Auth { .. } | ReplicationError::Server(_)))) => {
                    return Err(e)
                }
                Ok(Err(e)) => e,
                Err(_) => ReplicationError::Timeout {
                    addr: addr.to_string(),
                    timeout: opts.connect_timeout,
                },
            };
            tracing::debug!(%addr, %error, "replication connection attempt failed");
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| ReplicationError::Resolve {
            host: opts.host.clone(),
            reason: "no address".into(),
        }))
    }

    /// The server's `server_version` parameter.
    pub fn server_version(&self) -> Option<&str> {
        self.wire.server_version()
    }

    /// The walsender's process id (for `pg_terminate_backend`, `pg_stat_replication`).
    pub fn backend_pid(&self) -> Option<i32> {
        self.wire.backend_pid()
    }

    /// Runs a simple query (a replication command, or SQL: `replication=database` sessions
    /// accept both) and returns its rows as text.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        self.wire.simple_query(sql).await
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemId, ReplicationError> {
        let rows = self.wire.simple_query("IDENTIFY_SYSTEM").await?;
        let row = first_row(&rows, 4, "IDENTIFY_SYSTEM")?;
        let text = |i: usize| row.get(i).cloned().flatten();
        Ok(SystemId {
            system_id: text(0).unwrap_or_default(),
            timeline: text(1)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad_reply("IDENTIFY_SYSTEM timeline"))?,
            xlog_pos: parse_lsn(text(2).as_deref(), "IDENTIFY_SYSTEM xlogpos")?,
            dbname: text(3),
        })
    }

    /// `CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput NOEXPORT_SNAPSHOT`;
    /// returns the consistent point, from which changes will be streamed.
    ///
    /// A temporary slot lives as long as this session (and the [`LogicalStream`] it becomes).
    /// An existing name yields [`ReplicationError::SlotExists`].
    pub async fn create_slot(
        &mut self,
        slot: &str,
        temporary: bool,
    ) -> Result<Lsn, ReplicationError> {
        check_slot_name(slot)?;
        let temporary = if temporary { " TEMPORARY" } else { "" };
        // The pre-PG15 spelling, which PG15+ still accepts.
        let sql =
            format!("CREATE_REPLICATION_SLOT {slot}{temporary} LOGICAL pgoutput NOEXPORT_SNAPSHOT");
        let rows = self.wire.simple_query(&sql).await?;
        let row = first_row(&rows, 2, "CREATE_REPLICATION_SLOT")?;
        let point = parse_lsn(row.get(1).cloned().flatten().as_deref(), "consistent_point")?;
        tracing::info!(slot, consistent_point = %point, "replication slot created");
        Ok(point)
    }

    /// `DROP_REPLICATION_SLOT <slot> WAIT`: waits while another session uses it.
    pub async fn drop_slot(&mut self, slot: &str) -> Result<(), ReplicationError> {
        check_slot_name(slot)?;
        self.wire
            .simple_query(&format!("DROP_REPLICATION_SLOT {slot} WAIT"))
            .await?;
        tracing::info!(slot, "replication slot dropped");
        Ok(())
    }

    /// Starts streaming `publication` from `slot` with protocol 1 options
    /// ([`StartOptions::new`]). `start` of [`Lsn::ZERO`] means "from the slot's confirmed
    /// position"; the server never goes back before that position anyway.
    pub async fn start(
        self,
        slot: &str,
        start: Lsn,
        publication: &str,
    ) -> Result<LogicalStream, ReplicationError> {
        self.start_with(slot, start, &StartOptions::new(publication))
            .await
    }

    /// Starts streaming with explicit pgoutput options.
    pub async fn start_with(
        mut self,
        slot: &str,
        start: Lsn,
        options: &StartOptions,
    ) -> Result<LogicalStream, ReplicationError> {
        check_slot_name(slot)?;
        // Reported flush positions must never fall below the slot's: some server versions
        // would move confirmed_flush_lsn back.
        let rows = self
            .wire
            .simple_query(&format!(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ))
            .await?;
        let slot_flush = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|t| t.parse::<Lsn>().ok())
            .unwrap_or_default();
        let sql = format!(
            "START_REPLICATION SLOT {slot} LOGICAL {start} ({})",
            options.to_sql()
        );
        self.wire.start_copy_both(&sql).await?;
        let confirmed = start.max(slot_flush);
        tracing::info!(slot, %start, %confirmed, "logical replication started");
        Ok(LogicalStream {
            wire: self.wire,
            slot: slot.to_owned(),
            received: confirmed,
            delivered: Lsn::ZERO,
            between_transactions: true,
            confirmed,
            status_interval: STATUS_INTERVAL,
            next_status: Instant::now() + STATUS_INTERVAL,
            ended: false,
        })
    }

    /// Closes the session (a temporary slot it created goes with it).
    pub async fn close(mut self) {
        self.wire.terminate().await;
    }
}

/// A running `START_REPLICATION` stream.
///
/// Progress reporting: status updates carry `write` = the furthest WAL position seen and
/// `flush` = `apply` = the position confirmed with [`LogicalStream::confirm`]. When the stream
/// is between transactions and everything handed out has been confirmed, a keepalive's
/// position is confirmed too: the server has sent every transaction committed before it, and
/// any transaction still open commits after it and will be sent again after a reconnect. This
/// keeps a slot on a quiet publication from holding WAL back.
pub struct LogicalStream {
    wire: Wire,
    slot: String,
    /// Furthest WAL end seen in XLogData or keepalives.
    received: Lsn,
    /// `wal_start` of the last XLogData handed out.
    delivered: Lsn,
    /// The last XLogData handed out ended a transaction (or there was none).
    between_transactions: bool,
    /// Flush position reported to the server.
    confirmed: Lsn,
    status_interval: Duration,
    next_status: Instant,
    ended: bool,
}

impl LogicalStream {
    /// The next pgoutput message, or `None` once the server has ended the stream.
    ///
    /// Keepalives are answered here (immediately when the server asks) and a status update
    /// goes out every status interval ([`STATUS_INTERVAL`] unless changed). Cancel-safe: dropping the future loses no data, so
    /// it can sit in a `select!`.
    pub async fn next(&mut self) -> Result<Option<XLogData>, ReplicationError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if self.wire.has_pending_writes() {
                self.wire.flush().await?;
            }
            if Instant::now() >= self.next_status {
                self.queue_status(false)?;
                continue;
            }
            let message = tokio::select! {
                m = self.wire.read() => m?,
                _ = tokio::time::sleep_until(self.next_status) => continue,
            };
            let body = match message {
                Backend::Message(postgres_protocol::message::backend::Message::CopyData(body)) => {
                    body.into_bytes()
                }
                Backend::Message(postgres_protocol::message::backend::Message::CopyDone) => {
                    tracing::info!(slot = %self.slot, "server ended the replication stream");
                    self.ended = true;
                    // Acknowledge so the server can finish the command; the session ends anyway.
                    self.wire.queue_copy_done();
                    let _ = self.wire.flush().await;
                    return Ok(None);
                }
                Backend::Message(
                    postgres_protocol::message::backend::Message::NoticeResponse(_)
                    | postgres_protocol::message::backend::Message::ParameterStatus(_),
                ) => continue,
                Backend::Message(other) => {
                    let error = streaming_interrupted(&other, |e| self.wire.server_error(e));
                    tracing::info!(slot = %self.slot, %error, "replication stream interrupted");
                    return Err(error);
                }
                Backend::CopyBothResponse => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message during streaming".into(),
                    ))
                }
            };
            match parse_server_copy_data(body)
                .map_err(|e| ReplicationError::Protocol(e.to_string()))?
            {
                ServerCopyData::XLogData(x) => {
                    self.received = self.received.max(x.wal_end).max(x.wal_start);
                    self.delivered = x.wal_start;
                    // pgoutput Commit or Stream Commit.
                    self.between_transactions = matches!(x.data.first(), Some(b'C' | b'c'));
                    return Ok(Some(x));
                }
                ServerCopyData::Keepalive(k) => {
                    self.received = self.received.max(k.wal_end);
                    if self.between_transactions && self.confirmed >= self.delivered {
                        self.confirmed = self.confirmed.max(k.wal_end);
                    }
                    if k.reply_requested {
                        self.queue_status(false)?;
                    }
                }
            }
        }
    }

    /// Advances the flush position that status updates report. Call it only once the change at
    /// `flushed` (normally a Commit's `end_lsn`) was handed on: after a reconnect the server
    /// resumes with the first transaction committing after the confirmed position.
    pub fn confirm(&mut self, flushed: Lsn) {
        if flushed > self.confirmed {
            self.confirmed = flushed;
        }
    }

    /// The furthest WAL position the server reported (XLogData or keepalive).
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// The flush position status updates report.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// Changes how often status updates go out unprompted (default [`STATUS_INTERVAL`]).
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval;
        self.next_status = Instant::now() + interval;
    }

    /// How often status updates go out unprompted.
    pub fn status_interval(&self) -> Duration {
        self.status_interval
    }

    /// Runs `work` (a consumer handing on what it read) while keeping the session alive:
    /// status updates still go out every status interval, so neither `wal_sender_timeout`
    /// nor a contender judging the holder by its replies takes a busy consumer for a dead
    /// one. A failed update abandons `work`.
    pub async fn while_busy<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ReplicationError> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                _ = tokio::time::sleep_until(self.next_status) => self.send_status().await?,
            }
        }
    }

    /// The slot being streamed.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The walsender's process id.
    pub fn backend_pid(&self) -> Option<i32> {
        self.wire.backend_pid()
    }

    /// Sends a status update now.
    pub async fn send_status(&mut self) -> Result<(), ReplicationError> {
        self.queue_status(false)?;
        self.wire.flush().await
    }

    /// Closes the connection. A temporary slot is dropped by the server.
    pub async fn close(mut self) {
        self.wire.terminate().await;
    }

    fn queue_status(&mut self, reply: bool) -> Result<(), ReplicationError> {
        let write = self.received.max(self.confirmed);
        let payload = standby_status_update(
            write,
            self.confirmed,
            self.confirmed,
            crate::time::now_micros(),
            reply,
        );
        tracing::trace!(slot = %self.slot, %write, flush = %self.confirmed, "standby status update");
        self.wire.queue_copy_data(payload)?;
        self.next_status = Instant::now() + self.status_interval;
        Ok(())
    }
}

/// What a message other than CopyData/CopyDone/notices means while streaming. A server that
/// shuts down (smart or fast) may end the command with CommandComplete/ReadyForQuery or send
/// an ErrorResponse such as 57P01 `admin_shutdown` instead of CopyDone: the connection is
/// going away and the caller should reconnect, so these are [`ReplicationError::ConnectionLost`].
/// ErrorResponses go through `classify` (the session's [`ReplicationError::from_server`]).
fn streaming_interrupted(
    message: &postgres_protocol::message::backend::Message,
    classify: impl FnOnce(&ServerError) -> ReplicationError,
) -> ReplicationError {
    use postgres_protocol::message::backend::Message;
    match message {
        Message::ErrorResponse(body) => classify(&ServerError::from_body(body)),
        Message::CommandComplete(body) => ReplicationError::ConnectionLost(format!(
            "the server completed the replication command ({}) without CopyDone",
            body.tag().unwrap_or("?")
        )),
        Message::ReadyForQuery(_) => ReplicationError::ConnectionLost(
            "the server left the replication stream (ReadyForQuery)".into(),
        ),
        _ => ReplicationError::Protocol("unexpected message during streaming".into()),
    }
}

/// Slot names the server accepts: `[a-z0-9_]{1,63}`; checked before a name is spliced into
/// replication commands or SQL.
pub fn check_slot_name(slot: &str) -> Result<(), ReplicationError> {
    let ok = !slot.is_empty()
        && slot.len() <= 63
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::InvalidSlotName(slot.to_owned()))
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn first_row<'a>(
    rows: &'a [Vec<Option<String>>],
    min_columns: usize,
    what: &str,
) -> Result<&'a Vec<Option<String>>, ReplicationError> {
    rows.first()
        .filter(|r| r.len() >= min_columns)
        .ok_or_else(|| bad_reply(what))
}

fn parse_lsn(text: Option<&str>, what: &str) -> Result<Lsn, ReplicationError> {
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| bad_reply(what))
}

fn bad_reply(what: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("malformed reply to {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use postgres_protocol::message::backend::Message;

    /// One backend message from its tag and body.
    fn backend(tag: u8, body: &[u8]) -> Message {
        let mut buf = BytesMut::new();
        buf.put_u8(tag);
        buf.put_i32(body.len() as i32 + 4);
        buf.put_slice(body);
        Message::parse(&mut buf).unwrap().unwrap()
    }

    fn classify(e: &ServerError) -> ReplicationError {
        ReplicationError::from_server(e.clone(), "u")
    }

    #[test]
    fn server_shutdown_during_streaming_is_a_lost_connection() {
        let done = backend(b'C', b"START_REPLICATION\0");
        let e = streaming_interrupted(&done, classify);
        assert!(matches!(e, ReplicationError::ConnectionLost(_)), "{e:?}");
        assert!(e.is_retryable());
        let ready = backend(b'Z', b"I");
        let e = streaming_interrupted(&ready, classify);
        assert!(matches!(e, ReplicationError::ConnectionLost(_)), "{e:?}");
        let fields =
            b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0";
        let e = streaming_interrupted(&backend(b'E', fields), classify);
        assert!(matches!(e, ReplicationError::ConnectionLost(_)), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("57P01"), "{e}");
        // Anything else stays a protocol error.
        let e = streaming_interrupted(&backend(b'n', b""), classify);
        assert!(matches!(e, ReplicationError::Protocol(_)), "{e:?}");
    }

    #[tokio::test]
    async fn connect_honours_the_ip_version() {
        // 127.0.0.1 has no IPv6 address: forcing IPv6 must fail before any connection attempt.
        let mut opts = ConnectOptions::new("127.0.0.1", 9, "db", "u", "p");
        opts.ip_version = Some(connect::IpVersion::V6);
        let err = ReplicationStream::connect(&opts)
            .await
            .err()
            .expect("no address");
        assert!(matches!(err, ReplicationError::Resolve { .. }), "{err:?}");
        assert!(err.to_string().contains("IPv6"), "{err}");
    }

    #[test]
    fn slot_names() {
        assert!(check_slot_name("realtime_slot_1").is_ok());
        for bad in ["", "Upper", "a-b", "a b", "x;drop", &"a".repeat(64)] {
            assert!(check_slot_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_options_quote_publication_names() {
        let opts = StartOptions::new("supabase_realtime");
        assert_eq!(
            opts.to_sql(),
            "proto_version '1', publication_names '\"supabase_realtime\"'"
        );
        let odd = StartOptions {
            publications: vec!["we'ird\"pub".into(), "b".into()],
            proto_version: 2,
            messages: true,
            binary: true,
            streaming: true,
        };
        assert_eq!(
            odd.to_sql(),
            "proto_version '2', publication_names '\"we''ird\"\"pub\",\"b\"', messages 'true', binary 'true', streaming 'on'"
        );
    }
}
