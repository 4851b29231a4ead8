/**
 * Real-process fault tests: the API and the worker run as child processes from `dist/`,
 * exactly as in production, against a private Redis and a private database, and every dependency is
 * reached through a TCP proxy the test controls, so "Postgres down" or "Redis down" is a real refused
 * connection for the application while the shared services (scripts/services.sh) are never touched.
 *
 * Each test file builds one `FaultLab`: a fresh database copied from the migrated template, its own
 * `redis-server` (stopped by pid), a proxy in front of each, a fake node, and helpers to seed tenants,
 * call the API, wait for outcomes and record the figures that docs/reliability.md reports.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { nodeQueueName } from '../../../src/jobs/job-queue';
import { PrismaService } from '../../../src/prisma/prisma.service';
import { createAccount, createNode, createServer, createToken } from '../../factories';
import {
  createTestDatabase,
  eventually,
  TEST_BACKUP_DIR,
  TEST_BACKUP_MASTER_KEY,
  TEST_WEBHOOK_SECRET_KEY,
  TestDatabase,
  testConfig,
} from '../../support/test-env';

export { eventually };

export const ROOT = path.resolve(__dirname, '../../..');
/** The production build; `FAULT_APP_DIST` points at another build of the same sources (e.g. a private copy). */
const MAIN = path.join(path.resolve(ROOT, process.env.FAULT_APP_DIST ?? 'dist'), 'main.js');

/** Knobs that make recovery fast enough for a test (all exist in src/config/app-config.ts). */
export const FAST_RECOVERY: Record<string, string> = {
  JOB_LOCK_MS: '2000',
  JOB_STALLED_INTERVAL_MS: '1000',
  JOB_BACKOFF_MS: '100',
  DISPATCH_INTERVAL_MS: '200',
  REAPER_INTERVAL_MS: '500',
  ACTION_STALE_MS: '3000',
  HEARTBEAT_INTERVAL_MS: '500',
  PROGRESS_WRITE_INTERVAL_MS: '200',
  STOP_GRACE_SECONDS: '1',
};

// ------------------------------------------------------------------------------------------ ports

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ------------------------------------------------------------------------------------------ proxy

/**
 * A TCP proxy between the application and a dependency. `cut()` drops every open connection and stops
 * listening (new connections are refused: the dependency is "down" for the application only);
 * `restore()` listens again on the same port.
 */
