// The inspector page: a small Phoenix channel client (vsn 2.0.0 JSON-array frames over
// /socket/websocket) that joins one channel the way realtime-js does and lists what arrives.
'use strict';

const HEARTBEAT_MS = 25_000;
const PUSH_TIMEOUT_MS = 10_000;
const RECONNECT_DELAYS_MS = [1_000, 2_000, 5_000, 10_000];
const LOG_LIMIT = 500;

// ---------------------------------------------------------------------------------------------
// Phoenix socket

/**
 * One WebSocket speaking Phoenix vsn 2.0.0: `[join_ref, ref, topic, event, payload]` text frames
 * (and binary kind-4 user broadcasts from the server), a heartbeat every 25 s, and replies
 * matched to pushes by `ref`. It reconnects after a close it did not ask for.
 */
class PhoenixSocket {
  constructor(endpoint, handlers) {
    this.endpoint = endpoint;
    this.handlers = handlers;
    this.ws = null;
    this.ref = 0;
    this.pending = new Map();
    this.heartbeatTimer = null;
    this.heartbeatRef = null;
    this.heartbeatSentAt = 0;
    this.reconnectTimer = null;
    this.attempts = 0;
    this.wanted = false;
  }

  nextRef() {
    this.ref += 1;
    return String(this.ref);
  }

  connect() {
    this.wanted = true;
    clearTimeout(this.reconnectTimer);
    let ws;
    try {
      ws = new WebSocket(this.endpoint);
    } catch (e) {
      this.handlers.onFailure(`The socket URL is not valid: ${e.message}`);
      this.wanted = false;
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempts = 0;
      this.startHeartbeat();
      this.handlers.onOpen();
    };
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopHeartbeat();
      this.failPending('the socket closed');
      this.handlers.onClose(e, opened);
      if (this.wanted) this.scheduleReconnect();
    };
    // Every error is followed by a close, which carries the information there is.
    ws.onerror = () => {};
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    this.failPending('disconnected');
    if (ws) ws.close(1000, 'bye');
  }

  scheduleReconnect() {
    const delay = RECONNECT_DELAYS_MS[Math.min(this.attempts, RECONNECT_DELAYS_MS.length - 1)];
    this.attempts += 1;
    this.handlers.onReconnecting(delay);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a frame; `onReply(status, response)` is called with the reply or a timeout. */
  push(joinRef, topic, event, payload, onReply) {
    const ref = this.nextRef();
    if (!this.isOpen()) {
      if (onReply) onReply('error', { reason: 'not connected' });
      return ref;
    }
    if (onReply) {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        onReply('timeout', { reason: `no reply within ${PUSH_TIMEOUT_MS / 1000} s` });
      }, PUSH_TIMEOUT_MS);
      this.pending.set(ref, { onReply, timer });
    }
    this.ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    return ref;
  }

  failPending(reason) {
    for (const [, { onReply, timer }] of this.pending) {
      clearTimeout(timer);
      onReply('error', { reason });
    }
    this.pending.clear();
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_MS);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.heartbeatRef = null;
  }

  heartbeat() {
    if (!this.isOpen()) return;
    if (this.heartbeatRef !== null) {
      // The previous beat was never answered: the connection is dead (as realtime-js decides).
      this.handlers.onFailure('No heartbeat reply within 25 s; reconnecting');
      this.heartbeatRef = null;
      this.ws.close(1000, 'heartbeat timeout');
      return;
    }
    this.heartbeatSentAt = performance.now();
    this.heartbeatRef = this.push(null, 'phoenix', 'heartbeat', {});
  }

  receive(data) {
    if (data instanceof ArrayBuffer) {
      const msg = decodeBinary(data);
      if (msg) this.handlers.onMessage(msg);
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!Array.isArray(frame) || frame.length < 5) return;
    const [joinRef, ref, topic, event, payload] = frame;
    if (topic === 'phoenix' && event === 'phx_reply' && ref === this.heartbeatRef) {
      this.heartbeatRef = null;
      this.handlers.onHeartbeat(performance.now() - this.heartbeatSentAt);
      return;
    }
    if (event === 'phx_reply' && ref !== null && this.pending.has(ref)) {
      const { onReply, timer } = this.pending.get(ref);
      this.pending.delete(ref);
      clearTimeout(timer);
      onReply(payload?.status, payload?.response);
      return;
    }
    this.handlers.onMessage({ joinRef, ref, topic, event, payload });
  }
}

