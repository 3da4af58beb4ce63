// A throwaway `redis-server` for the cluster tests (free port, no persistence, its own
// directory), killed when this test process exits; `redis-cli` for what the tests ask Redis,
// and the cluster of `realtime` nodes pointed at it.
'use strict';

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { freePort, sleep, startServer } = require('./helpers');

const run = promisify(execFile);

const MISSING = 'redis-server not found: the cluster tests need Redis (Debian: apt-get install redis-server; .ci/run installs it)';

/** Runs `redis-cli -p <port> ...args`; its trimmed output, or null when Redis did not answer. */
async function cli(port, ...args) {
  try {
    const { stdout } = await run('redis-cli', ['-p', String(port), ...args], { timeout: 5_000 });
    const text = stdout.trim();
    return text.startsWith('Could not connect') ? null : text;
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error(MISSING.replace('redis-server', 'redis-cli'));
    return null;
  }
}

/**
 * Starts `redis-server` on a free port and waits until it answers PING. Returns
 * `{ port, url, cli, listeners, awaitListeners, stop }`.
 */
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-js-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines = [];
  const keep = (chunk) => lines.push(...chunk.toString().split('\n').filter(Boolean));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  let spawnError = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  child.on('error', (e) => {
    spawnError = e;
  });
  const cleanup = () => {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);

  const deadline = Date.now() + 20_000;
  await sleep(10); // a missing executable is reported on the next tick
  for (;;) {
    if (spawnError) {
      process.off('exit', cleanup);
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(spawnError.code === 'ENOENT' ? MISSING : `redis-server: ${spawnError.message}`);
    }
    if (exited) throw new Error(`redis-server exited early (${JSON.stringify(exited)}):\n${lines.join('\n')}`);
    if ((await cli(port, 'PING')) === 'PONG') break;
    if (Date.now() > deadline) {
      cleanup();
      throw new Error(`redis-server did not answer PING in 20 s:\n${lines.join('\n')}`);
    }
    await sleep(50);
  }

  /** How many connections listen on `channel` (PUBSUB NUMSUB). */
  async function listeners(channel) {
    const out = await cli(port, 'PUBSUB', 'NUMSUB', channel);
    return Number((out || '').split('\n')[1]) || 0;
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    cli: (...args) => cli(port, ...args),
    listeners,
    /** Waits until `n` connections (one per node) listen on `channel`. */
    async awaitListeners(channel, n, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const seen = await listeners(channel);
        if (seen === n) return;
        if (Date.now() > until) throw new Error(`${channel}: ${seen} listeners in Redis, expected ${n}`);
        await sleep(20);
      }
    },
    async stop() {
      if (!exited) {
        child.kill('SIGKILL');
        await exit;
      }
      process.off('exit', cleanup);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Redis channel of a public topic `realtime:<sub>` of the standalone tenant (database 0). */
function publicChannel(sub) {
  const tenant = 'realtime-dev';
  return `realtime:0:0:${tenant.length}:${tenant}:${sub}`;
}

/** Starts `n` standalone servers sharing `redis` (REDIS_URL), one after another. */
async function startNodes(redis, n, extraEnv = {}) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i += 1) nodes.push(await startServer({ REDIS_URL: redis.url, ...extraEnv }));
  } catch (e) {
    await Promise.all(nodes.map((s) => s.stop()));
    throw e;
  }
  return nodes;
}

module.exports = { publicChannel, startNodes, startRedis };
