/**
 * Which backup store a node uses: a name from configuration (BACKUP_DIR is `default`, BACKUP_STORES the
 * others), refused with a 400 when unknown, through the admin API and the operator CLI alike; the
 * registry hands out the configured store for a node. Invalid store configuration stops the process.
 * The CLI and main run from dist/ (npm run build first).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { BackupStoreRegistry } from '../../src/backup-store/backup-store.registry';
import { DirectoryStore, TEMP_DIR } from '../../src/backup-store/directory-store';
import { BACKUP_STORES } from '../../src/backups/data/backup-stores';
import { createAccount, createToken } from '../factories';
import { expectProblem } from '../support/problem-assertions';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const DIST = path.resolve(__dirname, '../../dist');

describe('node backup stores', () => {
  let db: TestDatabase;
  let api: TestApi;
  let admin: Record<string, string>;
  let root: string;
  let seq = 0;
  const unique = (p: string) => `${p}-${process.pid}-${++seq}`;
  const storesEnv = () => ({
    BACKUP_DIR: path.join(root, 'default'),
    BACKUP_STORES: JSON.stringify({ nfs: { kind: 'directory', path: path.join(root, 'nfs') } }),
  });

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'node-backup-store-'));
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', storesEnv()));
    const account = await createAccount(api.prisma);
    admin = {
      Authorization: `Bearer ${(await createToken(api.prisma, account.id, { scopes: ['admin'] })).token}`,
    };
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
    await rm(root, { recursive: true, force: true });
  });

  const postNode = (extra: Record<string, unknown>) =>
    request(api.url)
      .post('/api/v1/admin/nodes/')
      .set(admin)
      .send({ name: unique('hv'), driver: 'fake', snapshot_dir: `/srv/${unique('snap')}`, ...extra });

  it('a node uses "default" unless told; a configured name is accepted and shown', async () => {
    const plain = await postNode({});
    expect(plain.status).toBe(201);
    expect(plain.body.backup_store).toBe('default');
    const nfs = await postNode({ backup_store: 'nfs' });
    expect(nfs.status).toBe(201);
    expect(nfs.body.backup_store).toBe('nfs');
    const list = await request(api.url).get('/api/v1/admin/nodes/').set(admin);
    expect(list.body.results.find((n: { id: number }) => n.id === nfs.body.id).backup_store).toBe('nfs');
  });

  it('an unknown or malformed store name is a 400 naming the field, and no node is written', async () => {
    const before = await api.prisma.node.count();
    for (const backup_store of ['offsite', 'Bad Name', 7]) {
      const res = await postNode({ backup_store });
      expectProblem(res, 400, 'validation_failed');
      expect((res.body.errors as { field: string }[]).map((e) => e.field)).toEqual(['backup_store']);
    }
    expect(await api.prisma.node.count()).toBe(before);
  });

  it("PATCH backup_store moves a node's next backups to another configured store, audited", async () => {
    const created = await postNode({});
    const patch = (id: unknown, body: unknown) =>
      request(api.url)
        .patch(`/api/v1/admin/nodes/${String(id)}/`)
        .set(admin)
        .send(body as object);
    const moved = await patch(created.body.id, { backup_store: 'nfs' });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ id: created.body.id, backup_store: 'nfs' });
    expectProblem(await patch(created.body.id, { backup_store: 'offsite' }), 400, 'validation_failed');
    expectProblem(await patch(created.body.id, {}), 400, 'validation_failed');
    expectProblem(await patch(created.body.id, { backup_store: 'nfs', name: 'x' }), 400, 'validation_failed');
    expectProblem(await patch(2_000_000_000, { backup_store: 'nfs' }), 404, 'node_not_found');
    expect((await api.prisma.node.findUniqueOrThrow({ where: { id: created.body.id } })).backupStore).toBe(
      'nfs',
    );
    const audit = await api.prisma.auditEvent.findMany({
      where: { action: 'node.update', targetId: created.body.id },
      orderBy: { id: 'asc' },
    });
    expect(audit.map((a) => a.outcome)).toEqual(['accepted', 'refused', 'refused', 'refused']);
    expect(audit[0].detail).toMatchObject({ backup_store: 'nfs' });
  });

  it('the registry gives a node its configured store, by id or row; an unconfigured one is unavailable', async () => {
    const registry = api.app.get(BackupStoreRegistry);
    const nfs = await postNode({ backup_store: 'nfs' });
    const { name, store } = await registry.forNode(nfs.body.id as number);
    expect(name).toBe('nfs');
    expect(store).toBeInstanceOf(DirectoryStore);
    expect((store as DirectoryStore).root).toBe(path.join(root, 'nfs'));
    expect((await registry.forNode({ backupStore: 'nfs' })).store).toBe(store);
    // The data path's BACKUP_STORES is the registry.
    expect(api.app.get(BACKUP_STORES)).toBe(registry);
    // A name the configuration lost since (another process' configuration): unavailable, never a guess.
    await expect(registry.forNode({ backupStore: 'gone' })).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('a worker sweeps stale temporary files of its directory stores at start-up; the API does not', async () => {
    const { mkdir, readdir, utimes, writeFile } = await import('node:fs/promises');
    const temp = path.join(root, 'nfs', TEMP_DIR);
    await mkdir(temp, { recursive: true });
    const old = new Date(Date.now() - 2 * 3_600_000);
    for (const name of ['stale', 'fresh']) await writeFile(path.join(temp, name), 'half-written');
    await utimes(path.join(temp, 'stale'), old, old);
    await new BackupStoreRegistry(testConfig(db, 'api', storesEnv()), api.prisma).onApplicationBootstrap();
    expect((await readdir(temp)).sort()).toEqual(['fresh', 'stale']);
    const worker = new BackupStoreRegistry(
      testConfig(db, 'worker', { ...storesEnv(), WORKER_NODE: 'hv-sweep' }),
      api.prisma,
    );
    await worker.onApplicationBootstrap();
    expect(await readdir(temp)).toEqual(['fresh']);
  });

  describe('operator CLI', () => {
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.join(DIST, 'cli/main.js'), ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url, ...storesEnv() },
        encoding: 'utf8',
      });

    it("node create --backup-store refuses unknown names; set-backup-store moves a node's next backups", async () => {
      const name = unique('cli-hv');
      const refused = cli(['node', 'create', name, '--driver', 'fake', '--backup-store', 'offsite']);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toContain('backup_store must be a configured store: default, nfs');
      expect(cli(['node', 'create', name, '--driver', 'fake', '--backup-store', 'nfs']).status).toBe(0);
      expect((await api.prisma.node.findUniqueOrThrow({ where: { name } })).backupStore).toBe('nfs');

      const moved = cli(['node', 'set-backup-store', name, 'default']);
      expect(moved.stdout.trim()).toBe('default');
      expect((await api.prisma.node.findUniqueOrThrow({ where: { name } })).backupStore).toBe('default');
      const audit = await api.prisma.auditEvent.findFirst({
        where: { action: 'node.update' },
        orderBy: { id: 'desc' },
      });
      expect(audit?.detail).toMatchObject({ name, backup_store: { from: 'nfs', to: 'default' } });
    });
  });

  it('invalid store configuration stops the process (78) without echoing secrets', () => {
    const secret = 'do-not-print-this-secret-0001';
    const res = spawnSync(process.execPath, [path.join(DIST, 'main.js'), 'api'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: db.url,
        REDIS_URL: process.env.REDIS_URL,
        BACKUP_STORES: JSON.stringify({ s3: { kind: 's3', bucket: 'b-1', secretAccessKey: secret } }),
      },
      encoding: 'utf8',
    });
    expect(res.status).toBe(78);
    expect(res.stderr).toContain('BACKUP_STORES "s3" has unknown fields: secretAccessKey');
    expect(res.stderr + res.stdout).not.toContain(secret);
  });
});