/**
 * A binary frame from the server. Only kind 4 (user broadcast) is ever sent to a socket that
 * pushes JSON: topic, event and metadata sizes, an encoding byte (1 JSON, 0 raw bytes), then the
 * strings and the payload.
 */
function decodeBinary(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 5 || bytes[0] !== 4) return null;
  const [topicSize, eventSize, metaSize, encoding] = [bytes[1], bytes[2], bytes[3], bytes[4]];
  const text = new TextDecoder();
  let at = 5;
  const take = (n) => {
    const part = bytes.subarray(at, at + n);
    at += n;
    return part;
  };
  if (at + topicSize + eventSize + metaSize > bytes.length) return null;
  const topic = text.decode(take(topicSize));
  const event = text.decode(take(eventSize));
  const metaText = text.decode(take(metaSize));
  const rest = bytes.subarray(at);
  let payload;
  if (encoding === 0) {
    payload = { binary: `${rest.length} bytes`, hex: hex(rest.subarray(0, 64)) + (rest.length > 64 ? '…' : '') };
  } else {
    try {
      payload = JSON.parse(text.decode(rest));
    } catch {
      payload = text.decode(rest);
    }
  }
  const broadcast = { type: 'broadcast', event, payload };
  if (metaText) {
    try {
      broadcast.meta = JSON.parse(metaText);
    } catch {
      broadcast.meta = metaText;
    }
  }
  return { joinRef: null, ref: null, topic, event: 'broadcast', payload: broadcast, binary: true };
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Page state

const $ = (id) => document.getElementById(id);
const fields = ['tenant', 'socket', 'apikey', 'channel', 'event', 'schema', 'table', 'filter'];

let socket = null;
let session = null; // { topic, joinRef, joined, presence: Map(key → metas) }

function isLocalHost(host) {
  return host === 'localhost' || host.endsWith('.localhost') || host === '127.0.0.1'
    || host === '[::1]' || host === '::1';
}

/**
 * The socket URL for a tenant. The server takes the tenant from the first label of the Host,
 * which a page cannot set; on a local page `<tenant>.localhost` reaches this same server
 * (browsers resolve `*.localhost` to the loopback address). Elsewhere: this page's own origin.
 */
function derivedSocketUrl(tenant) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const port = location.port ? `:${location.port}` : '';
  if (tenant && isLocalHost(location.hostname)) {
    return `${scheme}//${tenant}.localhost${port}/socket/websocket`;
  }
  return `${scheme}//${location.host}/socket/websocket`;
}

function socketUrl() {
  return $('socket').value.trim() || derivedSocketUrl($('tenant').value.trim());
}

/** The tenant the server will resolve for a socket URL: its host's first label. */
function tenantOf(url) {
  try {
    const host = new URL(url).hostname;
    if (host.startsWith('[')) return host;
    return host.split('.')[0];
  } catch {
    return null;
  }
}

function refreshSocketHint() {
  const derived = derivedSocketUrl($('tenant').value.trim());
  $('socket').placeholder = derived;
  const tenant = tenantOf(socketUrl());
  $('socket-hint').textContent = tenant === null
    ? 'Not a valid URL.'
    : `The server resolves the tenant from this URL's host: "${tenant}" (or its default tenant when no tenant has that name). Leave the URL empty to derive it from the tenant.`;
}

function binding() {
  const schema = $('schema').value.trim();
  const table = $('table').value.trim();
  if (!schema && !table) return null;
  const b = { event: $('event').value || '*', schema: schema || 'public' };
  if (table) b.table = table;
  const filter = $('filter').value.trim();
  if (filter) b.filter = filter;
  return b;
}

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
  const joined = state === 'joined';
  $('send-broadcast').disabled = !joined;
  $('track').disabled = !joined;
  $('untrack').disabled = !joined;
  $('disconnect').disabled = socket === null;
}

// ---------------------------------------------------------------------------------------------
// Event log

function timeLabel(date) {
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

let logCount = 0;

/** Adds a row at the top: arrival time, kind, event, timing or detail, payload. */
function log(kind, event, detail, payload, extra = {}) {
  const arrived = new Date();
  const row = document.createElement('tr');
  row.dataset.kind = kind;
  for (const [k, v] of Object.entries(extra)) row.dataset[k] = v;
  const cells = [
    ['time', timeLabel(arrived)],
    ['kind', kind],
    ['event', event ?? ''],
    ['detail', detail ?? ''],
    ['payload', payload === undefined ? '' : (typeof payload === 'string' ? payload : JSON.stringify(payload))],
  ];
  for (const [cls, text] of cells) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text;
    row.appendChild(td);
  }
  row.cells[0].title = arrived.toISOString();
  const body = $('log-body');
  body.insertBefore(row, body.firstChild);
  while (body.rows.length > LOG_LIMIT) body.deleteRow(body.rows.length - 1);
  logCount += 1;
  $('log-count').textContent = `${logCount} received`;
}

