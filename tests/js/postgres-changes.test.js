// postgres_changes through the real client against a real database: the server's registry and
// its seeded tenant `realtime-dev` both live in a throwaway database from `pg-cluster`. Covers
// INSERT/UPDATE/DELETE payloads as supabase-js exposes them, a row filter, and RLS hiding rows
// from a subscriber, with both serializers.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Inbox, anonToken, signJwt, startServerOnDb, subscribe, supabaseClient, uniqueRoom } = require('./helpers');
const { startPgCluster } = require('./pg');

const OWNER_A = '00000000-0000-4000-8000-00000000000a';
const OWNER_B = '00000000-0000-4000-8000-00000000000b';

let db;
let server;

before(async () => {
  db = await startPgCluster();
  // RLS on: anon reads every row, an authenticated user only the rows it owns.
  await db.sql(`
    create table public.todos (id int primary key, title text not null, owner uuid);
    alter publication supabase_realtime add table public.todos;
    grant select, insert, update, delete on public.todos to anon, authenticated;
    alter table public.todos enable row level security;
    create policy todos_anon_read on public.todos for select to anon using (true);
    create policy todos_owner_read on public.todos for select to authenticated using (owner = auth.uid());
  `);
  // The seed points tenant `realtime-dev` at this same database and migrates its `realtime`
  // schema. The Host 127.0.0.1 names no tenant, so REALTIME_DEFAULT_TENANT routes it there.
  server = await startServerOnDb(db, {
    REALTIME_DEFAULT_TENANT: 'realtime-dev',
  });
});

after(async () => {
  await server?.stop();
  await db?.stop();
});

/** A token for an authenticated user whose `auth.uid()` is `sub`. */
function userToken(sub) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ role: 'authenticated', aud: 'authenticated', sub, iat: now, exp: now + 3600 });
}

/**
 * Joins a channel with `bindings` (name → postgres_changes filter), each collected in an Inbox,
 * and waits for the "Subscribed to PostgreSQL" system message, after which changes are delivered.
 */
async function subscribeChanges(c, bindings) {
  const channel = c.channel(uniqueRoom('changes'));
  const inboxes = {};
  for (const [name, filter] of Object.entries(bindings)) {
    inboxes[name] = new Inbox();
    channel.on('postgres_changes', filter, inboxes[name].push);
  }
  const system = new Inbox();
  channel.on('system', {}, system.push);
  await subscribe(channel);
  // The first subscription of the tenant creates the replication slot, which can be slow.
  const sys = await system.until((m) => m.extension === 'postgres_changes', 30_000, 'postgres_changes system message');
  assert.equal(sys.status, 'ok', JSON.stringify(sys));
  assert.equal(sys.message, 'Subscribed to PostgreSQL');
  return inboxes;
}

/** Checks the change's shape as supabase-js exposes it; `commit_timestamp` must be recent. */
function assertChange(actual, expected, startedAt) {
  const { commit_timestamp: ts, ...rest } = actual;
  assert.deepEqual(rest, { schema: 'public', table: 'todos', errors: null, new: {}, old: {}, ...expected });
  assert.match(ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const at = Date.parse(ts);
  assert.ok(at >= startedAt - 1_000 && at <= Date.now() + 1_000, `commit_timestamp ${ts}`);
}

for (const [vsn, base] of [['1.0.0', 0], ['2.0.0', 100]]) {
  test(`postgres_changes INSERT/UPDATE/DELETE, a filter and RLS with vsn ${vsn}`, { timeout: 60_000 }, async (t) => {
    const [hidden, mine] = [base + 1, base + 2];
    const clients = [];
    const client = (opts) => {
      const c = supabaseClient(server, opts);
      clients.push(c);
      return c;
    };
    t.after(() => Promise.allSettled(clients.map((c) => c.close())));
    const anonClient = client({ vsn, token: anonToken() });
    const userClient = client({ vsn, token: userToken(OWNER_B) });
    for (const c of [anonClient, userClient]) {
      assert.ok(c.realtime.endpointURL().endsWith(`vsn=${vsn}`), c.realtime.endpointURL());
    }
    const anon = await subscribeChanges(anonClient, {
      all: { event: '*', schema: 'public', table: 'todos' },
      filtered: { event: '*', schema: 'public', table: 'todos', filter: `id=eq.${mine}` },
    });
    const user = await subscribeChanges(userClient, {
      all: { event: '*', schema: 'public', table: 'todos' },
    });

    const rowA = { id: hidden, title: 'owned by a', owner: OWNER_A };
    const rowB = { id: mine, title: 'owned by b', owner: OWNER_B };
    const insertA = { eventType: 'INSERT', new: rowA };
    const insertB = { eventType: 'INSERT', new: rowB };
    // The default replica identity: `old` holds the primary key only.
    const updateA = { eventType: 'UPDATE', new: { ...rowA, title: 'still a' }, old: { id: hidden } };
    const updateB = { eventType: 'UPDATE', new: { ...rowB, title: 'b, edited' }, old: { id: mine } };
    const deleteB = { eventType: 'DELETE', old: { id: mine } };

    // One transaction per step, and each step's messages are awaited before the next: the RLS
    // check reads the row as it is when the change is processed, so a later UPDATE or DELETE
    // could otherwise hide an earlier change from a subscriber (as upstream). `hidden` belongs
    // to A, so B's policy never lets it through; B's next message proves nothing came instead.
    const steps = [
      [`insert into public.todos values (${hidden}, 'owned by a', '${OWNER_A}')`, insertA, null, null],
      [`insert into public.todos values (${mine}, 'owned by b', '${OWNER_B}')`, insertB, insertB, insertB],
      [`update public.todos set title = 'still a' where id = ${hidden}`, updateA, null, null],
      [`update public.todos set title = 'b, edited' where id = ${mine}`, updateB, updateB, updateB],
      [`delete from public.todos where id = ${mine}`, deleteB, deleteB, deleteB],
    ];
    const startedAt = Date.now();
    for (const [statement, toAll, toFiltered, toUser] of steps) {
      await db.sql(statement);
      const what = `${toAll.eventType} of ${(toAll.new ?? toAll.old).id}`;
      assertChange(await anon.all.next(10_000, `anon: ${what}`), toAll, startedAt);
      if (toFiltered) assertChange(await anon.filtered.next(10_000, `filtered: ${what}`), toFiltered, startedAt);
      if (toUser) assertChange(await user.all.next(10_000, `user: ${what}`), toUser, startedAt);
    }
    // Everything was delivered in commit order and the last step reached every binding, so
    // nothing else is still on its way: no extra message, no hidden row.
    assert.deepEqual(anon.all.items, []);
    assert.deepEqual(anon.filtered.items, []);
    assert.deepEqual(user.all.items, []);
  });
}
