// Broadcasts sent over HTTP by realtime-js (`httpSend`, and `send` on an unjoined channel) reach
// socket subscribers.
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

async function listener(vsn, room) {
  const client = supabaseClient(server, { vsn });
  const inbox = new Inbox();
  const channel = client.channel(room);
  channel.on('broadcast', { event: '*' }, inbox.push);
  await subscribe(channel);
  return { client, inbox };
}

// The bare client sits on `/socket`, so its REST base is the server root (`/api/broadcast`).
test('httpSend with a JSON payload reaches vsn 1.0.0 and 2.0.0 subscribers', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('http-json');
  const v1 = await listener('1.0.0', room);
  const v2 = await listener('2.0.0', room);
  const sender = realtimeClient(server);
  try {
    const res = await sender.channel(room).httpSend('note', { text: 'hi', n: [1, 2] });
    assert.deepEqual(res, { success: true });
    for (const who of [v1, v2]) {
      const msg = await who.inbox.next();
      assert.equal(msg.event, 'note');
      assert.deepEqual(msg.payload, { text: 'hi', n: [1, 2] });
    }
  } finally {
    await sender.close();
    await v1.client.close();
    await v2.client.close();
  }
});

test('httpSend with a binary payload reaches vsn 2.0.0 subscribers only', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('http-binary');
  const v1 = await listener('1.0.0', room);
  const v2 = await listener('2.0.0', room);
  const sender = realtimeClient(server);
  try {
    const bytes = Uint8Array.from([1, 2, 3, 250]);
    assert.deepEqual(await sender.channel(room).httpSend('blob', bytes.buffer), { success: true });
    const msg = await v2.inbox.next();
    assert.equal(msg.event, 'blob');
    assert.deepEqual(new Uint8Array(msg.payload), bytes);
    // The vsn 1.0.0 subscriber's first message is the JSON marker sent afterwards.
    assert.deepEqual(await sender.channel(room).httpSend('marker', {}), { success: true });
    assert.equal((await v1.inbox.next()).event, 'marker');
  } finally {
    await sender.close();
    await v1.client.close();
    await v2.client.close();
  }
});

test('send on an unjoined channel falls back to POST /api/broadcast', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('fallback');
  const v2 = await listener('2.0.0', room);
  const sender = realtimeClient(server);
  const warn = console.warn;
  console.warn = () => {}; // realtime-js warns that the REST fallback is deprecated
  try {
    const res = await sender.channel(room).send({ type: 'broadcast', event: 'rest', payload: { via: 'http' } });
    assert.equal(res, 'ok');
    const msg = await v2.inbox.next();
    assert.equal(msg.event, 'rest');
    assert.deepEqual(msg.payload, { via: 'http' });
  } finally {
    console.warn = warn;
    await sender.close();
    await v2.client.close();
  }
});
