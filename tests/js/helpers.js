// Shared pieces of the supabase-js end-to-end tests: start the server binary (standalone or on a
// database) on a free port, mint HS256 tokens, build clients, and wait for channel events.
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const WebSocket = require('ws');
const { createClient } = require('@supabase/supabase-js');
const { RealtimeClient } = require('@supabase/realtime-js');

// A signal would end this process without running 'exit' listeners, which stop the processes
// the tests started (the server, the database cluster); exit normally instead.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => process.exit(128 + os.constants.signals[signal]));
}

// Standalone mode seeds the `realtime-dev` tenant with API_JWT_SECRET as its JWT secret.
const JWT_SECRET = 'end-to-end-test-secret-with-at-least-32-characters';

function base64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT over `claims`, signed with the tenant secret unless `secret` is given. */
function signJwt(claims, secret = JWT_SECRET) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = base64url(JSON.stringify(claims));
  const signature = crypto.createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${signature}`;
}

/** An `anon` token valid for `ttlSeconds` (negative for an already expired one). */
function anonToken(ttlSeconds = 3600, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ role: 'anon', iat: now, exp: now + ttlSeconds, ...extra });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the `realtime` binary (REALTIME_BIN, default ../../target/debug/realtime) and waits until
 * `/healthcheck` answers. Standalone mode unless `extraEnv` sets DB_HOST. Returns
 * `{ port, httpUrl, wsUrl, stop, kill, logs }`; the process is killed if this test process exits first.
 */
async function startServer(extraEnv = {}) {
  const bin = path.resolve(process.env.REALTIME_BIN || path.join(__dirname, '../../target/debug/realtime'));
  const port = await freePort();
  const env = { ...process.env, API_JWT_SECRET: JWT_SECRET, PORT: String(port), ...extraEnv };
  // Standalone unless the caller points the registry at a database.
  if (!('DB_HOST' in extraEnv)) delete env.DB_HOST;
  env.RUST_LOG = env.RUST_LOG || 'warn';

  const child = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const keep = (chunk) => {
    lines.push(...chunk.toString().split('\n').filter(Boolean));
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  child.on('error', (e) => lines.push(`spawn error: ${e.message}`));
  // A test process that ends without running `stop()` (a crash, a cancelled run) still takes
  // the server with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  exit.then(() => process.off('exit', killOnExit));

  const httpUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      throw new Error(`server exited early (${JSON.stringify(exited)}):\n${lines.join('\n')}`);
    }
    try {
      const res = await fetch(`${httpUrl}/healthcheck`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not become healthy in 60 s:\n${lines.join('\n')}`);
    }
    await sleep(100);
  }

  return {
    port,
    httpUrl,
    wsUrl: `ws://127.0.0.1:${port}`,
    logs: () => lines.join('\n'),
    /** Sends `signal` (SIGKILL: a crash) and resolves once the process is gone. */
    async kill(signal = 'SIGKILL') {
      if (exited) return;
      child.kill(signal);
      await exit;
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const done = await Promise.race([exit, sleep(5000, null, { ref: false })]);
      if (!done) {
        child.kill('SIGKILL');
        await exit;
      }
    },
  };
}

/**
 * `startServer` with the registry in `db` (a `startPgCluster()` database), configured like the
 * self-hosted compose file: the seed puts tenant `realtime-dev` in that same database.
 */
function startServerOnDb(db, extraEnv = {}) {
  return startServer({
    DB_HOST: db.host,
    DB_PORT: String(db.port),
    DB_USER: db.user,
    DB_PASSWORD: db.password,
    DB_NAME: db.dbname,
    DB_AFTER_CONNECT_QUERY: 'SET search_path TO _realtime',
    DB_ENC_KEY: 'supabaserealtime',
    SEED_SELF_HOST: 'true',
    ...extraEnv,
  });
}

/**
 * Runs `fn` with timers unref'd while it runs synchronously. realtime-js's `disconnect()` starts a
 * 10 s fallback timer it never clears, which would keep each test process alive after its tests.
 */
function withUnrefTimers(fn) {
  const original = global.setTimeout;
  global.setTimeout = (...args) => {
    const timer = original(...args);
    timer.unref?.();
    return timer;
  };
  try {
    return fn();
  } finally {
    global.setTimeout = original;
  }
}

/**
 * A supabase-js client (the way applications connect: `<url>/realtime/v1/websocket`).
 * Node 20 has no global WebSocket, so `ws` is passed as the transport.
 */
function supabaseClient(server, { vsn = '2.0.0', token = anonToken(), realtime = {} } = {}) {
  const supabase = createClient(server.httpUrl, token, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket, vsn, ...realtime },
  });
  return {
    supabase,
    realtime: supabase.realtime,
    channel: (name, opts) => supabase.channel(name, opts),
    async close() {
      // Closing the socket ends every channel server-side (presences leave, subscriptions end).
      await withUnrefTimers(() => supabase.realtime.disconnect());
    },
  };
}

/** A bare realtime-js client on upstream's own path, `/socket/websocket`. */
function realtimeClient(server, { vsn = '2.0.0', token = anonToken(), options = {} } = {}) {
  const realtime = new RealtimeClient(`${server.wsUrl}/socket`, {
    params: { apikey: token },
    transport: WebSocket,
    vsn,
    ...options,
  });
  return {
    realtime,
    channel: (name, opts) => realtime.channel(name, opts),
    async close() {
      await withUnrefTimers(() => realtime.disconnect());
    },
  };
}

/**
 * Subscribes and resolves on SUBSCRIBED with an Inbox of the statuses that follow (CLOSED,
 * CHANNEL_ERROR, ...); rejects on the first error, close or timeout before that.
 */
function subscribe(channel, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const later = new Inbox();
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new Error(`subscribe to ${channel.topic} timed out`));
    }, timeoutMs);
    channel.subscribe((status, err) => {
      if (settled) {
        later.push(status);
      } else if (status === 'SUBSCRIBED') {
        settled = true;
        clearTimeout(timer);
        resolve(later);
      } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT' || status === 'CLOSED') {
        settled = true;
        clearTimeout(timer);
        const detail = err ? err.message : '';
        reject(Object.assign(new Error(`subscribe to ${channel.topic}: ${status} ${detail}`), { status, cause: err }));
      }
    });
  });
}

/** Collects what a callback receives; `next()` waits for the next item. */
class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }

  push = (item) => {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(item);
    else this.items.push(item);
  };

  next(timeoutMs = 5_000, what = 'message') {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits until `predicate` holds for an item, discarding the others. */
  async until(predicate, timeoutMs = 5_000, what = 'matching message') {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      const item = await this.next(left, what);
      if (predicate(item)) return item;
    }
  }
}

/** A topic name no other test uses. */
function uniqueRoom(prefix) {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

module.exports = {
  JWT_SECRET,
  Inbox,
  anonToken,
  freePort,
  realtimeClient,
  signJwt,
  sleep,
  startServer,
  startServerOnDb,
  subscribe,
  supabaseClient,
  uniqueRoom,
};
