/**
 * `vps webhooks …` and `vps events list` (dist/customer-cli/main.js, as built by `npm run build`)
 * against the running API on real Postgres.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createNode, createTenant } from '../factories';
import { runProcess } from '../support/run-process';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');

describe('customer CLI `vps webhooks` and `vps events` against the running service', () => {
  let db: TestDatabase;
  let api: TestApi;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const vps = (args: string[]) =>
    runProcess(process.execPath, [CLI, ...args], { VPS_API_URL: api.url, VPS_API_TOKEN: tenant.token }, ROOT);

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    tenant = await createTenant(api.prisma, (await createNode(api.prisma)).id);
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  it('create prints the secret once; list and get do not; a refused URL exits 1 saying why; delete; events list', async () => {
    const usage = await vps(['webhooks', 'create']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--url is required/);

    const refused = await vps(['webhooks', 'create', '--url', 'https://169.254.169.254/']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/webhook_url_not_allowed/);

    const created = await vps([
      'webhooks',
      'create',
      '--url',
      'https://93.184.215.14/hook',
      '--events',
      'backup.failed,backup.corrupt',
    ]);
    expect(created.code).toBe(0);
    const secret = /^(whsec_\S+)$/m.exec(created.stdout)![1];
    expect(created.stdout).toMatch(/events:\s+backup\.failed,backup\.corrupt/);
    const id = Number(/webhook:\s+(\d+)/.exec(created.stdout)![1]);

    const list = await vps(['webhooks', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('https://93.184.215.14/hook');
    const get = await vps(['webhooks', 'get', String(id), '--json']);
    expect(JSON.parse(get.stdout)).toMatchObject({ id, status: 'enabled' });
    for (const out of [list.stdout, get.stdout]) expect(out).not.toContain(secret);

    await api.prisma
      .$executeRaw`SELECT emit_event(${tenant.account.id}, 'backup_policy.missed', '{"server_id": 1}'::jsonb)`;
    const events = await vps(['events', 'list']);
    expect(events.code).toBe(0);
    expect(events.stdout).toMatch(/backup_policy\.missed/);

    expect((await vps(['webhooks', 'delete', String(id)])).stdout).toContain(`webhook ${id} deleted`);
    const gone = await vps(['webhooks', 'get', String(id)]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/webhook_not_found|Webhook does not exist/);
  });
});
