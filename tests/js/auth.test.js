// Tokens over time with the real client: `setAuth` pushes `access_token` to joined channels.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Inbox, anonToken, signJwt, startServer, subscribe, supabaseClient, uniqueRoom } = require('./helpers');

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Joins a room with self-broadcast on, collecting broadcasts, system messages and statuses. */
async function joined(vsn = '2.0.0', token = anonToken()) {
  const client = supabaseClient(server, { vsn, token });
  const channel = client.channel(uniqueRoom('auth'), { config: { broadcast: { self: true, ack: true } } });
  const broadcasts = new Inbox();
  const system = new Inbox();
  channel.on('broadcast', { event: '*' }, broadcasts.push).on('system', {}, system.push);
  const statuses = await subscribe(channel);
  // After a join realtime-js re-reads its token callback; let that settle so it cannot push the
  // connect token again after a test's own setAuth.
  await client.realtime._waitForAuthIfNeeded();
  return { client, channel, broadcasts, system, statuses };
}

test('setAuth with a fresh token keeps the channel working', { timeout: 30_000 }, async () => {
  const s = await joined();
  try {
    const fresh = anonToken(7200, { sub: 'user-2' });
    await s.client.realtime.setAuth(fresh);
    assert.equal(s.client.realtime.accessTokenValue, fresh);
    assert.equal(await s.channel.send({ type: 'broadcast', event: 'after-refresh', payload: { ok: 1 } }), 'ok');
    const msg = await s.broadcasts.next();
    assert.equal(msg.event, 'after-refresh');
    assert.equal(s.channel.state, 'joined');
  } finally {
    await s.client.close();
  }
});

test('setAuth with a token that expires closes the channel with a system error', { timeout: 30_000 }, async () => {
  const s = await joined();
  try {
    await s.client.realtime.setAuth(anonToken(2));
    const sys = await s.system.next(8_000, 'system message');
    assert.equal(sys.status, 'error');
    assert.equal(sys.extension, 'system');
    assert.match(sys.message, /^Token has expired \d+ seconds ago$/);
    await s.statuses.until((st) => st === 'CLOSED', 5_000, 'CLOSED status');
    assert.equal(s.channel.state, 'closed');
  } finally {
    await s.client.close();
  }
});

test('setAuth with a token lacking `role` closes the channel', { timeout: 30_000 }, async () => {
  const s = await joined();
  try {
    const now = Math.floor(Date.now() / 1000);
    await s.client.realtime.setAuth(signJwt({ exp: now + 3600, sub: 'x' }));
    const sys = await s.system.next(8_000, 'system message');
    assert.equal(sys.status, 'error');
    assert.equal(sys.message, 'Fields `role` and `exp` are required in JWT');
    await s.statuses.until((st) => st === 'CLOSED', 5_000, 'CLOSED status');
  } finally {
    await s.client.close();
  }
});

test('a channel joined with a short-lived token is closed when it expires', { timeout: 30_000 }, async () => {
  // realtime-js joins with the socket's token, so the whole client uses one expiring in 3 s.
  const s = await joined('1.0.0', anonToken(3));
  try {
    const sys = await s.system.next(8_000, 'expiry system message');
    assert.equal(sys.status, 'error');
    assert.equal(sys.extension, 'system');
    assert.match(sys.message, /^Token has expired \d+ seconds ago$/);
    await s.statuses.until((st) => st === 'CLOSED', 5_000, 'CLOSED status');
  } finally {
    await s.client.close();
  }
});