// ---------------------------------------------------------------------------------------------
// Channel

function connect() {
  disconnect(false);
  const channel = $('channel').value.trim();
  const key = $('apikey').value.trim();
  if (!channel) {
    setStatus('error', 'Give a channel name');
    return;
  }
  if (!key) {
    setStatus('error', 'Paste an API key or access token');
    return;
  }
  updateQuery();
  const base = socketUrl();
  const sep = base.includes('?') ? '&' : '?';
  const endpoint = `${base}${sep}apikey=${encodeURIComponent(key)}&vsn=2.0.0`;
  session = { topic: `realtime:${channel}`, joinRef: null, joined: false, presence: new Map() };
  renderPresence();
  socket = new PhoenixSocket(endpoint, {
    onOpen: () => {
      log('transport', 'open', `connected to ${base}`);
      join();
    },
    onClose: (e, opened) => {
      if (session) session.joined = false;
      $('rtt').textContent = '';
      if (opened) {
        log('transport', 'close', `socket closed (code ${e.code}${e.reason ? `, ${e.reason}` : ''})`, undefined, { status: 'error' });
      } else {
        log('error', 'connect failed', `The socket closed before opening (code ${e.code}). The server refuses an unknown tenant, a missing or invalid key, or too many users with an HTTP error a browser cannot read: check the tenant (socket URL) and the key.`);
      }
    },
    onReconnecting: (delay) => setStatus('connecting', `Reconnecting in ${delay / 1000} s`),
    onFailure: (text) => log('error', 'socket', text),
    onHeartbeat: (ms) => {
      $('rtt').textContent = `heartbeat ${ms.toFixed(1)} ms`;
    },
    onMessage: receive,
  });
  setStatus('connecting', `Connecting to ${base}`);
  socket.connect();
}

function disconnect(byUser = true) {
  if (!socket) return;
  if (session?.joined && socket.isOpen()) {
    socket.push(session.joinRef, session.topic, 'phx_leave', {});
  }
  socket.disconnect();
  socket = null;
  if (byUser) log('transport', 'disconnect', 'closed by you');
  session = null;
  $('rtt').textContent = '';
  setStatus('idle', 'Not connected');
}

function join() {
  const b = binding();
  const payload = {
    config: {
      broadcast: { self: true, ack: false },
      presence: { key: '', enabled: true },
      postgres_changes: b ? [b] : [],
      private: $('private').checked,
    },
    access_token: $('apikey').value.trim(),
  };
  const joinRef = socket.nextRef();
  session.joinRef = joinRef;
  session.presence = new Map();
  renderPresence();
  setStatus('joining', `Joining ${session.topic}`);
  log('channel', 'phx_join', `joining ${session.topic}${payload.config.private ? ' (private)' : ''}`, payload.config);
  // realtime-js sends the join with ref = join_ref; the reply carries both.
  const frame = [joinRef, joinRef, session.topic, 'phx_join', payload];
  const timer = setTimeout(() => {
    if (session && session.joinRef === joinRef && !session.joined) {
      log('error', 'join timeout', `no reply to the join within ${PUSH_TIMEOUT_MS / 1000} s`);
      setStatus('error', 'Join timed out');
    }
  }, PUSH_TIMEOUT_MS);
  session.onJoinReply = (status, response) => {
    clearTimeout(timer);
    if (status === 'ok') {
      session.joined = true;
      const ids = (response?.postgres_changes ?? []).map((c) => c.id);
      setStatus('joined', `Joined ${session.topic}`);
      log('channel', 'joined', ids.length ? `Postgres Changes binding ids: ${ids.join(', ')}` : 'joined', response);
    } else {
      const reason = typeof response?.reason === 'string' ? response.reason : JSON.stringify(response);
      log('error', 'join refused', plainReason(reason), response);
      // Rejoining would be refused the same way: close the socket and let the operator fix the
      // channel, key or policies first.
      const refused = socket;
      socket = null;
      session = null;
      refused.disconnect();
      setStatus('error', `Join refused: ${reason}`);
    }
  };
  socket.ws.send(JSON.stringify(frame));
}

/** `Code: message` reasons read as the message with the code in brackets. */
function plainReason(reason) {
  const m = /^([A-Za-z]+): (.*)$/s.exec(reason);
  return m ? `${m[2]} [${m[1]}]` : reason;
}

