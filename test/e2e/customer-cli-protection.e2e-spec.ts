/**
 * `vps snapshots|backups protect|unprotect` (dist/customer-cli/main.js, as built by `npm run build`)
 * against the running service, real Postgres + Redis: the protection set and shown, `delete` refused
 * with the API's `protected` problem (exit 1), then allowed once unprotected.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createNode, createTenant } from '../factories';
import { runProcess } from '../support/run-process';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');

describe('customer CLI `vps … protect|unprotect` against the running service', () => {
  let db: TestDatabase;
  let api: TestApi;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const vps = (args: string[], env: Record<string, string> = {}) =>
    runProcess(
      process.execPath,
      [CLI, ...args],
      { VPS_API_URL: api.url, VPS_API_TOKEN: tenant.token, ...env },
      ROOT,
    );

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    tenant = await createTenant(api.prisma, node.id, { serverStatus: 'stopped' });
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  async function seeded(kind: 'snapshots' | 'backups') {
    const data = {
      accountId: tenant.account.id,
      serverId: tenant.server.id,
      name: `cli-${kind}`,
      status: 'completed' as const,
      sizeBytes: 1024n,
    };
    const row =
      kind === 'snapshots'
        ? await api.prisma.snapshot.create({ data })
        : await api.prisma.backup.create({ data: { ...data, store: 'default' } });
    return row.id;
  }

  it.each([
    [['snapshots', 'protect'], /"snapshots protect" takes SNAPSHOT_ID/],
    [['backups', 'unprotect', 'abc'], /BACKUP_ID must be a positive integer, got "abc"/],
  ])('usage error: vps %j exits 2', async (args, message) => {
    const r = await vps(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it.each(['snapshots', 'backups'] as const)(
    '%s: protect, delete refused (exit 1, Welsh too), unprotect, delete',
    async (kind) => {
      const one = kind === 'snapshots' ? 'snapshot' : 'backup';
      const id = await seeded(kind);

      const protect = await vps([kind, 'protect', String(id)]);
      expect(protect).toMatchObject({ code: 0, stderr: '' });
      expect(protect.stdout.trim()).toBe(`${one} ${id} "cli-${kind}" is protected against deletion`);

      const json = await vps([kind, 'protect', String(id), '--json']);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ id, protection: { delete: true } });
      const listed = await vps([kind, 'list']);
      expect(listed.stdout).toMatch(/\sPROTECTED\s/);
      expect(listed.stdout).toMatch(new RegExp(`^${id}\\s.*\\syes\\s+-\\s+-$`, 'm'));

      const refused = await vps([kind, 'delete', String(id)]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `${one === 'snapshot' ? 'Snapshot' : 'Backup'} ${id} is protected against deletion; change its protection first (protected)`,
      );
      const cy = await vps([kind, 'delete', String(id)], { LANG: 'cy_GB.UTF-8' });
      expect(cy.code).toBe(1);
      expect(cy.stderr).toContain("wedi'i ddiogelu rhag cael ei ddileu");

      const unprotect = await vps([kind, 'unprotect', String(id)]);
      expect(unprotect.code).toBe(0);
      expect(unprotect.stdout.trim()).toBe(`${one} ${id} "cli-${kind}" can be deleted`);
      expect(await vps([kind, 'delete', String(id)])).toMatchObject({ code: 0 });
    },
  );

  it("another tenant's is not found (exit 1)", async () => {
    const id = await seeded('backups');
    const other = await createTenant(api.prisma, tenant.server.nodeId);
    const r = await vps(['backups', 'protect', String(id)], { VPS_API_TOKEN: other.token });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('(backup_not_found)');
  });
});
