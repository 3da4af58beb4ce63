// Cluster mode through the real client: three servers sharing a throwaway redis-server
// (REDIS_URL) act as one. Broadcasts sent on one node reach subscribers on the others exactly
// once and in order (socket and REST), presence is the same on every node, and the members of
// a node killed with SIGKILL leave everywhere.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Inbox, sleep, subscribe, supabaseClient, uniqueRoom } = require('./helpers');
const { publicChannel, startNodes, startRedis } = require('./redis');

let redis;
let nodes = [];
before(async () => {
  redis = await startRedis();
  nodes = await startNodes(redis, 3);
}, { timeout: 120_000 });
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
});

/** What arrived in `inbox` during the next `ms` milliseconds (and before), emptied. */
async function quiet(inbox, ms = 500) {
  await sleep(ms);
  return inbox.items.splice(0);
}

/** Joins `room` on `server` and collects its broadcasts of any event. */
async function joiner(server, vsn, room, broadcast = { self: false, ack: true }) {
  const client = supabaseClient(server, { vsn });
  const inbox = new Inbox();
  const channel = client.channel(room, { config: { broadcast } });
  channel.on('broadcast', { event: '*' }, inbox.push);
  await subscribe(channel);
  return { client, channel, inbox };
}

/** Joins `room` on `server` with presence key `key`, collecting joins, leaves and syncs. */
async function member(server, vsn, room, key) {
  const client = supabaseClient(server, { vsn });
  const channel = client.channel(room, { config: { presence: { key } } });
  const joins = new Inbox();
  const leaves = new Inbox();
  const syncs = new Inbox();
  channel
    .on('presence', { event: 'join' }, joins.push)
    .on('presence', { event: 'leave' }, leaves.push)
    .on('presence', { event: 'sync' }, () => syncs.push(channel.presenceState()));
  await subscribe(channel);
  return { key, client, channel, joins, leaves, syncs };
}

const has = (state, keys) => keys.every((k) => state[k] && state[k].length === 1);
const lacks = (state, keys) => keys.every((k) => !state[k]);

test('a broadcast on one node reaches subscribers on the others exactly once, in order', { timeout: 60_000 }, async () => {
  const room = uniqueRoom('cluster-broadcast');
  const sender = await joiner(nodes[0], '2.0.0', room);
  const second = await joiner(nodes[1], '2.0.0', room);
  const third = await joiner(nodes[2], '1.0.0', room);
  try {
    // A node subscribes in Redis shortly after its first local join.
    await redis.awaitListeners(publicChannel(room), 3);

    const count = 10;
    for (let n = 0; n < count; n += 1) {
      assert.equal(await sender.channel.send({ type: 'broadcast', event: 'seq', payload: { n } }), 'ok');
    }
    for (const who of [second, third]) {
      const got = [];
      for (let i = 0; i < count; i += 1) got.push(await who.inbox.next(5_000, `message ${i}`));
      assert.deepEqual(got.map((m) => [m.event, m.payload.n]), [...Array(count).keys()].map((n) => ['seq', n]));
    }
    // Nothing twice, and nothing back to the sender (self: false).
    for (const who of [second, third]) assert.deepEqual(await quiet(who.inbox), []);
    assert.deepEqual(sender.inbox.items, []);

    // REST on node 3 (supabase-js httpSend): every subscriber, on every node, once.
    assert.deepEqual(await third.channel.httpSend('rest', { from: 3 }), { success: true });
    for (const who of [sender, second, third]) {
      const msg = await who.inbox.next(5_000, 'REST broadcast');
      assert.equal(msg.event, 'rest');
      assert.deepEqual(msg.payload, { from: 3 });
    }
    for (const who of [sender, second, third]) assert.deepEqual(await quiet(who.inbox), []);
  } finally {
    await Promise.all([sender, second, third].map((w) => w.client.close()));
  }
});