function receive(msg) {
  if (!session || msg.topic !== session.topic) return;
  // Frames of an earlier join of this topic (before a reconnect) are not this channel's.
  if (msg.joinRef !== null && msg.joinRef !== undefined && msg.joinRef !== session.joinRef) return;
  const p = msg.payload ?? {};
  switch (msg.event) {
    case 'phx_reply':
      if (msg.ref === session.joinRef && session.onJoinReply) {
        const onJoinReply = session.onJoinReply;
        session.onJoinReply = null;
        onJoinReply(p.status, p.response);
      } else {
        log('channel', 'reply', `${p.status}`, p.response);
      }
      break;
    case 'broadcast':
      log('broadcast', p.event ?? '', msg.binary ? 'binary frame' : '', p.payload, p.meta ? { meta: JSON.stringify(p.meta) } : {});
      break;
    case 'presence_state':
      session.presence = new Map(Object.entries(p).map(([k, v]) => [k, v.metas ?? []]));
      renderPresence();
      log('presence', 'presence_state', `${session.presence.size} present`, p);
      break;
    case 'presence_diff':
      applyPresenceDiff(p);
      log('presence', 'presence_diff', diffSummary(p), p);
      break;
    case 'postgres_changes':
      logChange(p);
      break;
    case 'system':
      logSystem(p);
      break;
    case 'phx_error':
      session.joined = false;
      setStatus('error', 'Channel crashed on the server');
      log('error', 'phx_error', `The channel crashed on the server${p.reason ? ` (${p.reason})` : ''}; connect again to rejoin`, p);
      break;
    case 'phx_close':
      session.joined = false;
      setStatus('closed', 'Channel closed by the server');
      log('channel', 'phx_close', 'The server closed the channel', p, { status: 'error' });
      break;
    default:
      log('channel', msg.event, '', p);
  }
}

function logChange(p) {
  const data = p.data ?? p;
  const arrived = Date.now();
  let delay = '';
  if (typeof data.commit_timestamp === 'string') {
    const committed = Date.parse(data.commit_timestamp);
    if (!Number.isNaN(committed)) delay = `commit → arrival ${arrived - committed} ms`;
  }
  const where = [data.schema, data.table].filter(Boolean).join('.');
  const errors = Array.isArray(data.errors) && data.errors.length ? `; errors: ${data.errors.join(', ')}` : '';
  log('postgres', data.type ?? 'postgres_changes', `${where}${delay ? `, ${delay}` : ''}${errors}`, {
    ids: p.ids,
    commit_timestamp: data.commit_timestamp,
    record: data.record,
    old_record: data.old_record,
  }, { commitDelayMs: delay ? String(arrived - Date.parse(data.commit_timestamp)) : '' });
}

function logSystem(p) {
  const what = p.extension === 'postgres_changes' ? 'Postgres Changes' : (p.extension ?? 'system');
  const ok = p.status === 'ok';
  const text = ok ? `${what}: ${p.message}` : `${what} error: ${p.message}`;
  log('system', p.extension ?? 'system', text, p, { status: p.status ?? '' });
  if (!ok && p.extension !== 'postgres_changes') setStatus('error', p.message ?? 'Channel stopped');
}

function applyPresenceDiff(p) {
  for (const [key, { metas = [] } = {}] of Object.entries(p.leaves ?? {})) {
    const gone = new Set(metas.map((m) => m.phx_ref));
    const left = (session.presence.get(key) ?? []).filter((m) => !gone.has(m.phx_ref));
    if (left.length) session.presence.set(key, left);
    else session.presence.delete(key);
  }
  for (const [key, { metas = [] } = {}] of Object.entries(p.joins ?? {})) {
    session.presence.set(key, [...(session.presence.get(key) ?? []), ...metas]);
  }
  renderPresence();
}

function diffSummary(p) {
  const joins = Object.keys(p.joins ?? {});
  const leaves = Object.keys(p.leaves ?? {});
  const parts = [];
  if (joins.length) parts.push(`joined: ${joins.join(', ')}`);
  if (leaves.length) parts.push(`left: ${leaves.join(', ')}`);
  return parts.join('; ');
}

function renderPresence() {
  const el = $('presence-list');
  if (!session || session.presence.size === 0) {
    el.textContent = 'Nobody present.';
    return;
  }
  const lines = [];
  for (const [key, metas] of session.presence) {
    const shown = metas.map((m) => {
      const { phx_ref: _ref, phx_ref_prev: _prev, ...rest } = m;
      return JSON.stringify(rest);
    });
    lines.push(`${key}: ${shown.join(' ')}`);
  }
  el.textContent = `${session.presence.size} present — ${lines.join(' | ')}`;
}

