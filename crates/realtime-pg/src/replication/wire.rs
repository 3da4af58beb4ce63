//! One framed protocol connection for replication: TCP or TLS, the startup handshake with
//! authentication, simple queries, and message reads that are safe to cancel.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ReplicationError, ServerError};
use crate::connect::ConnectOptions;

/// Byte streams the connection can run over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What [`Wire::read`] yields: the backend messages `postgres-protocol` parses, plus
/// CopyBothResponse (`W`), which it does not know.
pub(crate) enum Backend {
    Message(Message),
    CopyBothResponse,
}

/// A result row of a simple query, text format.
pub(crate) type Row = Vec<Option<String>>;

pub(crate) struct Wire {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    user: String,
    server_version: Option<String>,
    backend_pid: Option<i32>,
}

impl Wire {
    /// Opens TCP (then TLS when configured) to `addr` and completes the startup handshake for
    /// a `replication=database` session.
    pub(crate) async fn connect(
        opts: &ConnectOptions,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Wire, ReplicationError> {
        let lost = |e: std::io::Error| ReplicationError::ConnectionLost(format!("{addr}: {e}"));
        let mut tcp = TcpStream::connect(addr).await.map_err(lost)?;
        // Keepalive replies and status updates are tiny: send them at once.
        tcp.set_nodelay(true).map_err(lost)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let mut buf = BytesMut::new();
                frontend::ssl_request(&mut buf);
                tcp.write_all(&buf).await.map_err(lost)?;
                match tcp.read_u8().await.map_err(lost)? {
                    b'S' => {}
                    b'N' => {
                        return Err(ReplicationError::Tls(
                            "the server does not accept TLS connections".into(),
                        ))
                    }
                    other => {
                        return Err(ReplicationError::Protocol(format!(
                            "unexpected answer {other:#04x} to SSLRequest"
                        )))
                    }
                }
                let name = ServerName::try_from(opts.host.clone())
                    .map_err(|e| ReplicationError::Tls(format!("host {}: {e}", opts.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ReplicationError::Tls(format!("handshake with {addr}: {e}")))?;
                Box::new(tls)
            }
        };
        let mut wire = Wire {
            stream,
            read_buf: BytesMut::with_capacity(8192),
            write_buf: BytesMut::new(),
            user: opts.user.clone(),
            server_version: None,
            backend_pid: None,
        };
        wire.startup(opts).await?;
        Ok(wire)
    }

    pub(crate) fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    pub(crate) fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    async fn startup(&mut self, opts: &ConnectOptions) -> Result<(), ReplicationError> {
        let mut params = vec![
            ("user", opts.user.as_str()),
            ("database", opts.dbname.as_str()),
            ("replication", "database"),
            ("application_name", opts.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        if let Some(options) = &opts.options {
            params.push(("options", options.as_str()));
        }
        frontend::startup_message(params, &mut self.write_buf).map_err(protocol)?;
        self.flush().await?;
        self.authenticate(opts.password.as_bytes()).await?;
        loop {
            match self.read().await? {
                Backend::Message(Message::ReadyForQuery(_)) => return Ok(()),
                Backend::Message(Message::ParameterStatus(body)) => {
                    if body.name().map_err(protocol)? == "server_version" {
                        self.server_version = Some(body.value().map_err(protocol)?.to_owned());
                    }
                }
                Backend::Message(Message::BackendKeyData(body)) => {
                    self.backend_pid = Some(body.process_id());
                }
                Backend::Message(Message::NoticeResponse(_)) => {}
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(self.server_error(&ServerError::from_body(&body)));
                }
                _ => return Err(unexpected("startup")),
            }
        }
    }

    async fn authenticate(&mut self, password: &[u8]) -> Result<(), ReplicationError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = match self.read().await? {
                Backend::Message(m) => m,
                Backend::CopyBothResponse => return Err(unexpected("authentication")),
            };
            match message {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    self.require_password(password)?;
                    frontend::password_message(password, &mut self.write_buf).map_err(protocol)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    self.require_password(password)?;
                    let hash = md5_hash(self.user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(protocol)?;
                }
                Message::AuthenticationSasl(body) => {
                    self.require_password(password)?;
                    let mut offered = Vec::new();
                    let mut mechanisms = body.mechanisms();
                    while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechanisms)
                        .map_err(protocol)?
                    {
                        offered.push(m.to_owned());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(self.auth_error(format!(
                            "server offers SASL mechanisms {offered:?}, none supported"
                        )));
                    }
                    // Channel binding is not used, and saying so ("n") is accepted whether or
                    // not the server could bind.
                    let state = ScramSha256::new(password, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        state.message(),
                        &mut self.write_buf,
                    )
                    .map_err(protocol)?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().ok_or_else(|| unexpected("SCRAM"))?;
                    state
                        .update(body.data())
                        .map_err(|e| self.auth_error(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(state.message(), &mut self.write_buf)
                        .map_err(protocol)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram.as_mut().ok_or_else(|| unexpected("SCRAM"))?;
                    state
                        .finish(body.data())
                        .map_err(|e| self.auth_error(format!("SCRAM server proof: {e}")))?;
                    continue;
                }
                Message::ErrorResponse(body) => {
                    return Err(self.server_error(&ServerError::from_body(&body)));
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationGssContinue(_) => {
                    return Err(self.auth_error(
                        "the server asks for an unsupported authentication method (use \
                         scram-sha-256, md5, password or trust)"
                            .into(),
                    ));
                }
                _ => return Err(unexpected("authentication")),
            }
            self.flush().await?;
        }
    }

    fn require_password(&self, password: &[u8]) -> Result<(), ReplicationError> {
        if password.is_empty() {
            return Err(self.auth_error("the server requires a password and none is set".into()));
        }
        Ok(())
    }

    fn auth_error(&self, message: String) -> ReplicationError {
        ReplicationError::Auth {
            user: self.user.clone(),
            message,
        }
    }

    pub(crate) fn server_error(&self, error: &ServerError) -> ReplicationError {
        ReplicationError::from_server(error.clone(), &self.user)
    }

    /// Runs one simple-query command and collects its rows as text.
    pub(crate) async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, ReplicationError> {
        frontend::query(sql, &mut self.write_buf).map_err(protocol)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            match self.read().await? {
                Backend::Message(Message::ReadyForQuery(_)) => {
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                Backend::Message(Message::DataRow(body)) => rows.push(data_row(&body)?),
                Backend::Message(Message::ErrorResponse(body)) => {
                    failure = Some(self.server_error(&ServerError::from_body(&body)));
                }
                Backend::Message(
                    Message::RowDescription(_)
                    | Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::NoticeResponse(_)
                    | Message::ParameterStatus(_),
                ) => {}
                _ => return Err(unexpected("a simple query")),
            }
        }
    }

    /// Sends `sql` and waits for CopyBothResponse (START_REPLICATION).
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<(), ReplicationError> {
        frontend::query(sql, &mut self.write_buf).map_err(protocol)?;
        self.flush().await?;
        loop {
            match self.read().await? {
                Backend::CopyBothResponse => return Ok(()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(self.server_error(&ServerError::from_body(&body)));
                }
                Backend::Message(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                _ => return Err(unexpected("START_REPLICATION")),
            }
        }
    }

    /// Queues a CopyData message; sent by the next [`Wire::flush`].
    pub(crate) fn queue_copy_data(&mut self, payload: Bytes) -> Result<(), ReplicationError> {
        frontend::CopyData::new(payload)
            .map_err(protocol)?
            .write(&mut self.write_buf);
        Ok(())
    }

    /// Queues CopyDone, ending our side of CopyBoth.
    pub(crate) fn queue_copy_done(&mut self) {
        frontend::copy_done(&mut self.write_buf);
    }

    /// Whether queued bytes wait to be written.
    pub(crate) fn has_pending_writes(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Writes everything queued. Cancel-safe: what was written is removed from the queue, the
    /// rest stays for the next call.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        while !self.write_buf.is_empty() {
            let n = self
                .stream
                .write_buf(&mut self.write_buf)
                .await
                .map_err(io_lost)?;
            if n == 0 {
                return Err(ReplicationError::ConnectionLost(
                    "the server closed the connection".into(),
                ));
            }
        }
        self.stream.flush().await.map_err(io_lost)
    }

    /// Reads the next backend message. Cancel-safe: bytes read stay buffered.
    pub(crate) async fn read(&mut self) -> Result<Backend, ReplicationError> {
        loop {
            if let Some(message) = self.parse_buffered()? {
                return Ok(message);
            }
            let n = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(io_lost)?;
            if n == 0 {
                return Err(ReplicationError::ConnectionLost(
                    "the server closed the connection".into(),
                ));
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Backend>, ReplicationError> {
        if self.read_buf.first() == Some(&b'W') {
            let Some(len) = self.read_buf.get(1..5) else {
                return Ok(None);
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len < 4 {
                return Err(ReplicationError::Protocol("invalid message length".into()));
            }
            if self.read_buf.len() < len + 1 {
                self.read_buf.reserve(len + 1 - self.read_buf.len());
                return Ok(None);
            }
            // Format and column formats: nothing to learn from them for replication.
            let _ = self.read_buf.split_to(len + 1);
            return Ok(Some(Backend::CopyBothResponse));
        }
        Message::parse(&mut self.read_buf)
            .map(|m| m.map(Backend::Message))
            .map_err(protocol)
    }

    /// Tells the server we are leaving; errors are irrelevant at that point.
    pub(crate) async fn terminate(&mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

fn data_row(body: &DataRowBody) -> Result<Row, ReplicationError> {
    let buf = body.buffer();
    let mut ranges = body.ranges();
    let mut row = Vec::new();
    while let Some(range) =
        fallible_iterator::FallibleIterator::next(&mut ranges).map_err(protocol)?
    {
        let value = match range {
            None => None,
            Some(r) => {
                let bytes = buf.get(r).ok_or_else(|| {
                    ReplicationError::Protocol("DataRow value out of range".into())
                })?;
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        };
        row.push(value);
    }
    Ok(row)
}

fn protocol(e: std::io::Error) -> ReplicationError {
    ReplicationError::Protocol(e.to_string())
}

fn io_lost(e: std::io::Error) -> ReplicationError {
    ReplicationError::ConnectionLost(e.to_string())
}

fn unexpected(during: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "unexpected message from the server during {during}"
    ))
}
