// A throwaway PostgreSQL database for the supabase-js tests: the `pg-cluster` binary of
// realtime-testkit starts the shared test cluster, creates a bootstrapped database and prints its
// connection parameters; SQL runs through `psql` from the same PostgreSQL installation.
'use strict';

const { execFile, execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

/** `psql` next to the server binaries the cluster uses (same lookup order as realtime-testkit). */
function psqlPath() {
  if (process.env.REALTIME_TEST_PG_BIN) return path.join(process.env.REALTIME_TEST_PG_BIN, 'psql');
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (fs.existsSync(path.join(dir, 'psql'))) return path.join(dir, 'psql');
  } catch {
    // no pg_config: fall back to PATH
  }
  return 'psql';
}

/**
 * Starts `pg-cluster` (PG_CLUSTER_BIN, default ../../target/debug/pg-cluster) and resolves with
 * `{ host, port, dbname, user, password, sql, stop }` once it has printed its JSON line.
 * `stop()` closes its stdin and sends SIGTERM; it then stops PostgreSQL and removes the cluster.
 */
async function startPgCluster() {
  const bin = path.resolve(process.env.PG_CLUSTER_BIN || path.join(__dirname, '../../target/debug/pg-cluster'));
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (chunk) => stderr.push(chunk.toString()));
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  // SIGTERM, not SIGKILL: the cluster removes itself on the way out, even after we are gone.
  const termOnExit = () => child.kill('SIGTERM');
  process.on('exit', termOnExit);
  exit.then(() => process.off('exit', termOnExit));

  async function stop() {
    if (exited) return exited;
    child.stdin.end();
    child.kill('SIGTERM');
    const done = await Promise.race([exit, sleep(20_000, null, { ref: false })]);
    if (done) return done;
    child.kill('SIGKILL');
    return exit;
  }

  let info;
  try {
    info = await new Promise((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => reject(new Error('pg-cluster printed nothing within 90 s')), 90_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`spawn ${bin}: ${e.message}`));
      });
      exit.then((how) => {
        clearTimeout(timer);
        reject(new Error(`pg-cluster exited early (${JSON.stringify(how)}):\n${stderr.join('')}`));
      });
      child.stdout.on('data', (chunk) => {
        buffered += chunk.toString();
        const newline = buffered.indexOf('\n');
        if (newline < 0) return;
        clearTimeout(timer);
        try {
          resolve(JSON.parse(buffered.slice(0, newline)));
        } catch (e) {
          reject(new Error(`pg-cluster printed ${buffered.slice(0, newline)}: ${e.message}`));
        }
      });
    });
  } catch (e) {
    await stop();
    throw e;
  }

  const psql = psqlPath();
  /** Runs `statements` (one string, several statements allowed) and resolves with psql's output. */
  function sql(statements) {
    const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', info.host, '-p', String(info.port),
      '-U', info.user, '-d', info.dbname, '-c', statements];
    return new Promise((resolve, reject) => {
      execFile(psql, args, { env: { ...process.env, PGPASSWORD: info.password } }, (err, stdout, errout) => {
        if (err) reject(new Error(`psql ${JSON.stringify(statements)}: ${err.message}\n${errout}`));
        else resolve(stdout);
      });
    });
  }

  return { ...info, sql, stop };
}

module.exports = { startPgCluster };
