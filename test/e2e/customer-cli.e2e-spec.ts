/**
 * The customer CLI `vps` (dist/customer-cli/main.js, as built by `npm run build`)
 * against the running service: the API and an in-process worker on a fake hypervisor node, real
 * Postgres + Redis. Each case spawns the built CLI with VPS_API_URL / VPS_API_TOKEN.
 */
import { INestApplicationContext } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { AddressInfo, createServer as createNetServer } from 'node:net';
import path from 'node:path';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER, HypervisorError } from '../../src/hypervisor/hypervisor-driver';
import { createNode, createServer, createTenant } from '../factories';
import {
  createTestDatabase,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { runProcess } from '../support/run-process';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');
const CREATE_MESSAGE = 'Snapshot is being created. This may take 3-10 minutes depending on server size.';

/** Runs the built CLI (asynchronously: the API and worker run in this process). */
const run = (command: string, args: string[], env: Record<string, string | undefined>) =>
  runProcess(command, args, env, ROOT);

describe('customer CLI `vps` against the running service (fake node, real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let nodeId: number;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const savedDelay = process.env.FAKE_DRIVER_DELAY_MS;

  const vps = (args: string[], env: Record<string, string | undefined> = {}) =>
    run(process.execPath, [CLI, ...args], {
      VPS_API_URL: api.url,
      VPS_API_TOKEN: tenant.token,
      VPS_POLL_INTERVAL_MS: '100',
      ...env,
    });

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    // Copies take 2 s in 4 progress steps, so --wait sees progress between 0 and 100 even under load.
    process.env.FAKE_DRIVER_DELAY_MS = '2000';
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: node.name }));
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    tenant = await createTenant(api.prisma, nodeId);
  });
  afterEach(() => driver?.clearFailures());
  afterAll(async () => {
    if (savedDelay === undefined) delete process.env.FAKE_DRIVER_DELAY_MS;
    else process.env.FAKE_DRIVER_DELAY_MS = savedDelay;
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  describe('usage errors exit 2', () => {
    it.each([
      [[], /usage: vps <command>/],
      [['snapshots'], /unknown command "snapshots"/],
      [['servers', 'destroy'], /unknown command "servers destroy"/],
      [['snapshots', 'delete'], /"snapshots delete" takes SNAPSHOT_ID/],
      [['snapshots', 'delete', 'abc'], /SNAPSHOT_ID must be a positive integer, got "abc"/],
      [['snapshots', 'restore', '1', '2'], /takes SNAPSHOT_ID only/],
      [['snapshots', 'create', '--name', 'x'], /--server is required/],
      [['snapshots', 'create', '--server', '1'], /--name is required/],
      [['snapshots', 'list', '--server', '0x10'], /--server must be a positive integer/],
      [['snapshots', 'list', '--bogus'], /Unknown option '--bogus'/],
      [['servers', 'list', '--wait'], /option --wait does not apply to "servers list"/],
      [['actions', 'get', '1', '--wait', '--timeout', 'soon'], /--timeout must be a positive number/],
    ])('vps %j', async (args, message) => {
      const r = await vps(args);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
      expect(r.stderr).toMatch(message);
    });

    it('without VPS_API_TOKEN', async () => {
      const r = await vps(['servers', 'list'], { VPS_API_TOKEN: undefined });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^vps: VPS_API_TOKEN is not set/);
    });

    it('--help prints the usage on stdout and exits 0', async () => {
      const r = await vps(['--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(
        'snapshots create --server ID --name NAME [--description TEXT] [--label K=V]... [--wait]',
      );
    });
  });

  describe('problem details: one clear line, exit 1', () => {
    it('404', async () => {
      const r = await vps(['snapshots', 'restore', '2147483647']);
      expect(r).toEqual({
        code: 1,
        stdout: '',
        stderr: 'error: Not Found - Snapshot does not exist (snapshot_not_found)\n',
      });
    });

    it('in Welsh under a Welsh locale', async () => {
      const r = await vps(['snapshots', 'delete', '2147483647'], { LANG: 'cy_GB.UTF-8' });
      expect(r.stderr).toBe("error: Heb ei Ganfod - Nid yw'r ciplun yn bodoli (snapshot_not_found)\n");
      expect(r.code).toBe(1);
    });

    it('401 for a bad token', async () => {
      const r = await vps(['servers', 'list'], {
        VPS_API_TOKEN: 'vps_0000000000000000000000000000000000000000',
      });
      expect(r).toEqual({
        code: 1,
        stdout: '',
        stderr: 'error: Unauthorized - Invalid or missing authentication token (unauthorized)\n',
      });
    });

    it('validation errors name the field', async () => {
      const r = await vps([
        'snapshots',
        'create',
        '--server',
        String(tenant.server.id),
        '--name',
        'bad name!',
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        'error: Bad Request - Invalid parameters (validation_failed): name: name must be 1-64 letters, digits, hyphens or underscores\n',
      );
    });

    it('an unreachable API', async () => {
      // A port nothing listens on.
      const port = await new Promise<number>((resolve) => {
        const srv = createNetServer().listen(0, '127.0.0.1', () => {
          const p = (srv.address() as AddressInfo).port;
          srv.close(() => resolve(p));
        });
      });
      const r = await vps(['servers', 'list'], { VPS_API_URL: `http://127.0.0.1:${port}` });
      expect(r).toEqual({
        code: 1,
        stdout: '',
        stderr: `error: cannot reach http://127.0.0.1:${port}: ECONNREFUSED (network_error)\n`,
      });
    });
  });

  it('servers list: a table for people, JSON for scripts', async () => {
    const table = await vps(['servers', 'list']);
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+STATUS\s+SNAPSHOTS\s+BACKUPS\s+CURRENT ACTION\s+CREATED\s+LABELS$/);
    expect(row).toMatch(
      new RegExp(
        `^${tenant.server.id}\\s+${tenant.server.name}\\s+running\\s+0/5\\s+0/10\\s+-\\s+\\d{4}-.*Z\\s+-$`,
      ),
    );
    const json = await vps(['servers', 'list', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({
        id: tenant.server.id,
        name: tenant.server.name,
        snapshot_quota: { limit: 5, used: 0 },
      }),
    ]);
  });

  it('lists follow every page', async () => {
    const t = await createTenant(api.prisma, nodeId);
    await api.prisma.snapshot.createMany({
      data: Array.from({ length: 57 }, (_, i) => ({
        accountId: t.account.id,
        serverId: t.server.id,
        name: `bulk-${i}`,
        status: 'completed' as const,
        progress: 100,
        sizeBytes: BigInt(1024 * 1024),
        createdAt: new Date(Date.UTC(2025, 0, 1, 0, i)),
        completedAt: new Date(Date.UTC(2025, 0, 1, 0, i)),
      })),
    });
    const json = await vps(['snapshots', 'list', '--json'], { VPS_API_TOKEN: t.token });
    expect(json.code).toBe(0);
    const names = (JSON.parse(json.stdout) as { name: string }[]).map((s) => s.name);
    expect(names).toEqual(Array.from({ length: 57 }, (_, i) => `bulk-${56 - i}`));
    const people = await vps(['snapshots', 'list', '--server', String(t.server.id)], {
      VPS_API_TOKEN: t.token,
    });
    expect(people.stdout.trimEnd().split('\n')).toHaveLength(58);
  });

  it('snapshots create --wait (not a terminal): progress lines, then the completed snapshot; list shows it', async () => {
    const r = await vps([
      'snapshots',
      'create',
      '--server',
      String(tenant.server.id),
      '--name',
      'before-update',
      '--description',
      'Snapshot before system update',
      '--wait',
    ]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    const lines = r.stderr.trimEnd().split('\n');
    const percents = lines.map((l) => Number(/ (\d+)%$/.exec(l)?.[1]));
    expect(
      lines.every((l) => /^snapshot \d+: create_snapshot (pending|running|succeeded) \d+%$/.test(l)),
    ).toBe(true);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(percents.some((p) => p > 0 && p < 100)).toBe(true);
    expect(lines.at(-1)).toMatch(/create_snapshot succeeded 100%$/);
    expect(r.stdout).toMatch(
      /^snapshot (\d+) "before-update" of server .+\nsnapshot \1 completed: \d+ MiB, (stopped|quiesced|crash_consistent)\n$/,
    );

    const list = await vps(['snapshots', 'list', '--server', String(tenant.server.id)]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(
      /^ID\s+SERVER\s+NAME\s+STATUS\s+SIZE\s+CREATED\s+PROTECTED\s+LABELS\s+DESCRIPTION\n/,
    );
    expect(list.stdout).toMatch(
      /before-update\s+completed\s+\d+ MiB\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+no\s+-\s+Snapshot before system update/,
    );
    const json = await vps(['snapshots', 'list', '--json']);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ name: 'before-update', status: 'completed', progress: 100 }),
    ]);
  });

  it('snapshots create without --wait prints the published message and the action to follow', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const r = await vps(['snapshots', 'create', '--server', String(t.server.id), '--name', 'quick'], {
      VPS_API_TOKEN: t.token,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^snapshot \\d+ "quick" of server ${t.server.name} \\(${t.server.id}\\): in_progress\\n${CREATE_MESSAGE.replace(/\./g, '\\.')}\\nfollow it: vps actions get (\\d+) --wait\\n$`,
      ),
    );
    const actionId = /actions get (\d+)/.exec(r.stdout)![1];
    const waited = await vps(['actions', 'get', actionId, '--wait', '--json'], { VPS_API_TOKEN: t.token });
    expect(waited.code).toBe(0);
    expect(JSON.parse(waited.stdout)).toMatchObject({
      id: Number(actionId),
      kind: 'create_snapshot',
      status: 'succeeded',
      progress: 100,
    });
    const shown = await vps(['actions', 'get', actionId], { VPS_API_TOKEN: t.token });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(
      /^action:\s+\d+\nkind:\s+create_snapshot\nstatus:\s+succeeded \[█+\] 100%\n/,
    );
  });

  it('snapshots create --json is the API response, with its action id', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const r = await vps(
      ['snapshots', 'create', '--server', String(t.server.id), '--name', 'scripted', '--json'],
      {
        VPS_API_TOKEN: t.token,
      },
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      name: 'scripted',
      status: 'in_progress',
      message: CREATE_MESSAGE,
      action_id: expect.any(Number),
    });
  });

  it('snapshots restore --wait --json, then delete', async () => {
    const t = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const env = { VPS_API_TOKEN: t.token };
    const created = await vps(
      ['snapshots', 'create', '--server', String(t.server.id), '--name', 'golden', '--wait', '--json'],
      env,
    );
    expect(created.code).toBe(0);
    const snapshot = JSON.parse(created.stdout) as { id: number; status: string; consistency: string };
    expect(snapshot).toMatchObject({ status: 'completed', consistency: 'stopped' });

    const restored = await vps(['snapshots', 'restore', String(snapshot.id), '--wait', '--json'], env);
    expect({ code: restored.code, stderr: restored.stderr }).toEqual({
      code: 0,
      stderr: expect.stringContaining('restore_snapshot succeeded 100%'),
    });
    expect(JSON.parse(restored.stdout)).toMatchObject({
      kind: 'restore_snapshot',
      status: 'succeeded',
      snapshot: { id: snapshot.id },
    });

    const people = await vps(['snapshots', 'restore', String(snapshot.id)], env);
    expect(people.code).toBe(0);
    expect(people.stdout).toContain(
      `restoring server ${t.server.name} (${t.server.id}) from snapshot ${snapshot.id} "golden"`,
    );
    expect(people.stdout).toContain('Server is being restored from snapshot. This may take 5-15 minutes.');
    // Busy: the restore just started holds the server.
    const busy = await vps(['snapshots', 'create', '--server', String(t.server.id), '--name', 'x'], env);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(
      /^error: Bad Request - Server is not in a valid state for snapshot.*\(invalid_server_state\)\n$/,
    );
    await vps(['actions', 'get', /actions get (\d+)/.exec(people.stdout)![1], '--wait'], env);

    const deleted = await vps(['snapshots', 'delete', String(snapshot.id)], env);
    expect(deleted).toEqual({ code: 0, stdout: `snapshot ${snapshot.id} deleted\n`, stderr: '' });
    const again = await vps(['snapshots', 'delete', String(snapshot.id), '--json'], env);
    expect(again).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: Not Found - Snapshot does not exist (snapshot_not_found)\n',
    });
    const none = await vps(['snapshots', 'list', '--server', String(t.server.id)], env);
    expect(none.stdout).toBe(`no snapshots of server ${t.server.id}\n`);
  });

  it('--wait exits 1 with the reason when the operation fails', async () => {
    const t = await createTenant(api.prisma, nodeId);
    driver.injectFailure({
      method: 'createSnapshot',
      mode: 'fail_always',
      error: new HypervisorError('insufficient_storage'),
    });
    const r = await vps(
      ['snapshots', 'create', '--server', String(t.server.id), '--name', 'doomed', '--wait'],
      {
        VPS_API_TOKEN: t.token,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/create_snapshot failed \d+%\n/);
    expect(r.stderr).toMatch(
      /\nerror: snapshot \d+ failed: There is not enough storage space on the host\. \(insufficient_storage\)\n$/,
    );
  });

  it('Ctrl-C while waiting stops waiting (130), and the operation goes on', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const child = spawn(
      process.execPath,
      [CLI, 'snapshots', 'create', '--server', String(t.server.id), '--name', 'interrupted', '--wait'],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          VPS_API_URL: api.url,
          VPS_API_TOKEN: t.token,
          VPS_POLL_INTERVAL_MS: '100',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    let sent = false;
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!sent && /create_snapshot (pending|running)/.test(stderr)) sent = child.kill('SIGINT');
      });
      child.on('close', resolve);
    });
    expect(code).toBe(130);
    const actionId = Number(
      /interrupted; action (\d+) goes on: vps actions get \1 --wait\n$/.exec(stderr)?.[1],
    );
    expect(actionId).toBeGreaterThan(0);
    const after = await vps(['actions', 'get', String(actionId), '--wait', '--json'], {
      VPS_API_TOKEN: t.token,
    });
    expect(JSON.parse(after.stdout)).toMatchObject({ id: actionId, status: 'succeeded' });
  });

  it('--wait on a terminal draws one live progress bar on stderr', async () => {
    const server = await createServer(api.prisma, tenant.account.id, nodeId);
    const command = [
      process.execPath,
      CLI,
      'snapshots',
      'create',
      '--server',
      String(server.id),
      '--name',
      'tty',
      '--wait',
    ]
      .map((a) => `'${a}'`)
      .join(' ');
    // `script` runs the CLI on a pseudo-terminal (stdout and stderr both), as in an interactive shell.
    const r = await run('script', ['-qfec', command, '/dev/null'], {
      VPS_API_URL: api.url,
      VPS_API_TOKEN: tenant.token,
      VPS_POLL_INTERVAL_MS: '100',
      TERM: 'xterm',
    });
    expect(r.code).toBe(0);
    const redraws = r.stdout.split('\r\x1b[2K').slice(1);
    expect(redraws.length).toBeGreaterThan(2);
    expect(redraws[0]).toMatch(/^\[[█░]{24}\] +\d+% snapshot \d+: create_snapshot (pending|running)/);
    expect(redraws.at(-1)).toMatch(/^\[█{24}\] 100% snapshot \d+: create_snapshot succeeded\r?\n/);
    expect(r.stdout).toMatch(/snapshot \d+ completed: \d+ MiB/);
  });
});
