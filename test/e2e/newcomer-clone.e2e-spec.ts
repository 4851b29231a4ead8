/**
 * The README's two commands must work wherever a newcomer clones: as root in /root (mode 0700, which
 * the `postgres` and `libvirt-qemu` users cannot traverse), in a path with a space, with a private
 * TMPDIR. This clones the repository (the working tree's files laid over the clone, so uncommitted
 * changes are what is tested) into exactly such a place and proves, from the clone: its services start
 * on spare ports and a database is created and migrated there; a libvirt domain boots the tiny guest
 * that the clone's own lab and guest scripts make; and stop + purge remove what the clone made and
 * nothing else (the shared services keep answering).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import * as os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { Client } from 'pg';
import { describeLibvirt, libvirtAvailability, virsh } from '../libvirt/support/lab';

jest.setTimeout(240_000);

const ROOT = path.resolve(__dirname, '../..');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 180_000,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Exit code 0, or a failure that shows what the command said. */
function expectSuccess(what: string, r: Result): void {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}:\n${r.stderr}${r.stdout}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `git clone` of this repository, then the working tree's files (tracked or new, not ignored) over it. */
async function cloneWorkingTree(dest: string): Promise<void> {
  const git = (...args: string[]) =>
    spawnSync('git', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const cloned = git('clone', '--quiet', ROOT, dest);
  if (cloned.status !== 0) throw new Error(`git clone failed: ${cloned.stderr}`);
  const listed = git('-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard');
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    const from = path.join(ROOT, file);
    const to = path.join(dest, file);
    if (!existsSync(from)) {
      await fsp.rm(to, { force: true }); // deleted in the working tree
      continue;
    }
    await fsp.mkdir(path.dirname(to), { recursive: true });
    await fsp.cp(from, to, { force: true, verbatimSymlinks: true });
  }
}

function parsePaths(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('a clone in a private directory (mode-0700 parent, a space in its path)', () => {
  let parent: string;
  let clone: string;
  let env: NodeJS.ProcessEnv;
  let pgPort: number;
  let redisPort: number;
  const services = (...args: string[]) =>
    run('bash', [path.join(clone, 'scripts/services.sh'), ...args], clone, env);

  beforeAll(async () => {
    parent = await fsp.mkdtemp(path.join(os.tmpdir(), 'vpstest-newcomer-'));
    await fsp.chmod(parent, 0o700);
    clone = path.join(parent, 'my api');
    await cloneWorkingTree(clone);
    await fsp.symlink(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));
    const tmp = path.join(parent, 'tmp');
    await fsp.mkdir(tmp, { mode: 0o700 });
    [pgPort, redisPort] = [await freePort(), await freePort()];
    // A fresh terminal: nothing of this run's services, state folders or lab settings.
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LANG: 'C.UTF-8',
      TMPDIR: tmp,
      PG_PORT: String(pgPort),
      REDIS_PORT: String(redisPort),
      PG_FSYNC: 'off',
      ...(process.env.LIBVIRT_TEST_URI ? { LIBVIRT_TEST_URI: process.env.LIBVIRT_TEST_URI } : {}),
    };
  });

  afterAll(async () => {
    if (!clone) return;
    await services('stop', 'postgres', 'redis').catch(() => undefined);
    await services('purge').catch(() => undefined);
    await fsp.rm(parent, { recursive: true, force: true });
  });

  it('starts Postgres and Redis from the clone on spare ports; a database is created and migrated there', async () => {
    const started = await services('start', 'postgres', 'redis');
    expectSuccess('services.sh start', started);
    expect(started.stdout.split('\n')).toEqual(expect.arrayContaining(['started:postgres', 'started:redis']));

    const adminUrl = `postgresql://postgres@127.0.0.1:${pgPort}/postgres`;
    const admin = new Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE newcomer');
    } finally {
      await admin.end();
    }
    const dbUrl = `postgresql://postgres@127.0.0.1:${pgPort}/newcomer`;
    const migrated = await run(process.execPath, [path.join(clone, 'prisma/migrate.mjs')], clone, {
      ...env,
      DATABASE_URL: dbUrl,
    });
    expectSuccess('node prisma/migrate.mjs', migrated);
    const migrations = (await fsp.readdir(path.join(clone, 'prisma/migrations'))).filter(
      (n) => !n.endsWith('.toml'),
    );
    const db = new Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const applied = await db.query(
        'SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL',
      );
      expect(applied.rows[0].n).toBe(migrations.length);
    } finally {
      await db.end();
    }

    const redis = new Redis({
      host: '127.0.0.1',
      port: redisPort,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });

  describeLibvirt('the tiny guest of the clone under libvirt', () => {
    it("boots a domain from the kernel and disk the clone's guest and lab scripts make", async () => {
      const booted = await run(
        path.join(clone, 'node_modules/.bin/ts-node'),
        ['--transpile-only', 'test/libvirt/support/boot-tiny-guest.ts'],
        clone,
        env,
      );
      expectSuccess('boot-tiny-guest.ts', booted);
      const figures = JSON.parse(booted.stdout) as { guestDir: string; disk: string; bootMs: number };
      // What QEMU opens is outside the private directory.
      expect(figures.guestDir.startsWith(parent)).toBe(false);
      expect(figures.disk.startsWith(parent)).toBe(false);
      process.stderr.write(`newcomer clone: tiny guest ready ${figures.bootMs} ms after start\n`);
    });
  });

  it('stop and purge remove what the clone made, and only that', async () => {
    const paths = parsePaths((await run('bash', [path.join(clone, 'scripts/paths.sh')], clone, env)).stdout);
    expect(existsSync(paths.LOCAL_STATE_DIR)).toBe(true);
    expect(existsSync(paths.IMAGES_DIR)).toBe(libvirtAvailability().ok); // the guest test made it

    const refused = await services('purge');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('still running');
    expect(existsSync(paths.LOCAL_STATE_DIR)).toBe(true);

    const stopped = await services('stop', 'postgres', 'redis');
    expectSuccess('services.sh stop', stopped);
    if (libvirtAvailability().ok) {
      // A domain defined on a file in the image folder keeps it (as the demo domain of `npm run local`).
      const domain = `vpstest-purge-${process.pid}-1`;
      const xml = path.join(parent, 'tmp', `${domain}.xml`);
      await fsp.writeFile(
        xml,
        `<domain type='qemu'><name>${domain}</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os>` +
          `<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${paths.IMAGES_DIR}/disks/kept.qcow2'/>` +
          `<target dev='vda' bus='virtio'/></disk></devices></domain>`,
      );
      await virsh('define', xml);
      try {
        const kept = await services('purge');
        expect(kept.code).not.toBe(0);
        expect(kept.stderr).toContain(domain);
        expect(existsSync(paths.IMAGES_DIR) && existsSync(paths.LOCAL_STATE_DIR)).toBe(true);
      } finally {
        await virsh('undefine', '--domain', domain);
      }
    }
    expectSuccess('services.sh purge', await services('purge'));
    expect(existsSync(paths.LOCAL_STATE_DIR)).toBe(false);
    expect(existsSync(paths.IMAGES_DIR)).toBe(false);

    // The services this test run uses were not touched.
    const shared = new Client({ connectionString: process.env.DATABASE_ADMIN_URL });
    await shared.connect();
    try {
      expect((await shared.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      await shared.end();
    }
  });
});
