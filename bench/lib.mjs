/* global fetch, URL, setTimeout, clearTimeout, setInterval, clearInterval, performance */
// Shared helpers of the benchmarks: databases, seeding, processes, statistics. Plain ESM, no build step.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import pg from 'pg';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const RUN_ID = `${process.pid}`;

export function serviceEnv() {
  const out = execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'env'], { encoding: 'utf8' });
  const env = {};
  for (const line of out.split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

export function dbUrl(adminUrl, name) {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function withClient(url, fn) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Creates (or re-creates) a bench database and migrates it with the project's own migrations. */
export async function createDatabase(adminUrl, name) {
  if (!/^bench_[a-z0-9_]+$/.test(name)) throw new Error(`refusing database name ${name}`);
  await withClient(adminUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  });
  const url = dbUrl(adminUrl, name);
  // Asynchronous, so two databases migrate at once (migrate deploy is mostly an ~11 s idle timer).
  await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'prisma/migrate.mjs')], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: url },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`migrate ${name}: ${err}`))));
  });
  return url;
}

export async function dropDatabase(adminUrl, name) {
  if (!/^bench_[a-z0-9_]+$/.test(name)) return;
  await withClient(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** A token in the service's format (`vps_` + 40 base62), stored as the service stores it. */
export function newToken() {
  const bytes = crypto.randomBytes(40);
  let s = 'vps_';
  for (const b of bytes) s += B62[b % 62];
  return { token: s, hash: crypto.createHash('sha256').update(s).digest('hex'), prefix: s.slice(0, 12) };
}

/**
 * Seeds `servers` servers and `snapshots` snapshots (server-side generate_series, so a million rows take
 * seconds). Account 1 ("bench") is the large customer the read benchmark polls as: it holds
 * `benchServers` servers and their snapshots; the rest is spread over other accounts of 10 servers each.
 * Returns tokens and a few ids.
 */
/** `snapshotLabels`: an SQL expression of the server `s` and the snapshot's number `k` (default none). */
export async function seed(url, { servers, snapshots, benchServers = 1000, fakeServers = 0, snapshotLabels = "'{}'" }) {
  return withClient(url, async (c) => {
    const perServer = Math.round(snapshots / servers);
    const otherAccounts = Math.ceil((servers - benchServers) / 10);
    await c.query(`INSERT INTO accounts (name) SELECT 'acct-' || g FROM generate_series(1, $1) g`, [
      1 + otherAccounts + 1,
    ]);
    await c.query(
      `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots)
       VALUES ('bench-hv', 'fake', 'fake://', '/tmp/bench-snapshots', ARRAY['/var/lib/libvirt/images'])`,
    );
    // Server g: account 1 for the first benchServers, then 10 per account.
    await c.query(
      `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path)
       SELECT CASE WHEN g <= $2 THEN 1 ELSE 2 + (g - $2 - 1) / 10 END, 1, 'srv-' || g, 'running',
              'dom-' || g, '/var/lib/libvirt/images/dom-' || g || '.qcow2'
       FROM generate_series(1, $1) g`,
      [servers, benchServers],
    );
    // Snapshots: perServer per server, spread over the last 90 days, a few failed / in progress.
    await c.query(
      `INSERT INTO snapshots (account_id, server_id, name, description, status, progress, size_bytes,
                              consistency, created_at, completed_at, labels)
       SELECT s.account_id, s.id, 'snap-' || s.id || '-' || k, 'nightly backup ' || k,
              (CASE WHEN k % 23 = 0 THEN 'failed' ELSE 'completed' END)::snapshot_status,
              100, (1 + (s.id * 7 + k) % 20000)::bigint * 1048576,
              'stopped', now() - make_interval(secs => (s.id * ${perServer} + k) * 7.77),
              now() - make_interval(secs => (s.id * ${perServer} + k) * 7.77 - 30),
              ${snapshotLabels}
       FROM servers s CROSS JOIN generate_series(1, ${perServer}) k`,
    );
    // A few soft-deleted ones, which must not show.
    await c.query(`UPDATE snapshots SET deleted_at = now() WHERE id % 97 = 0`);
    let fakeAccountServer = null;
    const tokens = {};
    for (const [name, acct] of [
      ['bench', 1],
      ['queue', 1 + otherAccounts + 1],
    ]) {
      const t = newToken();
      await c.query(
        `INSERT INTO api_tokens (account_id, name, prefix, hash, scopes) VALUES ($1, $2, $3, $4, $5)`,
        [acct, name, t.prefix, t.hash, ['read', 'write']],
      );
      tokens[name] = t.token;
    }
    const adminT = newToken();
    await c.query(
      `INSERT INTO api_tokens (account_id, name, prefix, hash, scopes) VALUES (1, 'admin', $1, $2, $3)`,
      [adminT.prefix, adminT.hash, ['admin']],
    );
    tokens.admin = adminT.token;
    if (fakeServers > 0) {
      const node = await c.query(
        `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots)
         VALUES ($1, 'fake', 'fake://', '/tmp/bench-snapshots', ARRAY['/tmp/bench-disks']) RETURNING id`,
        [`bench-fake-${RUN_ID}`],
      );
      const r = await c.query(
        `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path)
         SELECT $1, $2, 'q-' || g, 'stopped', 'qdom-' || g, '/tmp/bench-disks/qdisk-' || g || '.qcow2'
         FROM generate_series(1, $3) g RETURNING id`,
        [1 + otherAccounts + 1, node.rows[0].id, fakeServers],
      );
      fakeAccountServer = r.rows.map((x) => x.id);
    }
    // The seed's triggers wrote one listing_changes row per snapshot; fold them as a running API does.
    await c.query(`WITH gone AS (DELETE FROM listing_changes RETURNING account_id, weight)
                   INSERT INTO listing_changes (account_id, weight)
                   SELECT account_id, sum(weight) FROM gone GROUP BY account_id`);
    await c.query('VACUUM ANALYZE');
    const sample = await c.query(
      `SELECT id AS server_id FROM servers WHERE account_id = 1 ORDER BY id LIMIT 1 OFFSET $1`,
      [Math.floor(benchServers / 2)],
    );
    // One finished action of the polled account: what `vps --wait` polls.
    const action = await c.query(
      `INSERT INTO actions (kind, status, progress, account_id, server_id, started_at, finished_at)
       VALUES ('create_snapshot', 'succeeded', 100, 1, $1, now(), now()) RETURNING id`,
      [sample.rows[0].server_id],
    );
    return {
      tokens,
      benchServerId: sample.rows[0].server_id,
      benchActionId: action.rows[0].id,
      queueServers: fakeAccountServer,
      fakeNodeName: `bench-fake-${RUN_ID}`,
    };
  });
}

/** A `log` that says nothing (typed, so that callers may pass a real one). @type {(message: string) => void} */
export const quiet = () => undefined;

/** @typedef {import('node:child_process').ChildProcess & { stderrTail: () => string, exitedPromise: Promise<unknown> }} BenchChild */

/** @returns {Promise<number>} */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// Under .local/ (git- and lint-ignored, the repo's local state folder); package.json is linked, not copied,
// so jest's module map never sees a second package of the same name.
const BUILD_DIR = path.join(ROOT, '.local/bench/build');

function newestMtime(dir) {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * The production build of the current sources, compiled with the project's tsconfig into .local/bench/build
 * (what `nest build` does: plain tsc, no plugins or assets), so that a concurrent `npm run build` of dist/
 * cannot pull files from under the running processes. Recompiled only when src/ changed.
 */
export function buildApp(log = quiet) {
  const main = path.join(BUILD_DIR, 'dist/main.js');
  const stale = !fs.existsSync(main) || newestMtime(path.join(ROOT, 'src')) > fs.statSync(main).mtimeMs;
  if (stale) {
    log('compiling src/ into .local/bench/build/dist (tsc -p tsconfig.json)');
    fs.rmSync(path.join(BUILD_DIR, 'dist'), { recursive: true, force: true });
    tsc(ROOT, path.join(BUILD_DIR, 'dist'));
  }
  linkPackageJson(BUILD_DIR);
  return BUILD_DIR;
}

function linkPackageJson(dir) {
  const link = path.join(dir, 'package.json');
  fs.rmSync(link, { force: true });
  fs.symlinkSync(path.join(ROOT, 'package.json'), link);
}

function tsc(projectDir, outDir) {
  execFileSync(
    path.join(ROOT, 'node_modules/.bin/tsc'),
    ['-p', path.join(projectDir, 'tsconfig.json'), '--outDir', outDir],
    {
      cwd: projectDir,
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
}

/**
 * The build of an earlier commit, for measuring a code change side by side: .local/bench/ref-<sha>/dist,
 * cached per commit. The commit's whole tree is `git archive`d into a temporary directory (today's
 * node_modules linked in) and built by its own `npm run build`: its own Prisma client from its own
 * schema, its own OpenAPI types from its own controllers. Today's generated code does not fit an
 * earlier src/ once the schema or the API has changed since (a new enum value makes an exhaustive
 * switch of the old code fail to compile). The build's output goes to stderr: stdout is the report.
 */
export function buildRef(ref, log = quiet) {
  const sha = execFileSync('git', ['rev-parse', '--short', ref], { cwd: ROOT, encoding: 'utf8' }).trim();
  const dir = path.join(ROOT, `.local/bench/ref-${sha}`);
  if (!fs.existsSync(path.join(dir, 'dist/main.js'))) {
    log(`building ${ref} (${sha}) with its own npm run build into .local/bench/ref-${sha}/dist`);
    const src = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-src-'));
    try {
      const tree = execFileSync('git', ['archive', '--format=tar', sha], { cwd: ROOT, maxBuffer: 2 ** 30 });
      execFileSync('tar', ['-x', '-C', src], { input: tree });
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'));
      execFileSync('npm', ['run', '--silent', 'build'], { cwd: src, stdio: ['ignore', 2, 2] });
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { recursive: true });
      fs.cpSync(path.join(src, 'dist'), path.join(dir, 'dist'), { recursive: true });
    } finally {
      fs.rmSync(src, { recursive: true, force: true });
    }
  }
  linkPackageJson(dir);
  return { dir, sha };
}

/** Starts `node dist/main.js <role>`; resolves once /readyz answers (api) or after the ready line (worker). */
let backupDir;
/** The workers' `default` backup store: one empty directory per bench process, removed when it exits. */
function benchBackupDir() {
  if (!backupDir) {
    backupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vps-bench-backups-'));
    process.once('exit', () => fs.rmSync(backupDir, { recursive: true, force: true }));
  }
  return backupDir;
}

export async function startRole(role, env, dir = BUILD_DIR, nodeArgs = []) {
  const port = role === 'api' ? await freePort() : undefined;
  const child = /** @type {BenchChild} */ (spawn(process.execPath, [...nodeArgs, path.join(dir, 'dist/main.js'), role], {
    cwd: dir,
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_WRITES_PER_MINUTE: '1000000',
      RATE_LIMIT_ACCOUNT_PER_MINUTE: '1000000',
      RATE_LIMIT_ACCOUNT_WRITES_PER_MINUTE: '1000000',
      HOST: '127.0.0.1',
      // The worker needs one; benchmarks write no backups, so any key and an empty store will do.
      BACKUP_MASTER_KEY: crypto.randomBytes(32).toString('base64'),
      BACKUP_DIR: benchBackupDir(),
      ...(port ? { PORT: String(port) } : {}),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  }));
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  child.stderrTail = () => stderr;
  const exited = new Promise((r) => child.once('exit', r));
  child.exitedPromise = exited;
  if (role === 'api') {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`api exited: ${stderr}`);
      try {
        const r = await fetch(`${base}/readyz`);
        if (r.status === 200) return { child, base, port };
      } catch {
        /* not yet */
      }
      await sleep(100);
    }
    throw new Error(`api did not become ready: ${stderr}`);
  }
  await sleep(1500);
  if (child.exitCode !== null) throw new Error(`${role} exited: ${stderr}`);
  return { child };
}

export async function stop(child) {
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await child.exitedPromise;
  clearTimeout(t);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** RSS of a pid in bytes (from /proc), or null. */
export function rssOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Samples the RSS of a pid every `ms` until stopped; returns {max, samples}. */
export function rssSampler(pid, ms = 100) {
  const samples = [];
  const t = setInterval(() => {
    const v = rssOf(pid);
    if (v !== null) samples.push(v);
  }, ms);
  return {
    stop() {
      clearInterval(t);
      return { max: Math.max(0, ...samples), min: samples.length ? Math.min(...samples) : 0, samples };
    },
  };
}

/**
 * Samples the RSS of `pid` every 100 ms (`each(pid)` too, for the caller's own samples) until the action
 * `actionId` has succeeded or failed, or `timeoutMs` passed. Returns the samples ({t, rss} in ms and
 * bytes), the last status read and the seconds it took.
 */
export async function sampleUntilActionEnds({ databaseUrl, actionId, pid, timeoutMs, each = undefined }) {
  const samples = [];
  let status = null;
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    samples.push({ t: performance.now() - t0, rss: rssOf(pid) ?? 0 });
    each?.(pid);
    if (samples.length % 5 === 0) {
      status = await withClient(
        databaseUrl,
        async (c) => (await c.query(`SELECT status::text AS s FROM actions WHERE id = $1`, [actionId])).rows[0].s,
      );
      if (status === 'succeeded' || status === 'failed') break;
    }
    await sleep(100);
  }
  return { samples, status, seconds: (performance.now() - t0) / 1000 };
}

export function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  if (!a.length) return NaN;
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

export function percentile(xs, p) {
  const a = [...xs].sort((x, y) => x - y);
  if (!a.length) return NaN;
  return a[Math.min(a.length - 1, Math.ceil((p / 100) * a.length) - 1)];
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));

/** Deletes the Redis keys of this run's private queue prefixes (bench<pid>, benchq<pid>, benchw<pid>, benchs<pid>). */
export async function cleanRedis(redisUrl) {
  const { Redis } = await import('ioredis');
  const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    for (const p of ['bench', 'benchq', 'benchw', 'benchs']) {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${p}${RUN_ID}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}
