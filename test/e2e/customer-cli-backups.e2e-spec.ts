/**
 * `vps backups …` (dist/customer-cli/main.js, as built by `npm run build`) against the running service:
 * the API and an in-process worker whose BACKUP_DATA_PATH is the recording double, real Postgres + Redis.
 */
import { INestApplicationContext } from '@nestjs/common';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createNode, createServer, createTenant } from '../factories';
import { RecordingDataPath, startWorkerWithDataPath } from '../support/backup-data-path-double';
import { runProcess } from '../support/run-process';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/customer-cli/main.js');

describe('customer CLI `vps backups` against the running service', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  const dataPath = new RecordingDataPath();
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
    worker = await startWorkerWithDataPath(testConfig(db, 'worker', { WORKER_NODE: node.name }), dataPath);
    tenant = await createTenant(api.prisma, node.id);
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  it.each([
    [['backups', 'delete'], /"backups delete" takes BACKUP_ID/],
    [['backups', 'restore', 'abc'], /BACKUP_ID must be a positive integer, got "abc"/],
    [['backups', 'create', '--server', '1'], /--name is required/],
    [['backups', 'list', '--kind', 'hourly'], /--kind must be manual, automatic, pre_restore/],
    [['actions', 'undo', 'abc'], /ACTION_ID must be a positive integer, got "abc"/],
  ])('usage error: vps %j exits 2', async (args, message) => {
    const r = await vps(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('create --wait, list, restore onto another server --wait, verify --wait, delete', async () => {
    const created = await vps([
      'backups',
      'create',
      '--server',
      String(tenant.server.id),
      '--name',
      'cli-1',
      '--wait',
    ]);
    expect(created.code).toBe(0);
    const id = Number(/backup (\d+) "cli-1"/.exec(created.stdout)![1]);
    expect(created.stdout).toContain(`backup ${id} completed: full, 8 MiB, 8 MiB stored`);

    const list = await vps(['backups', 'list', '--server', String(tenant.server.id)]);
    expect(list.code).toBe(0);
    const [header, row] = list.stdout.trimEnd().split('\n');
    expect(header).toMatch(
      /^ID\s+SERVER\s+NAME\s+KIND\s+STATUS\s+SIZE\s+STORED\s+MODE\s+CREATED\s+PROTECTED\s+LABELS\s+DESCRIPTION$/,
    );
    expect(row).toMatch(
      new RegExp(
        `^${id}\\s+.*cli-1\\s+manual\\s+completed\\s+8 MiB\\s+8 MiB\\s+full\\s+.*Z\\s+no\\s+-\\s+-$`,
      ),
    );

    const target = await createServer(api.prisma, tenant.account.id, tenant.server.nodeId);
    const restored = await vps([
      'backups',
      'restore',
      String(id),
      '--server',
      String(target.id),
      '--wait',
      '--json',
    ]);
    expect(restored.code).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({
      kind: 'restore_backup',
      status: 'succeeded',
      backup: { id },
    });
    expect(dataPath.restores.at(-1)).toMatchObject({ backup: { id }, target: { id: target.id } });

    const verified = await vps(['backups', 'verify', String(id), '--wait']);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(
      new RegExp(`^verifying backup ${id} "cli-1"\\nbackup ${id} "cli-1" verified at `),
    );

    const deleted = await vps(['backups', 'delete', String(id)]);
    expect({ code: deleted.code, stdout: deleted.stdout }).toEqual({
      code: 0,
      stdout: `backup ${id} deleted\n`,
    });
    const gone = await vps(['backups', 'delete', String(id)]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/Backup does not exist/);
  });

  it('actions get shows a restore’s safety copy; actions undo --wait puts it back; a create cannot be undone', async () => {
    const created = await vps([
      'backups',
      'create',
      '--server',
      String(tenant.server.id),
      '--name',
      'u',
      '--wait',
      '--json',
    ]);
    expect(created.code).toBe(0);
    const backupId = (JSON.parse(created.stdout) as { id: number }).id;
    const restored = await vps(['backups', 'restore', String(backupId), '--wait', '--json']);
    expect(restored.code).toBe(0);
    const restore = JSON.parse(restored.stdout) as { id: number; safety_copy: { type: string; id: number } };
    expect(restore.safety_copy).toMatchObject({ type: 'backup' });

    const shown = await vps(['actions', 'get', String(restore.id)]);
    expect(shown.stdout).toMatch(new RegExp(`safety copy: backup ${restore.safety_copy.id}, until \\d{4}-`));

    const undone = await vps(['actions', 'undo', String(restore.id), '--wait']);
    expect(undone.code).toBe(0);
    expect(undone.stdout).toMatch(
      new RegExp(
        `^undoing restore ${restore.id} of server .*\\nundid restore ${restore.id} of server .*\\(undo it in turn: vps actions undo \\d+\\)\\n$`,
      ),
    );
    expect(dataPath.restores.at(-1)).toMatchObject({ backup: { id: restore.safety_copy.id } });

    const create = await api.prisma.action.findFirstOrThrow({ where: { backupId, kind: 'create_backup' } });
    const refused = await vps(['actions', 'undo', String(create.id)]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cannot be undone: it is not a restore \(action_not_undoable\)/);
  });
});
