// Broadcast through the real client: JSON (self and other clients, across serializer versions)
// and binary payloads on vsn 2.0.0.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Inbox, startServer, subscribe, supabaseClient, uniqueRoom } = require('./helpers');

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Joins `room` on a new client and collects its broadcasts of any event. */
async function joiner(vsn, room, broadcast = { self: false, ack: true }) {
  const client = supabaseClient(server, { vsn });
  const inbox = new Inbox();
  const channel = client.channel(room, { config: { broadcast } });
  channel.on('broadcast', { event: '*' }, inbox.push);
  await subscribe(channel);
  return { client, channel, inbox };
}

for (const vsn of ['1.0.0', '2.0.0']) {
  test(`JSON broadcast reaches self and another client (vsn ${vsn})`, { timeout: 30_000 }, async () => {
    const room = uniqueRoom('json');
    const a = await joiner(vsn, room, { self: true, ack: true });
    const b = await joiner(vsn, room);
    try {
      const payload = { n: 1, s: 'héllo', nested: { list: [1, 2, 3], none: null } };
      const ack = await a.channel.send({ type: 'broadcast', event: 'cursor', payload });
      assert.equal(ack, 'ok');
      for (const who of [a, b]) {
        const msg = await who.inbox.next();
        assert.equal(msg.type, 'broadcast');
        assert.equal(msg.event, 'cursor');
        assert.deepEqual(msg.payload, payload);
      }
    } finally {
      await a.client.close();
      await b.client.close();
    }
  });
}

test('broadcast without self is not echoed to the sender', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('noself');
  const a = await joiner('2.0.0', room, { self: false, ack: true });
  const b = await joiner('2.0.0', room);
  try {
    assert.equal(await a.channel.send({ type: 'broadcast', event: 'one', payload: { i: 1 } }), 'ok');
    assert.equal(await b.channel.send({ type: 'broadcast', event: 'two', payload: { i: 2 } }), 'ok');
    // a receives b's message and nothing of its own before it.
    const first = await a.inbox.next();
    assert.equal(first.event, 'two');
    assert.equal((await b.inbox.next()).event, 'one');
  } finally {
    await a.client.close();
    await b.client.close();
  }
});

test('broadcasts cross serializer versions both ways', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('cross');
  const v1 = await joiner('1.0.0', room);
  const v2 = await joiner('2.0.0', room);
  try {
    // vsn 2.0.0 sends a binary kind-3 frame; the vsn 1.0.0 client reads a JSON object.
    assert.equal(await v2.channel.send({ type: 'broadcast', event: 'from-v2', payload: { x: 1 } }), 'ok');
    const got1 = await v1.inbox.next();
    assert.deepEqual({ event: got1.event, payload: got1.payload }, { event: 'from-v2', payload: { x: 1 } });
    // vsn 1.0.0 sends a JSON object; the vsn 2.0.0 client reads a JSON array.
    assert.equal(await v1.channel.send({ type: 'broadcast', event: 'from-v1', payload: { y: [true] } }), 'ok');
    const got2 = await v2.inbox.next();
    assert.deepEqual({ event: got2.event, payload: got2.payload }, { event: 'from-v1', payload: { y: [true] } });
  } finally {
    await v1.client.close();
    await v2.client.close();
  }
});

test('binary broadcast on vsn 2.0.0 keeps its bytes and skips vsn 1.0.0', { timeout: 30_000 }, async () => {
  const room = uniqueRoom('binary');
  const sender = await joiner('2.0.0', room, { self: true, ack: true });
  const receiver = await joiner('2.0.0', room);
  const legacy = await joiner('1.0.0', room);
  try {
    const bytes = Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]);
    const ack = await sender.channel.send({ type: 'broadcast', event: 'blob', payload: bytes.buffer });
    assert.equal(ack, 'ok');
    for (const who of [sender, receiver]) {
      const msg = await who.inbox.next();
      assert.equal(msg.event, 'blob');
      assert.ok(msg.payload instanceof ArrayBuffer, `payload is ${Object.prototype.toString.call(msg.payload)}`);
      assert.deepEqual(new Uint8Array(msg.payload), bytes);
    }
    // A JSON marker sent after the binary message is the first thing the vsn 1.0.0 client sees.
    assert.equal(await sender.channel.send({ type: 'broadcast', event: 'marker', payload: {} }), 'ok');
    const first = await legacy.inbox.next();
    assert.equal(first.event, 'marker');
  } finally {
    await sender.client.close();
    await receiver.client.close();
    await legacy.client.close();
  }
});

test('channels with different names are isolated', { timeout: 30_000 }, async () => {
  const a = await joiner('2.0.0', uniqueRoom('iso-a'));
  const b = await joiner('2.0.0', uniqueRoom('iso-b'), { self: true, ack: true });
  try {
    assert.equal(await a.channel.send({ type: 'broadcast', event: 'leak', payload: {} }), 'ok');
    assert.equal(await b.channel.send({ type: 'broadcast', event: 'own', payload: {} }), 'ok');
    assert.equal((await b.inbox.next()).event, 'own');
  } finally {
    await a.client.close();
    await b.client.close();
  }
});