export class TcpProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  /** Connections accepted since start (a figure for the report). */
  connections = 0;
  cuts = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  get up(): boolean {
    return this.server !== undefined;
  }

  async start(port = this.port): Promise<this> {
    const server = net.createServer((client) => this.forward(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }

  private forward(client: net.Socket): void {
    this.connections++;
    const upstream = net.connect(this.targetPort, this.targetHost);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** The dependency goes away: open connections reset, new ones refused. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.cuts++;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  async restore(): Promise<void> {
    if (!this.server) await this.start(this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

// ------------------------------------------------------------------------------------------ redis

/** A private `redis-server` for one test file, stopped by its pid. */
export class PrivateRedis {
  private proc?: ChildProcess;
  port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.port = await freePort();
    this.proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    await eventually(() => canConnect(this.port), 10_000);
    return this;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc?.pid || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    process.kill(proc.pid, 'SIGTERM');
    await exited;
  }
}

// ------------------------------------------------------------------------------------------ processes

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `node dist/main.js api|worker` as a child process; its output is kept for failure messages. */
export class AppProcess {
  private static readonly all = new Set<AppProcess>();
  readonly output: string[] = [];
  readonly exited: Promise<Exit>;
  private exit?: Exit;

  private constructor(
    readonly role: 'api' | 'worker' | 'webhooks',
    readonly proc: ChildProcess,
    readonly url: string | null,
  ) {
    AppProcess.all.add(this);
    const keep = (chunk: Buffer) => {
      this.output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      if (this.output.length > 400) this.output.splice(0, this.output.length - 400);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        AppProcess.all.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  static spawn(
    role: 'api' | 'worker' | 'webhooks',
    env: Record<string, string>,
    url: string | null = null,
  ): AppProcess {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    const proc = spawn(process.execPath, [MAIN, role], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new AppProcess(role, proc, url);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) process.kill(this.pid, sig);
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  /** Waits for the exit, or fails after `timeoutMs` (the process is then killed). */
  async waitExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      await this.kill();
      throw new Error(`${this.role} did not exit within ${timeoutMs} ms\n${this.tail()}`);
    }
    return r;
  }

  tail(lines = 30): string {
    return `--- last output of ${this.role} (pid ${this.proc.pid}) ---\n${this.output.slice(-lines).join('\n')}`;
  }

  /** Kills every child still running (afterAll safety net). */
  static async killAll(): Promise<void> {
    await Promise.all([...AppProcess.all].map((p) => p.kill()));
  }
}

// ------------------------------------------------------------------------------------------ http

export type Json = Record<string, unknown>;

export interface HttpResult {
  status: number;
  headers: Headers;
  body: Json;
  text: string;
}

/** One HTTP request, without connection reuse (each request stands alone, as in a fault test). */
export async function http(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const headers: Record<string, string> = { connection: 'close', ...(init.headers ?? {}) };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  }
  const res = await fetch(url, {
    method: init.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
    signal: AbortSignal.timeout(init.timeoutMs ?? 15_000),
  });
  const text = await res.text();
  let parsed: Json = {};
  try {
    parsed = text ? (JSON.parse(text) as Json) : {};
  } catch {
    parsed = { _raw: text };
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Status + body in one object, so a failing expectation prints both. */
export const shown = (r: HttpResult) => ({ status: r.status, body: r.body });

// ------------------------------------------------------------------------------------------ figures

export interface Figures {
  /** Guarantee (short), as in docs/reliability.md. */
  guarantee: string;
  file: string;
  test: string;
  faults: number;
  checked: number;
  lost: number;
  ms?: number;
  note?: string;
}

/** Appends the figures of one test to `FAULT_FIGURES_FILE` (default `.local/fault-figures.jsonl`). */
export function recordFigures(f: Figures): void {
  const file = process.env.FAULT_FIGURES_FILE ?? path.join(ROOT, '.local/fault-figures.jsonl');
  mkdirSync(path.dirname(file), { recursive: true });
  appendFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), ...f })}\n`);
}

// ------------------------------------------------------------------------------------------ the lab

export interface Tenant {
  accountId: number;
  tokenId: number;
  token: string;
  serverId: number;
  auth: Record<string, string>;
}

/**
 * One test file's world: database, private Redis, proxies, a fake node, and the processes started
 * through it. `close()` kills what is left and drops everything.
 */
export class FaultLab {
  db!: TestDatabase;
  prisma!: PrismaService;
  redis!: PrivateRedis;
  pgProxy!: TcpProxy;
  redisProxy!: TcpProxy;
  /** A direct (not proxied) Redis connection for the test's own inspection. */
  inspector!: Redis;
  nodeId!: number;
  nodeName!: string;
  readonly queuePrefix = `fault-${randomBytes(4).toString('hex')}`;
  private queue?: Queue;
  private queueConnection?: Redis;

  static async create(): Promise<FaultLab> {
    const lab = new FaultLab();
    lab.db = await createTestDatabase();
    lab.prisma = new PrismaService(testConfig(lab.db, 'cli'));
    lab.redis = await new PrivateRedis().start();
    lab.redisProxy = await new TcpProxy(lab.redis.port).start();
    const pg = new URL(process.env.DATABASE_ADMIN_URL!);
    lab.pgProxy = await new TcpProxy(Number(pg.port || 5432), pg.hostname).start();
    lab.inspector = new Redis(lab.redis.url, { maxRetriesPerRequest: 1 });
    const node = await createNode(lab.prisma, { snapshotDir: `/tmp/vps-fault-snapshots-${lab.queuePrefix}` });
    lab.nodeId = node.id;
    lab.nodeName = node.name;
    return lab;
  }

  /** The database URL the application processes use: through the Postgres proxy. */
  get appDatabaseUrl(): string {
    const u = new URL(this.db.url);
    u.hostname = '127.0.0.1';
    u.port = String(this.pgProxy.port);
    return u.toString();
  }

  get appRedisUrl(): string {
    return `redis://127.0.0.1:${this.redisProxy.port}`;
  }

  baseEnv(extra: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.appDatabaseUrl,
      REDIS_URL: this.appRedisUrl,
      QUEUE_PREFIX: this.queuePrefix,
      LOG_LEVEL: process.env.FAULT_LOG_LEVEL ?? 'warn',
      BACKUP_MASTER_KEY: TEST_BACKUP_MASTER_KEY,
      WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
      BACKUP_DIR: TEST_BACKUP_DIR,
      // The fake driver defines the servers' domains stopped whatever their rows say: reconciling would
      // rewrite the statuses these tests set up (test/e2e/power-state covers reconciliation).
      POWER_STATE_INTERVAL_MS: '0',
      ...FAST_RECOVERY,
      ...extra,
    };
  }

  /** Starts `node dist/main.js api` on a free port and waits until /healthz answers. */
  async startApi(extra: Record<string, string> = {}): Promise<AppProcess> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const p = AppProcess.spawn('api', this.baseEnv({ HOST: '127.0.0.1', PORT: String(port), ...extra }), url);
    try {
      await eventually(async () => {
        if (!p.alive) throw new Error('exited');
        return (await http(`${url}/healthz`, { timeoutMs: 1000 })).status === 200;
      }, 30_000);
    } catch (e) {
      await p.kill();
      throw new Error(`API did not start: ${String(e)}\n${p.tail()}`);
    }
    return p;
  }

  /** Starts `node dist/main.js worker` for the lab's node and waits until its BullMQ worker is registered. */
  async startWorker(extra: Record<string, string> = {}): Promise<AppProcess> {
    // Redis client ids only grow: a worker connection with a higher id than now is the new process's
    // (counting workers would race with the connection of a just-killed worker going away).
    const floor = Number(await this.inspector.client('ID'));
    const p = AppProcess.spawn('worker', this.baseEnv({ WORKER_NODE: this.nodeName, ...extra }));
    try {
      await eventually(async () => {
        if (!p.alive) throw new Error('exited');
        return (await this.nodeQueue().getWorkers()).some((w) => Number(w.id) > floor);
      }, 30_000);
    } catch (e) {
      await p.kill();
      throw new Error(`worker did not start: ${String(e)}\n${p.tail()}`);
    }
    return p;
  }

  /** Starts `node dist/main.js webhooks` (the webhook sender) and waits until it says it runs. */
  async startWebhookSender(extra: Record<string, string> = {}): Promise<AppProcess> {
    const p = AppProcess.spawn('webhooks', this.baseEnv(extra));
    try {
      await eventually(async () => {
        if (!p.alive) throw new Error('exited');
        return p.output.some((line) => line.includes('webhook sender running'));
      }, 30_000);
    } catch (e) {
      await p.kill();
      throw new Error(`webhook sender did not start: ${String(e)}\n${p.tail()}`);
    }
    return p;
  }

  /** The node's BullMQ queue, read directly from the private Redis (never through the proxy). */
  nodeQueue(): Queue {
    this.queueConnection ??= new Redis(this.redis.url, { maxRetriesPerRequest: null });
    this.queue ??= new Queue(nodeQueueName(this.nodeId), {
      connection: this.queueConnection,
      prefix: this.queuePrefix,
    });
    return this.queue;
  }

  /** Where an action is, for failure messages: its row and its job's state in the queue. */
  async describeAction(actionId: number): Promise<string> {
    const a = await this.prisma.action.findUnique({ where: { id: actionId } });
    const job = await this.nodeQueue().getJob(`action-${actionId}`);
    const state = job ? await job.getState() : 'no job';
    return (
      `action ${actionId}: ${a?.kind} ${a?.status}, attempts ${a?.attempts}, heartbeat ${a?.heartbeatAt?.toISOString()}` +
      ` (now ${new Date().toISOString()}); queue job: ${state}` +
      (job ? `, attemptsMade ${job.attemptsMade}, stalledCounter ${job.stalledCounter}` : '')
    );
  }

  /** An account with a read/write token and one server on the lab's node. */
  async tenant(opts: { serverStatus?: 'running' | 'stopped' } = {}): Promise<Tenant> {
    const account = await createAccount(this.prisma);
    const { token, row } = await createToken(this.prisma, account.id);
    const server = await createServer(this.prisma, account.id, this.nodeId, { status: opts.serverStatus });
    return {
      accountId: account.id,
      tokenId: row.id,
      token,
      serverId: server.id,
      auth: { Authorization: `Bearer ${token}` },
    };
  }

  async addServer(t: Tenant, status: 'running' | 'stopped' = 'running'): Promise<number> {
    return (await createServer(this.prisma, t.accountId, this.nodeId, { status })).id;
  }

  /** Waits until the action is finished (succeeded or failed) and returns its row. */
  async finishedAction(actionId: number, timeoutMs = 30_000) {
    return eventually(async () => {
      const a = await this.prisma.action.findUnique({ where: { id: actionId } });
      return a && (a.status === 'succeeded' || a.status === 'failed') ? a : null;
    }, timeoutMs);
  }

  async actionStatus(actionId: number): Promise<string | undefined> {
    return (await this.prisma.action.findUnique({ where: { id: actionId }, select: { status: true } }))
      ?.status;
  }

  async close(): Promise<void> {
    await AppProcess.killAll();
    await this.queue?.close().catch(() => undefined);
    this.queueConnection?.disconnect();
    this.inspector?.disconnect();
    await this.pgProxy?.close();
    await this.redisProxy?.close();
    await this.redis?.stop();
    await this.prisma?.$disconnect();
    await this.db?.drop();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------ api calls

export function createSnapshot(
  api: AppProcess,
  t: Tenant,
  serverId: number,
  opts: { name?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult> {
  return http(`${api.url}/api/v1/snapshots/`, {
    headers: { ...t.auth, ...(opts.headers ?? {}) },
    body: { server_id: serverId, name: opts.name ?? 'fault-test' },
    timeoutMs: opts.timeoutMs,
  });
}

export function restoreSnapshot(
  api: AppProcess,
  t: Tenant,
  snapshotId: number,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  return http(`${api.url}/api/v1/snapshots/${snapshotId}/restore/`, {
    method: 'POST',
    headers: { ...t.auth, ...headers },
  });
}

export function deleteSnapshot(api: AppProcess, t: Tenant, snapshotId: number): Promise<HttpResult> {
  return http(`${api.url}/api/v1/snapshots/${snapshotId}/`, { method: 'DELETE', headers: t.auth });
}

export function listSnapshots(api: AppProcess, t: Tenant): Promise<HttpResult> {
  return http(`${api.url}/api/v1/snapshots/`, { headers: t.auth });
}
