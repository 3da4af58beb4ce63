// Connecting and joining with the real client: both serializer versions, both paths, heartbeats
// and a join error reply.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Inbox, realtimeClient, startServer, subscribe, supabaseClient, uniqueRoom } = require('./helpers');

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

for (const vsn of ['1.0.0', '2.0.0']) {
  test(`supabase-js joins a channel with vsn ${vsn}`, { timeout: 30_000 }, async () => {
    const client = supabaseClient(server, { vsn });
    try {
      assert.match(client.realtime.endpointURL(), new RegExp(`/realtime/v1/websocket\\?apikey=.*vsn=${vsn.replace(/\./g, '\\.')}`));
      const channel = client.channel(uniqueRoom('join'));
      await subscribe(channel);
      assert.equal(channel.state, 'joined');
      assert.equal(client.realtime.isConnected(), true);
    } finally {
      await client.close();
    }
  });
}

test('realtime-js joins on upstream path /socket/websocket', { timeout: 30_000 }, async () => {
  const client = realtimeClient(server);
  try {
    assert.match(client.realtime.endpointURL(), /\/socket\/websocket\?/);
    const channel = client.channel(uniqueRoom('socket-path'));
    await subscribe(channel);
    assert.equal(channel.state, 'joined');
  } finally {
    await client.close();
  }
});

test('heartbeats are answered', { timeout: 30_000 }, async () => {
  const beats = new Inbox();
  const client = realtimeClient(server, {
    options: { heartbeatIntervalMs: 300, heartbeatCallback: (status) => beats.push(status) },
  });
  try {
    const channel = client.channel(uniqueRoom('heartbeat'));
    await subscribe(channel);
    // Each beat reports `sent`, then `ok` once the reply arrives (`timeout` if it does not).
    const seen = [];
    while (seen.filter((s) => s === 'ok').length < 2) {
      const status = await beats.next(5_000, 'heartbeat status');
      assert.ok(['sent', 'ok'].includes(status), `heartbeat status ${status}`);
      seen.push(status);
    }
  } finally {
    await client.close();
  }
});

test('a join error reply reaches the client as CHANNEL_ERROR with the reason', { timeout: 30_000 }, async () => {
  const client = supabaseClient(server);
  try {
    // An empty channel name gives the topic `realtime:` exactly.
    const channel = client.channel('');
    const started = Date.now();
    const err = await subscribe(channel, 12_000).then(
      () => assert.fail('join of `realtime:` succeeded'),
      (e) => e,
    );
    assert.equal(err.status, 'CHANNEL_ERROR');
    assert.match(err.message, /TopicNameRequired: You must provide a topic name/);
    // Upstream delays every join error by 5 s.
    assert.ok(Date.now() - started >= 4_500, `error came after ${Date.now() - started} ms`);
  } finally {
    await client.close();
  }
});
