/**
 * `vps ... --label K=V` on create, `vps ... label ID --label K=V` (replace), `--selector` on the lists,
 * against the running service (no worker: creates stay pending). The API checks the labels and the
 * selector; the CLI prints its refusal and exits 1.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createNode, createTenant } from '../factories';
import { runProcess } from '../support/run-process';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');

describe('customer CLI labels and selectors against the running service', () => {
  let db: TestDatabase;
  let api: TestApi;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const vps = (args: string[]) =>
    runProcess(process.execPath, [CLI, ...args], { VPS_API_URL: api.url, VPS_API_TOKEN: tenant.token }, ROOT);
  const json = async (args: string[]) => {
    const r = await vps([...args, '--json']);
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
    return JSON.parse(r.stdout) as { id: number; name: string; labels: Record<string, string> }[];
  };

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

  it.each([
    [['snapshots', 'label', '1', '--label', 'novalue'], /--label must be KEY=VALUE, got "novalue"/],
    [['servers', 'label', '1', '--label', 'a=1', '--label', 'a=2'], /--label a is given twice/],
    [['servers', 'list', '--selector'], /--selector/],
  ])('usage error: vps %j exits 2', async (args, message) => {
    const r = await vps(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('create with --label, list with --selector, relabel, and the API’s refusals', async () => {
    const server = String(tenant.server.id);
    const created = await vps([
      'snapshots',
      'create',
      '--server',
      server,
      '--name',
      'lab',
      '--label',
      'env=prod',
      '--label',
      'example.com/owner=db-team',
    ]);
    expect(created.code).toBe(0);
    const [snap] = await json(['snapshots', 'list', '--selector', 'env=prod']);
    expect(snap.labels).toEqual({ env: 'prod', 'example.com/owner': 'db-team' });
    expect(await json(['snapshots', 'list', '--selector', 'env!=prod'])).toEqual([]);
    const people = await vps(['snapshots', 'list', '--selector', 'env=prod']);
    const [header, row] = people.stdout.trimEnd().split('\n');
    expect(header).toMatch(/\sPROTECTED\s+LABELS\s+DESCRIPTION$/);
    expect(row).toMatch(/Z\s+no\s+env=prod,example\.com\/owner=db-team\s+-$/);

    const relabelled = await vps(['snapshots', 'label', String(snap.id), '--label', 'env=dev']);
    expect(relabelled.stdout.trim()).toBe(`snapshot ${snap.id} labels: env=dev`);
    expect((await json(['snapshots', 'list', '--selector', 'env in (dev)'])).map((s) => s.id)).toEqual([
      snap.id,
    ]);
    const cleared = await vps(['servers', 'label', server]);
    expect(cleared.stdout.trim()).toBe(`server ${server} labels: (none)`);
    await vps(['servers', 'label', server, '--label', 'tier=db']);
    expect((await json(['servers', 'list', '--selector', 'tier=db'])).map((s) => s.id)).toEqual([
      tenant.server.id,
    ]);
    expect((await vps(['servers', 'list'])).stdout.trimEnd().split('\n')[1]).toMatch(/Z\s+tier=db$/);
    expect(await json(['backups', 'list', '--selector', '!tier'])).toEqual([]);

    const bad = await vps(['snapshots', 'list', '--selector', 'env in (a']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid_label_selector/);
    const badLabel = await vps(['backups', 'create', '--server', server, '--name', 'b', '--label', 'x=a b']);
    expect(badLabel.code).toBe(1);
    expect(badLabel.stderr).toMatch(/validation_failed.*labels: label "x" has a value/);
  });
});