function parseJson(input) {
  try {
    return { value: JSON.parse(input.value) };
  } catch (e) {
    return { error: `Not valid JSON: ${e.message}` };
  }
}

function sendBroadcast() {
  if (!session?.joined) return;
  const event = $('broadcast-event').value.trim();
  const parsed = parseJson($('broadcast-payload'));
  if (parsed.error || !event) {
    log('error', 'broadcast', parsed.error ?? 'Give an event name');
    return;
  }
  socket.push(session.joinRef, session.topic, 'broadcast', { type: 'broadcast', event, payload: parsed.value });
  log('sent', event, 'broadcast sent', parsed.value);
}

function presence(event) {
  if (!session?.joined) return;
  let payload;
  if (event === 'track') {
    const parsed = parseJson($('presence-payload'));
    if (parsed.error) {
      log('error', 'track', parsed.error);
      return;
    }
    payload = parsed.value;
  }
  const frame = { type: 'presence', event };
  if (payload !== undefined) frame.payload = payload;
  socket.push(session.joinRef, session.topic, 'presence', frame, (status, response) => {
    if (status === 'ok') log('sent', event, `presence ${event}: ok`, payload);
    else log('error', event, `presence ${event} refused: ${status}`, response);
  });
}

// ---------------------------------------------------------------------------------------------
// URL query: the page's state, so a link reproduces a session

const aliases = { token: 'apikey', private_channel: 'private' };

function readQuery() {
  const q = new URLSearchParams(location.search);
  for (const [alias, name] of Object.entries(aliases)) {
    if (!q.has(name) && q.has(alias)) q.set(name, q.get(alias));
  }
  for (const name of fields) {
    if (!q.has(name)) continue;
    const value = q.get(name);
    if (name === 'event') {
      const upper = value.toUpperCase();
      $('event').value = ['*', 'INSERT', 'UPDATE', 'DELETE'].includes(upper) ? upper : '*';
    } else {
      $(name).value = value;
    }
  }
  $('private').checked = ['true', '1', 'yes', 'on'].includes((q.get('private') ?? '').toLowerCase());
  if (!q.has('tenant')) {
    // A page opened on <tenant>.example.com (or <tenant>.localhost) belongs to that tenant.
    const host = location.hostname;
    if (host.endsWith('.localhost') || (!isLocalHost(host) && host.includes('.') && !/^[\d.]+$/.test(host))) {
      $('tenant').value = host.split('.')[0];
    }
  }
  return q.has('channel') && q.has('apikey');
}

function queryString() {
  const q = new URLSearchParams();
  for (const name of fields) {
    const value = $(name).value.trim();
    if (!value) continue;
    // The default event is left out unless a binding is given.
    if (name === 'event' && !binding()) continue;
    q.set(name, value);
  }
  if ($('private').checked) q.set('private', 'true');
  return q.toString();
}

function updateQuery() {
  const qs = queryString();
  history.replaceState(null, '', `${location.pathname}${qs ? `?${qs}` : ''}`);
}

async function copyLink() {
  updateQuery();
  const link = location.href;
  try {
    await navigator.clipboard.writeText(link);
    $('copy-link').textContent = 'Copied';
  } catch {
    // No clipboard permission (plain http on another host): the address bar has the link.
    $('copy-link').textContent = 'Link in the address bar';
  }
  setTimeout(() => {
    $('copy-link').textContent = 'Copy link';
  }, 2_000);
}

// ---------------------------------------------------------------------------------------------
// Wiring

document.addEventListener('DOMContentLoaded', () => {
  const autoConnect = readQuery();
  refreshSocketHint();
  renderPresence();
  $('tenant').addEventListener('input', refreshSocketHint);
  $('socket').addEventListener('input', refreshSocketHint);
  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  $('disconnect').addEventListener('click', () => disconnect(true));
  $('copy-link').addEventListener('click', copyLink);
  $('broadcast-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sendBroadcast();
  });
  $('presence-form').addEventListener('submit', (e) => {
    e.preventDefault();
    presence('track');
  });
  $('untrack').addEventListener('click', () => presence('untrack'));
  $('clear-log').addEventListener('click', () => {
    $('log-body').replaceChildren();
    logCount = 0;
    $('log-count').textContent = '0';
  });
  setStatus('idle', 'Not connected');
  if (autoConnect) connect();
});