test('presence tracked on different nodes is seen on every node; an untrack leaves everywhere', { timeout: 60_000 }, async () => {
  const room = uniqueRoom('cluster-presence');
  const alice = await member(nodes[0], '2.0.0', room, 'alice');
  const bob = await member(nodes[1], '1.0.0', room, 'bob');
  const carol = await member(nodes[2], '2.0.0', room, 'carol');
  const all = [alice, bob, carol];
  const keys = all.map((m) => m.key);
  try {
    await redis.awaitListeners(publicChannel(room), 3);
    for (const [i, m] of all.entries()) assert.equal(await m.channel.track({ node: i + 1 }), 'ok');

    for (const m of all) {
      await m.syncs.until((s) => has(s, keys), 10_000, `sync with everyone on ${m.key}'s node`);
      const state = m.channel.presenceState();
      assert.deepEqual(Object.keys(state).sort(), keys);
      for (const [i, k] of keys.entries()) assert.equal(state[k][0].node, i + 1, `${k} as seen by ${m.key}`);
    }

    assert.equal(await alice.channel.untrack(), 'ok');
    for (const m of [bob, carol]) {
      const leave = await m.leaves.until((l) => l.key === 'alice', 10_000, `leave of alice on ${m.key}'s node`);
      assert.equal(leave.leftPresences.length, 1);
      assert.equal(leave.leftPresences[0].node, 1);
    }
    for (const m of all) {
      await m.syncs.until((s) => lacks(s, ['alice']) && has(s, ['bob', 'carol']), 10_000, `state without alice on ${m.key}'s node`);
    }
    // One leave of alice per node, no more.
    for (const m of [bob, carol]) {
      await sleep(300);
      assert.deepEqual(m.leaves.items.filter((l) => l.key === 'alice'), []);
    }
  } finally {
    await Promise.all(all.map((m) => m.client.close()));
  }
});

test('binary broadcasts cross nodes to vsn 2.0.0 only, and self gets its own message once', { timeout: 60_000 }, async () => {
  const room = uniqueRoom('cluster-binary');
  const sender = await joiner(nodes[0], '2.0.0', room, { self: true, ack: true });
  const v2 = await joiner(nodes[1], '2.0.0', room);
  const v1 = await joiner(nodes[2], '1.0.0', room);
  try {
    await redis.awaitListeners(publicChannel(room), 3);
    const bytes = Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]);
    assert.equal(await sender.channel.send({ type: 'broadcast', event: 'blob', payload: bytes.buffer }), 'ok');
    assert.equal(await sender.channel.send({ type: 'broadcast', event: 'marker', payload: { m: 1 } }), 'ok');
    for (const who of [sender, v2]) {
      const blob = await who.inbox.next(5_000, 'binary broadcast');
      assert.equal(blob.event, 'blob');
      assert.deepEqual(new Uint8Array(blob.payload), bytes);
      assert.equal((await who.inbox.next(5_000, 'marker')).event, 'marker');
    }
    // The vsn 1.0.0 subscriber cannot read binary payloads: its first message is the marker.
    assert.deepEqual((await v1.inbox.next(5_000, 'marker')).payload, { m: 1 });
    for (const who of [sender, v2, v1]) assert.deepEqual(await quiet(who.inbox), []);
  } finally {
    await Promise.all([sender, v2, v1].map((w) => w.client.close()));
  }
});

test('a node that lost its last subscriber of a topic delivers again once one joins', { timeout: 60_000 }, async () => {
  const room = uniqueRoom('cluster-rejoin');
  const sender = await joiner(nodes[0], '2.0.0', room);
  let away = await joiner(nodes[1], '2.0.0', room);
  try {
    await redis.awaitListeners(publicChannel(room), 2);
    await away.client.close();
    // Node 2 stops listening once its last subscriber is gone.
    await redis.awaitListeners(publicChannel(room), 1);
    assert.equal(await sender.channel.send({ type: 'broadcast', event: 'lost', payload: {} }), 'ok');
    away = await joiner(nodes[1], '1.0.0', room);
    await redis.awaitListeners(publicChannel(room), 2);
    assert.equal(await sender.channel.send({ type: 'broadcast', event: 'back', payload: { n: 2 } }), 'ok');
    const msg = await away.inbox.next(5_000, 'broadcast after rejoining');
    assert.deepEqual([msg.event, msg.payload], ['back', { n: 2 }]);
    assert.deepEqual(await quiet(away.inbox), []);
  } finally {
    await Promise.all([sender, away].map((w) => w.client.close()));
  }
});

