// Presence through the real client: track, sync, untrack, late joiners and disconnects.
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

/** Joins `room` with presence key `key`, collecting joins, leaves and syncs. */
async function member(vsn, room, key) {
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
  return { client, channel, joins, leaves, syncs };
}

for (const vsn of ['1.0.0', '2.0.0']) {
  test(`presence track, sync and untrack (vsn ${vsn})`, { timeout: 40_000 }, async () => {
    const room = uniqueRoom('presence');
    const alice = await member(vsn, room, 'alice');
    const bob = await member(vsn, room, 'bob');
    let carol;
    try {
      assert.equal(await alice.channel.track({ status: 'online', n: 1 }), 'ok');
      const join = await bob.joins.until((j) => j.key === 'alice', 5_000, 'join of alice');
      assert.equal(join.newPresences.length, 1);
      assert.equal(join.newPresences[0].status, 'online');
      assert.equal(join.newPresences[0].n, 1);
      assert.equal(typeof join.newPresences[0].presence_ref, 'string');

      assert.equal(await bob.channel.track({ status: 'away' }), 'ok');
      await alice.syncs.until((s) => s.alice && s.bob, 5_000, 'sync with alice and bob');
      const state = alice.channel.presenceState();
      assert.equal(state.bob[0].status, 'away');
      assert.equal(state.alice[0].status, 'online');

      // Re-tracking replaces the meta: one join and one leave for the same key.
      assert.equal(await alice.channel.track({ status: 'busy' }), 'ok');
      await bob.syncs.until((s) => s.alice && s.alice.length === 1 && s.alice[0].status === 'busy', 5_000, 'updated meta');

      // A late joiner receives the current state.
      carol = await member(vsn, room, 'carol');
      const initial = await carol.syncs.until((s) => s.alice && s.bob, 5_000, 'initial state for carol');
      assert.equal(initial.alice[0].status, 'busy');
      assert.equal(initial.bob[0].status, 'away');

      assert.equal(await alice.channel.untrack(), 'ok');
      // (The re-track above already produced a leave of alice's old meta.)
      const leave = await bob.leaves.until(
        (l) => l.key === 'alice' && l.leftPresences.some((p) => p.status === 'busy'),
        5_000,
        'leave of alice',
      );
      assert.equal(leave.leftPresences.length, 1);
      await bob.syncs.until((s) => !s.alice && s.bob, 5_000, 'state without alice');

      // A disconnecting socket leaves its presences.
      await bob.client.close();
      await carol.leaves.until((l) => l.key === 'bob', 5_000, 'leave of bob after disconnect');
      await carol.syncs.until((s) => !s.bob && !s.alice, 5_000, 'empty state');
    } finally {
      await alice.client.close();
      await bob.client.close();
      await carol?.client.close();
    }
  });
}

test('track with a non-object payload is refused and the channel stays joined', { timeout: 30_000 }, async () => {
  const a = await member('2.0.0', uniqueRoom('presence-bad'), 'k');
  try {
    // realtime-js sends whatever it is given; upstream answers with a reasoned error.
    const res = await a.channel.send({ type: 'presence', event: 'track', payload: 'x' });
    assert.equal(res, 'error');
    assert.equal(a.channel.state, 'joined');
    assert.equal(await a.channel.track({ ok: true }), 'ok');
  } finally {
    await a.client.close();
  }
});
