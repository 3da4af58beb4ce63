// The /inspector page in headless Chromium (driven by playwright-core): a link carrying the
// session's state joins on load, then a REST broadcast, a Postgres change, the page's own
// broadcast and presence, and a refused private join all show up on the page.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const { chromium } = require('playwright-core');
const { anonToken, startServerOnDb, uniqueRoom } = require('./helpers');
const { startPgCluster } = require('./pg');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

let db;
let server;
let browser;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  db = await startPgCluster();
  await db.sql(`
    create table public.inspector_items (id int primary key, note text not null);
    alter publication supabase_realtime add table public.inspector_items;
    grant select on public.inspector_items to anon;
  `);
  // No REALTIME_DEFAULT_TENANT: the page must reach `realtime-dev` through the socket URL's
  // host (`realtime-dev.localhost`), as an operator's browser would.
  server = await startServerOnDb(db, {
    INSPECTOR_ENABLED: 'true',
    CHANNEL_ERROR_BACKOFF_MS: '200',
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await db?.stop();
});

/** A page that fails the test on a script error or a Content-Security-Policy violation. */
async function openPage(t, query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  t.after(async () => {
    await context.close();
    assert.deepEqual(problems, []);
  });
  await page.goto(`${server.httpUrl}/inspector?${new URLSearchParams(query)}`);
  return page;
}

/** `POST /api/broadcast` to tenant `realtime-dev` (chosen by the Host header). */
function restBroadcast(messages) {
  const body = JSON.stringify({ messages });
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: server.port,
      method: 'POST',
      path: '/api/broadcast',
      headers: {
        host: `realtime-dev.localhost:${server.port}`,
        apikey: anonToken(),
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The first log row of `kind` whose text contains `text`, once it appears. */
async function row(page, kind, text, timeout = 15_000) {
  const locator = page.locator(`#log-body tr[data-kind="${kind}"]`, { hasText: text }).first();
  await locator.waitFor({ timeout });
  return locator;
}

test('a link with the session state joins, then shows broadcasts, presence and Postgres Changes', { timeout: 120_000 }, async (t) => {
  const room = uniqueRoom('inspect');
  const key = anonToken();
  const page = await openPage(t, {
    tenant: 'realtime-dev',
    channel: room,
    apikey: key,
    event: 'INSERT',
    schema: 'public',
    table: 'inspector_items',
  });

  // The page derives the socket URL from the tenant and joins without a click.
  assert.equal(
    await page.locator('#socket').getAttribute('placeholder'),
    `ws://realtime-dev.localhost:${server.port}/socket/websocket`,
  );
  await page.locator('#status[data-state="joined"]').waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#status').textContent(), `Joined realtime:${room}`);
  // The first subscription of the tenant creates its replication slot, which can be slow.
  await row(page, 'system', 'Postgres Changes: Subscribed to PostgreSQL', 60_000);
  // The address bar holds the state, so the link can be copied.
  const query = new URL(page.url()).searchParams;
  assert.equal(query.get('channel'), room);
  assert.equal(query.get('tenant'), 'realtime-dev');
  assert.equal(query.get('apikey'), key);
  assert.equal(query.get('table'), 'inspector_items');
  assert.equal(query.get('event'), 'INSERT');

  assert.equal(await restBroadcast([{ topic: room, event: 'from-rest', payload: { hello: 'inspector' } }]), 202);
  const broadcast = await row(page, 'broadcast', 'from-rest');
  assert.match(await broadcast.locator('td.payload').textContent(), /"hello":"inspector"/);
  assert.match(await broadcast.locator('td.time').textContent(), /^\d\d:\d\d:\d\d\.\d{3}$/);

  await db.sql(`insert into public.inspector_items values (1, 'seen by the inspector')`);
  const change = await row(page, 'postgres', 'INSERT', 15_000);
  assert.match(await change.locator('td.detail').textContent(), /^public\.inspector_items, commit → arrival -?\d+ ms$/);
  const delay = Number(await change.getAttribute('data-commit-delay-ms'));
  assert.ok(delay > -2_000 && delay < 15_000, `commit → arrival ${delay} ms`);
  t.diagnostic(`commit → arrival shown by the page: ${delay} ms`);
  assert.match(await change.locator('td.payload').textContent(), /"note":"seen by the inspector"/);

  // The page's own broadcast comes back (self: true), and its presence is listed.
  await page.fill('#broadcast-event', 'from-page');
  await page.fill('#broadcast-payload', '{"n":7}');
  await page.click('#send-broadcast');
  const own = await row(page, 'broadcast', 'from-page');
  assert.match(await own.locator('td.payload').textContent(), /"n":7/);
  await page.fill('#presence-payload', '{"user":"operator"}');
  await page.click('#track');
  await row(page, 'presence', 'presence_diff');
  await page.locator('#presence-list', { hasText: '"user":"operator"' }).waitFor({ timeout: 5_000 });
});

test('a refused private join is shown in plain words', { timeout: 60_000 }, async (t) => {
  const page = await openPage(t, {
    tenant: 'realtime-dev',
    channel: uniqueRoom('locked'),
    apikey: anonToken(),
    private: 'true',
  });
  // No policy on realtime.messages lets anon read: the join is refused.
  const refused = await row(page, 'error', 'join refused', 30_000);
  assert.match(
    await refused.locator('td.detail').textContent(),
    /^You do not have permissions to read from this Channel topic: locked-\w+ \[Unauthorized\]$/,
  );
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'error');
  assert.match(await page.locator('#status').textContent(), /^Join refused: Unauthorized: /);
});