test('a late joiner on another node gets the state; re-tracks and disconnects show everywhere', { timeout: 60_000 }, async () => {
  const room = uniqueRoom('cluster-late');
  const alice = await member(nodes[0], '2.0.0', room, 'alice');
  const bob = await member(nodes[1], '2.0.0', room, 'bob');
  let carol;
  try {
    await redis.awaitListeners(publicChannel(room), 2);
    assert.equal(await alice.channel.track({ status: 'online' }), 'ok');
    assert.equal(await bob.channel.track({ status: 'away' }), 'ok');
    await alice.syncs.until((s) => has(s, ['alice', 'bob']), 10_000, 'alice sees bob');

    // Node 3 has no subscriber of the topic yet: it reads the state from Redis for carol.
    carol = await member(nodes[2], '1.0.0', room, 'carol');
    const initial = await carol.syncs.until((s) => has(s, ['alice', 'bob']), 10_000, 'initial state on node 3');
    assert.equal(initial.alice[0].status, 'online');
    assert.equal(initial.bob[0].status, 'away');

    // A re-track replaces the meta on every node: still one meta for alice.
    assert.equal(await alice.channel.track({ status: 'busy' }), 'ok');
    for (const m of [bob, carol]) {
      await m.syncs.until((s) => has(s, ['alice']) && s.alice[0].status === 'busy', 10_000, `busy alice on ${m.key}'s node`);
    }

    // Closing bob's socket leaves everywhere.
    await bob.client.close();
    for (const m of [alice, carol]) {
      await m.leaves.until((l) => l.key === 'bob', 10_000, `leave of bob on ${m.key}'s node`);
      await m.syncs.until((s) => lacks(s, ['bob']) && has(s, ['alice']), 10_000, `state without bob on ${m.key}'s node`);
    }
  } finally {
    await Promise.all([alice, bob, carol].filter(Boolean).map((m) => m.client.close()));
  }
});

test('the members of a node killed with SIGKILL leave on the other nodes within 15 s', { timeout: 90_000 }, async (t) => {
  const [doomed] = await startNodes(redis, 1);
  const room = uniqueRoom('cluster-crash');
  let alice;
  let bob;
  let dave;
  try {
    alice = await member(nodes[0], '2.0.0', room, 'alice');
    bob = await member(nodes[1], '2.0.0', room, 'bob');
    dave = await member(doomed, '2.0.0', room, 'dave');
    await redis.awaitListeners(publicChannel(room), 3);
    for (const m of [alice, bob, dave]) assert.equal(await m.channel.track({ key: m.key }), 'ok');
    for (const m of [alice, bob]) {
      await m.syncs.until((s) => has(s, ['alice', 'bob', 'dave']), 10_000, `everyone on ${m.key}'s node`);
    }

    const killedAt = Date.now();
    await doomed.kill('SIGKILL');
    const deadline = killedAt + 15_000;
    for (const m of [alice, bob]) {
      const left = Math.max(1, deadline - Date.now());
      const leave = await m.leaves.until((l) => l.key === 'dave', left, `leave of dave on ${m.key}'s node`);
      assert.equal(leave.leftPresences.length, 1);
      await m.syncs.until((s) => lacks(s, ['dave']) && has(s, ['alice', 'bob']), Math.max(1, deadline - Date.now()), `state without dave on ${m.key}'s node`);
    }
    const took = Date.now() - killedAt;
    assert.ok(took <= 15_000, `dave left after ${took} ms`);
    t.diagnostic(`dave's leave reached both nodes ${took} ms after the kill`);
  } finally {
    await Promise.all([alice, bob, dave].filter(Boolean).map((m) => m.client.close()));
    await doomed.stop();
  }
});
