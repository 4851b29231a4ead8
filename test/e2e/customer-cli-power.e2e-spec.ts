/**
 * `vps servers start|stop|shutdown|reboot` (dist/customer-cli/main.js, as built by `npm run build`)
 * against the running API and an in-process worker on a fake node, real Postgres + Redis.
 */
import { INestApplicationContext } from '@nestjs/common';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { createNode, createTenant } from '../factories';
import { runProcess } from '../support/run-process';
import {
  createTestDatabase,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');

describe('customer CLI `vps servers start|stop|shutdown|reboot`', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const vps = (args: string[]) =>
    runProcess(
      process.execPath,
      [CLI, ...args],
      { VPS_API_URL: api.url, VPS_API_TOKEN: tenant.token, VPS_POLL_INTERVAL_MS: '100' },
      ROOT,
    );

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    worker = await startWorker(
      testConfig(db, 'worker', { WORKER_NODE: node.name, POWER_STATE_INTERVAL_MS: '0' }),
    );
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    tenant = await createTenant(api.prisma, node.id, { serverStatus: 'stopped' });
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  it('start --wait, stop --wait --json, reboot without --wait; a failed shutdown exits 1 saying why', async () => {
    const s = tenant.server;
    const label = `server ${s.name} (${s.id})`;
    const started = await vps(['servers', 'start', String(s.id), '--wait']);
    expect(started).toMatchObject({ code: 0, stdout: `start of ${label} done\n` });
    expect(started.stderr).toMatch(/start_server succeeded/);

    const stopped = await vps(['servers', 'stop', String(s.id), '--wait', '--json']);
    expect(stopped.code).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ kind: 'stop_server', status: 'succeeded' });

    const servers = JSON.parse((await vps(['servers', 'list', '--json'])).stdout) as { status: string }[];
    expect(servers[0].status).toBe('stopped');

    const asked = await vps(['servers', 'reboot', String(s.id)]);
    expect(asked.code).toBe(0);
    const actionId = /follow it: vps actions get (\d+) --wait/.exec(asked.stdout)![1];
    expect(asked.stdout).toMatch(new RegExp(`^reboot of ${label.replace(/[()]/g, '\\$&')}: \\w+\\n`));
    expect((await vps(['actions', 'get', actionId, '--wait'])).code).toBe(0);

    // A guest that ignores the shutdown request.
    driver.defineDomain(s.domain, { running: true, gracefulShutdown: false, diskPath: s.diskPath });
    const refused = await vps(['servers', 'shutdown', String(s.id), '--wait']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `error: shutdown of ${label.replace(/[()]/g, '\\$&')} failed: The server did not shut down .*\\(shutdown_timeout\\)\\n$`,
      ),
    );
  });

  it('usage errors exit 2; another account’s server is 404, exit 1', async () => {
    expect((await vps(['servers', 'start'])).code).toBe(2);
    expect((await vps(['servers', 'start', 'abc'])).code).toBe(2);
    const other = await vps(['servers', 'stop', '999999']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/\(server_not_found\)/);
  });
});
