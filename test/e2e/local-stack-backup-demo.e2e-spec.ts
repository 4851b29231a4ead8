/**
 * `npm run local` backs the demo server up into the local backup directory and restores it: once its
 * API and worker are up, scripts/local.sh runs scripts/local-backup-demo.sh, which does both through
 * the API and a worker with the customer CLI. This runs that script against a stack of the tests (the
 * API, a worker of the fake driver, a backup directory of their own) as local.sh runs it, twice: the
 * backup is in the directory, the restore succeeded, and a second run replaces the demo backup rather
 * than adding one.
 */
import { INestApplicationContext } from '@nestjs/common';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TEST_BACKUP_DIR,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { runProcess } from '../support/run-process';

const ROOT = path.resolve(__dirname, '../..');
const SCRIPT = 'scripts/local-backup-demo.sh';

describe('`npm run local` backs the demo server up and restores it (real Postgres + Redis + worker)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/customer-cli/main.js')))
      throw new Error('dist/ is missing: run `npm run build` first');
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  it('scripts/local.sh runs the demo once the API is ready, with the demo token and server', () => {
    const local = readFileSync(path.join(ROOT, 'scripts/local.sh'), 'utf8');
    const call = local.indexOf(`bash ${SCRIPT} "$SERVER_ID"`);
    expect(call).toBeGreaterThan(local.indexOf('ready || {'));
    expect(local.slice(local.lastIndexOf('\n', call), call)).toMatch(/API_URL=.*API_TOKEN=/);
  });

  it('backs up into the backup directory and restores; a second run replaces the demo backup', async () => {
    const node = await createNode(api.prisma);
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: node.name }));
    const account = await createAccount(api.prisma);
    const { token } = await createToken(api.prisma, account.id);
    const server = await createServer(api.prisma, account.id, node.id, { name: 'web-server-01' });
    const env = {
      API_URL: api.url,
      API_TOKEN: token,
      BACKUP_DIR: TEST_BACKUP_DIR,
      VPS_POLL_INTERVAL_MS: '100',
    };
    const manifest = (id: number) =>
      path.join(TEST_BACKUP_DIR, 'accounts', String(account.id), 'manifests', String(id));
    const demo = async () => {
      const res = await runProcess('bash', [SCRIPT, String(server.id)], env, ROOT);
      expect(res.code === 0 ? 'ok' : res.stderr + res.stdout).toBe('ok');
      const id = Number(/^backup (\d+) "local-demo" of server web-server-01/.exec(res.stdout)?.[1]);
      expect(res.stdout).toContain(`backup ${id} completed: full`);
      expect(res.stdout).toContain(`restored server web-server-01 (${server.id}) from backup ${id}`);
      expect(res.stdout).toContain(`stored in ${TEST_BACKUP_DIR}`);
      expect(existsSync(manifest(id))).toBe(true);
      const restore = await api.prisma.action.findFirstOrThrow({
        where: { backupId: id, kind: 'restore_backup' },
      });
      expect(restore.status).toBe('succeeded');
      return { id, stdout: res.stdout };
    };

    const first = await demo();
    process.stderr.write(`local backup demo output:\n${first.stdout}`);
    const second = await demo();
    expect(second.id).not.toBe(first.id);
    // The restores' safety copies (kind pre_restore) stay for their kept time, so the restore can be undone.
    const live = await api.prisma.backup.findMany({
      where: { serverId: server.id, deletedAt: null, kind: { not: 'pre_restore' } },
    });
    expect(live.map((b) => b.id)).toEqual([second.id]);
    await eventually(async () => !existsSync(manifest(first.id)), 30_000);
  });
});
