//! One task per socket: its read loop waits for the client, the session's controls and its
//! timers and hands each to the session's [`Core`], whose effects the runner
//! ([`crate::gateway::runner`]) applies; its outbound queue and writer are in
//! [`crate::gateway::outbound`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use realtime_protocol::{InFrame, Vsn};
use serde_json::{Map, Value};

use crate::gateway::core::{Core, Cx, Now, TenantNeed, TenantRead};
pub use crate::gateway::core::{Input, Next};
use crate::gateway::outbound::{self, SessionLink};
use crate::gateway::tenant_resolve::TenantView;
use crate::gateway::Gateway;

/// What the upgrade established.
pub struct ConnectInfo {
    /// The tenant.
    pub tenant: Arc<TenantView>,
    /// Connect token.
    pub token: String,
    /// The request's `x-` headers.
    pub headers: Map<String, Value>,
    /// Serializer.
    pub vsn: Vsn,
}

/// A socket: its core (the state) and what applies the core's effects.
pub struct Session {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) link: Arc<SessionLink>,
    /// Refused joins whose delayed reply is still pending.
    pub(crate) refusals_pending: Arc<AtomicUsize>,
    pub(crate) core: Core,
}

/// Runs a socket until it closes.
pub async fn run(gw: Arc<Gateway>, socket: WebSocket, info: ConnectInfo) {
    let mut session = Session::open(gw, info);
    let link = session.link.clone();
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(outbound::write_loop(
        sink,
        link.out.clone(),
        link.kill.clone(),
        link.flow.clone(),
    ));
    read_loop(&mut session, stream).await;
    session.finish();
    drop(link);
    // The writer drains what is queued (a close frame, typically), then ends; a client that
    // does not take it within the grace period is dropped.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// The socket task's half: waits for the client, the session's controls and its timers, and
/// hands each to [`Session::handle`].
async fn read_loop(session: &mut Session, mut stream: SplitStream<WebSocket>) {
    let settings = &session.gw.settings;
    let idle = settings.idle_timeout;
    let sweep_every = settings.no_channel_timeout.max(Duration::from_millis(10));
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
    let kill = session.link.kill.clone();
    let control = session.link.control.clone();
    loop {
        let next_token_check = session.next_token_check();
        let next = tokio::select! {
            _ = kill.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => session.handle(Input::Idle).await,
            item = stream.next() => {
                deadline = tokio::time::Instant::now() + idle;
                match item {
                    None | Some(Ok(WsMessage::Close(_))) => return,
                    Some(Err(e)) => {
                        if e.to_string().contains("Message too long") {
                            session.close(1009);
                            // The oversized message was read whole; wait for the client's
                            // close reply so the close frame is not lost to a reset.
                            let drain = async {
                                while let Some(Ok(m)) = stream.next().await {
                                    if matches!(m, WsMessage::Close(_)) {
                                        break;
                                    }
                                }
                            };
                            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                        } else if let Some(code) =
                            crate::gateway::socket::read_error_close(&session.link.tenant, &e)
                        {
                            session.close(code);
                        }
                        return;
                    }
                    Some(Ok(WsMessage::Text(t))) => session.handle(Input::Frame(InFrame::Text(t.as_str()))).await,
                    Some(Ok(WsMessage::Binary(b))) => session.handle(Input::Frame(InFrame::Binary(&b))).await,
                    Some(Ok(_)) => Next::Continue,
                }
            }
            Some(c) = control.recv() => session.handle(Input::Control(c)).await,
            _ = sleep_until_some(next_token_check) => session.handle(Input::TokensDue).await,
            _ = sweep.tick() => session.handle(Input::Sweep).await,
        };
        if next != Next::Continue {
            return;
        }
    }
}

impl Session {
    /// A session for a new socket of `info.tenant`, registered with the gateway; its frames
    /// wait in its link's outbound queue for whoever writes them.
    pub fn open(gw: Arc<Gateway>, info: ConnectInfo) -> Session {
        let link = Arc::new(SessionLink::new(
            gw.next_id(),
            Arc::from(info.tenant.external_id.as_str()),
            info.vsn,
            gw.settings.outbound_queue,
            gw.settings.outbound_queue_bytes,
            gw.limits.rates(&info.tenant.external_id).metrics.clone(),
        ));
        gw.add_session(link.clone());
        let core = Core::new(info.tenant, Arc::from(info.token), info.headers, info.vsn);
        Session {
            gw,
            link,
            refusals_pending: Arc::default(),
            core,
        }
    }

    /// The link other tasks (and a writer) use to reach this session.
    pub fn link(&self) -> &Arc<SessionLink> {
        &self.link
    }

    /// Handles one input: decodes a frame, reads the tenant when the core needs it, lets the
    /// core move, then applies its effects. Handling is boxed: an idle socket's task then
    /// holds only its wait, not the state of a tenant read or a publisher's wait.
    pub async fn handle(&mut self, input: Input<'_>) -> Next {
        Box::pin(self.step(input)).await
    }

    async fn step(&mut self, input: Input<'_>) -> Next {
        let mut fx = Vec::new();
        let input = match input {
            Input::Frame(frame) => match self.core.decode(frame, &mut fx) {
                Some(inbound) => Input::Inbound(inbound),
                None => {
                    self.apply_now(fx);
                    return Next::Continue;
                }
            },
            other => other,
        };
        let now = Now::current();
        let tenant = match self.core.tenant_need(&input, now) {
            TenantNeed::None => None,
            TenantNeed::Refresh | TenantNeed::Fresh => Some(self.read_tenant().await),
        };
        let next = self.core.handle(
            input,
            &mut Cx {
                reads: &*self.gw,
                now,
                tenant,
                fx: &mut fx,
            },
        );
        if !fx.is_empty() {
            self.apply(fx).await;
        }
        next
    }

    /// Reads the socket's tenant from the directory.
    async fn read_tenant(&self) -> TenantRead {
        match self.gw.tenants.get(&self.link.tenant).await {
            Ok(Some(t)) => TenantRead::Found(t),
            Ok(None) => TenantRead::Missing,
            Err(e) => TenantRead::Failed(e.to_string()),
        }
    }

    /// When [`Input::TokensDue`] is next due.
    pub fn next_token_check(&self) -> Option<tokio::time::Instant> {
        self.core.next_token_check()
    }

    /// Ends the session: its channels leave (presence, changes), the gateway forgets it, and
    /// its queue closes once what is queued is written.
    pub fn finish(mut self) {
        let mut fx = Vec::new();
        self.core.finish(&mut fx);
        self.apply_now(fx);
        self.gw.sessions.remove(&self.link.id);
        if self.link.counted.load(Ordering::SeqCst) {
            if let Some(mut n) = self.gw.users.get_mut(&*self.link.tenant) {
                *n = n.saturating_sub(1);
            }
        }
        self.link.out.close();
    }

    /// Queues a close frame; the read loop ends after the current event.
    pub(crate) fn close(&mut self, code: u16) {
        self.core.closing = true;
        let _ = self.link.out.push(WsMessage::Close(Some(CloseFrame {
            code,
            reason: "".into(),
        })));
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
