// The supabase-js part of docker/smoke-image.sh: supabase-js's realtime client (the
// @supabase/realtime-js that createClient() embeds) on upstream's own path /socket/websocket,
// with the Host header Kong and Envoy send (the container name, whose first label is the
// tenant). It joins one channel with broadcast (self) and postgres_changes, sends a broadcast and
// inserts a row, and prints one JSON line. Run with NODE_PATH=tests/js/node_modules.
//
// Environment: SMOKE_URL (ws://127.0.0.1:4000/socket), SMOKE_HOST, SMOKE_TOKEN, SMOKE_INSERT
// (a shell command that inserts one row into public.smoke_messages with body = $SMOKE_BODY).
'use strict';

const { execSync } = require('node:child_process');
const WebSocket = require('ws');
const { RealtimeClient } = require('@supabase/realtime-js');

const url = process.env.SMOKE_URL || 'ws://127.0.0.1:4000/socket';
const host = process.env.SMOKE_HOST || 'realtime-dev.supabase-realtime';
const token = process.env.SMOKE_TOKEN;
const body = `smoke-${process.pid}-${Date.now()}`;

// `ws` with the gateway's Host header (Node 20 has no global WebSocket).
class GatewayWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { headers: { Host: host } });
  }
}

function waitFor(what, ms, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    }, (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function main() {
  const result = { url: `${url}/websocket`, host };
  const client = new RealtimeClient(url, { params: { apikey: token }, transport: GatewayWebSocket });
  const channel = client.channel('smoke', { config: { broadcast: { self: true, ack: true } } });

  let onBroadcast = () => {};
  let onInsert = () => {};
  let onSystem = () => {};
  channel.on('broadcast', { event: 'ping' }, (m) => onBroadcast(m));
  channel.on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'smoke_messages' }, (m) => onInsert(m));
  channel.on('system', {}, (m) => onSystem(m));

  const system = waitFor('the postgres_changes system message', 30_000, (ok) => {
    onSystem = (m) => { if (m.extension === 'postgres_changes') ok(m); };
  });
  await waitFor('SUBSCRIBED', 30_000, (ok, fail) => channel.subscribe((status, err) => {
    // After SUBSCRIBED, a later status settles nothing (the promise is already resolved).
    if (status === 'SUBSCRIBED') ok();
    else fail(new Error(`subscribe: ${status} ${err ? err.message : ''}`));
  }));
  result.subscribed = true;
  const sys = await system;
  result.postgres_changes = `${sys.status}: ${sys.message}`;
  if (sys.status !== 'ok') throw new Error(`postgres_changes: ${JSON.stringify(sys)}`);

  const echoed = waitFor('the broadcast echo', 10_000, (ok) => { onBroadcast = ok; });
  const ack = await channel.send({ type: 'broadcast', event: 'ping', payload: { body } });
  const echo = await echoed;
  result.broadcast = `${ack}, echoed ${JSON.stringify(echo.payload)}`;
  if (ack !== 'ok' || echo.payload.body !== body) throw new Error(`broadcast: ${result.broadcast}`);

  const inserted = waitFor('the INSERT event', 20_000, (ok) => { onInsert = ok; });
  execSync(process.env.SMOKE_INSERT, { env: { ...process.env, SMOKE_BODY: body }, stdio: 'inherit' });
  const change = await inserted;
  result.insert = `${change.eventType} ${change.schema}.${change.table} ${JSON.stringify(change.new)}`;
  if (change.new.body !== body) throw new Error(`postgres_changes payload: ${result.insert}`);

  await channel.unsubscribe();
  client.disconnect();
  return result;
}

main().then(
  (result) => {
    console.log(JSON.stringify({ ok: true, ...result }));
    process.exit(0);
  },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: err.message }));
    process.exit(1);
  },
);
