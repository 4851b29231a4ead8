/**
 * Backup storage outlives the database and the master key: after the database loses every backup row,
 * chunk reference and account key, `backups reindex` rebuilds them from the store's manifests alone
 * and the backups restore byte for byte (and keep sharing chunks correctly); after `backups
 * rotate-master-key`, a worker with only the new key restores them. Through the API, a worker on the
 * fake driver, the directory store, and the operator CLI from dist/ (npm run build first).
 */
import { INestApplicationContext } from '@nestjs/common';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { chunkKey } from '../../src/backups/data/backup-layout';
import { sealedKeyId } from '../../src/backups/data/sealed-box';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

type Json = Record<string, unknown>;
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
const MiB = 1024 * 1024;
/** Each test starts the operator CLI (a Nest process) several times and a worker or two. */
const TEST_TIMEOUT_MS = 300_000;

describe('backup recovery: reindex a store after losing the database; rotate the master key', () => {
  let db: TestDatabase;
  let api: TestApi;
  let root: string;
  let storeDir: string;
  let worker: INestApplicationContext | null = null;
  const oldKey = randomBytes(32).toString('base64');
  const newKey = randomBytes(32).toString('base64');
  let nodeName: string;
  let auth: Record<string, string>;
  let accountId: number;
  let source: { id: number; domain: string };
  let orphan: { id: number; domain: string };
  const backups: Record<string, number> = {};
  const disks: Record<string, Buffer> = {};

  const env = (masterKeys: Record<string, string>) => ({ BACKUP_DIR: storeDir, ...masterKeys });
  const cli = (args: string[], masterKeys: Record<string, string>) =>
    spawnSync(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, DATABASE_URL: db.url, ...env(masterKeys) },
      encoding: 'utf8',
    });
  const startNodeWorker = async (masterKeys: Record<string, string>): Promise<FakeHypervisorDriver> => {
    await worker?.close();
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeName, ...env(masterKeys) }));
    return worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
  };
  const http = () => request(api.url);
  const done = (actionId: number, as = auth) =>
    eventually(async () => {
      const a = (await http().get(`/api/v1/actions/${actionId}/`).set(as)).body as Json;
      return a.status === 'succeeded' || a.status === 'failed' ? a : null;
    }, 60_000);
  const backUp = async (serverId: number, name: string, as = auth): Promise<number> => {
    const res = await http().post('/api/v1/backups/').set(as).send({ server_id: serverId, name });
    expect(res.status).toBe(201);
    expect(await done(res.body.action_id, as)).toMatchObject({ status: 'succeeded' });
    return res.body.id as number;
  };
  const restore = async (backupId: number, serverId: number, as = auth): Promise<void> => {
    const res = await http()
      .post(`/api/v1/backups/${backupId}/restore/`)
      .set(as)
      .send({ server_id: serverId });
    expect(res.status).toBe(200);
    expect(await done(res.body.action_id, as)).toMatchObject({ status: 'succeeded' });
  };
  const backupRows = () =>
    api.prisma.$queryRaw<Json[]>`
      SELECT id, account_id, server_id, name, description, kind::text, status::text, progress, size_bytes,
             stored_bytes, consistency::text, mode::text, mode_reason, checkpoint, store, created_at,
             expires_at, deleted_at
      FROM backups ORDER BY id`;
  const chunkRows = () =>
    api.prisma.$queryRaw<Json[]>`
      SELECT store, account_id, chunk_id, size_bytes, refs, stored FROM backup_chunks ORDER BY chunk_id`;
  const refRows = () =>
    api.prisma.$queryRaw<Json[]>`SELECT * FROM backup_chunk_refs ORDER BY backup_id, chunk_id`;
  const chunkFile = (account: number, chunkId: string) => path.join(storeDir, chunkKey(account, chunkId));
  /** The database loses everything backups keep in it (and, with it, the orphan's server). */
  const loseTheDatabase = async () => {
    await api.prisma.$transaction([
      api.prisma.$executeRaw`DELETE FROM backup_chunk_refs`,
      api.prisma.$executeRaw`DELETE FROM backup_chunks`,
      api.prisma.$executeRaw`DELETE FROM actions WHERE backup_id IS NOT NULL`,
      api.prisma.$executeRaw`DELETE FROM backups`,
      api.prisma.$executeRaw`DELETE FROM account_keys`,
      // A database restored from an older dump may hand out ids the store already holds.
      api.prisma.$executeRaw`ALTER SEQUENCE backups_id_seq RESTART WITH 1`,
    ]);
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    root = await mkdtemp(path.join(tmpdir(), 'backup-recovery-'));
    storeDir = root; // the store's root must exist
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', env({ BACKUP_MASTER_KEY: oldKey })));
    const node = await createNode(api.prisma);
    nodeName = node.name;
    const account = await createAccount(api.prisma);
    accountId = account.id;
    auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
    source = await createServer(api.prisma, account.id, node.id, { status: 'stopped' });
    orphan = await createServer(api.prisma, account.id, node.id, { status: 'stopped' });
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it(
    'reindex rebuilds rows, references and the account key from the manifests; the backups restore byte for byte',
    async () => {
      const driver = await startNodeWorker({ BACKUP_MASTER_KEY: oldKey });
      // 8 MiB of data, a zero chunk, and a short tail; then 64 KiB changed for the second backup.
      const disk = Buffer.alloc(12 * MiB + 100 * 1024);
      randomBytes(8 * MiB).copy(disk);
      disk.write('the tail', 12 * MiB);
      driver.defineDomain(source.domain, { diskBytes: disk });
      backups.first = await backUp(source.id, 'first');
      disks.first = driver.readDisk(source.domain);
      driver.writeDisk(source.domain, randomBytes(64 * 1024), 5 * MiB);
      backups.second = await backUp(source.id, 'second');
      disks.second = driver.readDisk(source.domain);
      driver.defineDomain(orphan.domain, { diskBytes: randomBytes(5 * MiB) });
      backups.orphan = await backUp(orphan.id, 'orphaned');

      // Labels and delete protection live in the database only: a reindex brings the backup back without them.
      await http()
        .post(`/api/v1/backups/${backups.first}/actions/change_protection/`)
        .set(auth)
        .send({ delete: true })
        .expect(200);
      await http()
        .patch(`/api/v1/backups/${backups.first}/`)
        .set(auth)
        .send({ labels: { keep: 'yes' } })
        .expect(200);
      const rowsBefore = (await backupRows()).filter((r) => r.id !== backups.orphan);
      const completedBefore = await api.prisma.backup.findMany({ select: { id: true, completedAt: true } });
      const refsBefore = (await refRows()).filter((r) => r.backup_id !== backups.orphan);
      const orphanChunks = new Set(
        (await refRows()).filter((r) => r.backup_id === backups.orphan).map((r) => r.chunk_id),
      );
      const chunksBefore = (await chunkRows()).filter((r) => !orphanChunks.has(r.chunk_id));
      expect(chunksBefore.length).toBeGreaterThan(0);

      await loseTheDatabase();
      await api.prisma.server.delete({ where: { id: orphan.id } });

      const first = cli(['backups', 'reindex', '--store', 'default'], { BACKUP_MASTER_KEY: oldKey });
      expect(first.stdout).toContain(
        'store default: 3 manifests; 2 indexed, 0 already indexed, 1 skipped; 1 account key taken from the store',
      );
      // A backup whose server does not exist is left in the store, reported, and the run exits 1.
      expect(first.stdout).toContain(
        `skipped accounts/${accountId}/manifests/${backups.orphan}: server ${orphan.id} does not exist`,
      );
      expect(first.stderr).toContain('error: 1 manifest not indexed');
      expect(first.stdout).toContain(
        '2 backups indexed without labels and unprotected (the store does not keep them): set them again before the backup policies',
      );
      expect(
        await api.prisma.backup.findMany({
          select: { labels: true, deleteProtected: true },
          orderBy: { id: 'asc' },
        }),
      ).toEqual([
        { labels: {}, deleteProtected: false },
        { labels: {}, deleteProtected: false },
      ]);
      expect(first.status).toBe(1);
      // That manifest may name chunks nothing else does: the account's objects are all kept.
      expect(first.stdout).toContain('0 chunks no manifest names removed, 0 bytes freed');
      expect(first.stdout).toContain(
        `kept the chunks of account ${accountId}: a manifest of the account is not indexed`,
      );
      expect(orphanChunks.size).toBeGreaterThan(0);
      for (const id of orphanChunks) expect(existsSync(chunkFile(accountId, String(id)))).toBe(true);

      expect(await backupRows()).toEqual(rowsBefore);
      for (const r of await api.prisma.backup.findMany({ select: { id: true, completedAt: true } })) {
        // The manifest's completion is its write, just before the row's.
        const row = completedBefore.find((b) => b.id === r.id)!;
        expect(r.completedAt!.getTime()).toBeLessThanOrEqual(row.completedAt!.getTime());
        expect(r.completedAt!.getTime()).toBeGreaterThan(row.completedAt!.getTime() - 10_000);
      }
      expect(await refRows()).toEqual(refsBefore);
      expect(await chunkRows()).toEqual(chunksBefore);

      // Idempotent: a second run finds everything indexed and changes nothing.
      const again = cli(['backups', 'reindex', '--store', 'default'], { BACKUP_MASTER_KEY: oldKey });
      expect(again.stdout).toContain('3 manifests; 0 indexed, 2 already indexed, 1 skipped; 0 account keys');
      expect(await refRows()).toEqual(refsBefore);
      expect(await chunkRows()).toEqual(chunksBefore);

      driver.writeDisk(source.domain, randomBytes(3 * MiB));
      await restore(backups.first, source.id);
      expect(driver.readDisk(source.domain).equals(disks.first)).toBe(true);
      await restore(backups.second, source.id);
      expect(driver.readDisk(source.domain).equals(disks.second)).toBe(true);

      // New backups get ids after the reindexed ones, never overwriting their manifests.
      const third = await backUp(source.id, 'third');
      expect(third).toBeGreaterThan(backups.orphan);
      // The rebuilt references keep what a live backup shares with a deleted one.
      expect((await http().delete(`/api/v1/backups/${backups.first}/`).set(auth)).status).toBe(204);
      const manifest = path.join(storeDir, 'accounts', String(accountId), 'manifests', String(backups.first));
      await eventually(async () => !existsSync(manifest), 30_000);
      driver.writeDisk(source.domain, randomBytes(3 * MiB));
      await restore(backups.second, source.id);
      expect(driver.readDisk(source.domain).equals(disks.second)).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'rotate-master-key re-wraps the database and store copies; a worker with only the new key restores',
    async () => {
      const keyRow = () => api.prisma.accountKey.findUniqueOrThrow({ where: { accountId } });
      const before = await keyRow();
      const copyPath = path.join(
        storeDir,
        'accounts',
        String(accountId),
        'keys',
        Buffer.from(before.keyId).toString('hex'),
      );
      expect((await readFile(copyPath)).equals(Buffer.from(before.wrappedKey))).toBe(true);

      // Without the previous key nothing opens: reported, nothing changed.
      const blind = cli(['backups', 'rotate-master-key'], { BACKUP_MASTER_KEY: newKey });
      expect(blind.status).toBe(1);
      expect(blind.stdout).toContain(`failed account ${accountId}: data key does not unwrap`);
      expect(Buffer.from((await keyRow()).wrappedKey).equals(Buffer.from(before.wrappedKey))).toBe(true);

      const both = { BACKUP_MASTER_KEY: newKey, BACKUP_MASTER_KEY_PREVIOUS: oldKey };
      const rotated = cli(['backups', 'rotate-master-key'], both);
      expect(rotated.stdout).toContain(
        '1 account key: 1 re-wrapped in the database, 1 store copy written, 0 failures',
      );
      expect(rotated.status).toBe(0);
      const after = await keyRow();
      expect(Buffer.from(after.keyId).equals(Buffer.from(before.keyId))).toBe(true);
      expect(
        sealedKeyId(Buffer.from(after.wrappedKey))!.equals(sealedKeyId(Buffer.from(before.wrappedKey))!),
      ).toBe(false);
      expect((await readFile(copyPath)).equals(Buffer.from(after.wrappedKey))).toBe(true);
      // Idempotent: nothing left to do, with or without the previous key.
      expect(cli(['backups', 'rotate-master-key'], both).stdout).toContain(
        '1 account key: 0 re-wrapped in the database, 0 store copies written, 0 failures',
      );
      expect(cli(['backups', 'rotate-master-key'], { BACKUP_MASTER_KEY: newKey }).status).toBe(0);

      const driver = await startNodeWorker({ BACKUP_MASTER_KEY: newKey });
      driver.defineDomain(source.domain, { diskBytes: randomBytes(2 * MiB) });
      await restore(backups.second, source.id);
      expect(driver.readDisk(source.domain).equals(disks.second)).toBe(true);

      // And the store alone, read with the new key only, is reindexed and restores again.
      await loseTheDatabase();
      const reindexed = cli(['backups', 'reindex', '--store', 'default'], { BACKUP_MASTER_KEY: newKey });
      expect(reindexed.stdout).toContain('1 account key taken from the store');
      driver.writeDisk(source.domain, randomBytes(2 * MiB));
      await restore(backups.second, source.id);
      expect(driver.readDisk(source.domain).equals(disks.second)).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'reindex removes the chunk objects nothing names (a reference the database lost), and only those',
    async () => {
      const other = await createAccount(api.prisma);
      const otherAuth = { Authorization: `Bearer ${(await createToken(api.prisma, other.id)).token}` };
      const server = await createServer(api.prisma, other.id, (await api.prisma.node.findFirstOrThrow()).id, {
        status: 'stopped',
      });
      const driver = await startNodeWorker({ BACKUP_MASTER_KEY: newKey });
      const disk = randomBytes(9 * MiB);
      driver.defineDomain(server.domain, { diskBytes: disk });
      const backupId = await backUp(server.id, 'b', otherAuth);
      const named = (await refRows()).filter((r) => r.backup_id === backupId).map((r) => String(r.chunk_id));
      expect(named).toHaveLength(3);

      // A reference lost with the database: the upload's object is in the store, no row names it.
      const lost = randomBytes(32).toString('hex');
      await mkdir(path.dirname(chunkFile(other.id, lost)), { recursive: true });
      await copyFile(chunkFile(other.id, named[0]), chunkFile(other.id, lost));
      const lostBytes = (await stat(chunkFile(other.id, lost))).size;
      // And a named chunk whose rows went too: the manifest gives them back, the object stays.
      const [restoredRow] = (await chunkRows()).filter((r) => r.chunk_id === named[1]);
      await api.prisma.$executeRaw`DELETE FROM backup_chunk_refs WHERE chunk_id = ${named[1]}`;
      await api.prisma.$executeRaw`DELETE FROM backup_chunks WHERE chunk_id = ${named[1]}`;
      const chunksBefore = await chunkRows();

      const run = cli(['backups', 'reindex', '--store', 'default'], { BACKUP_MASTER_KEY: newKey });
      expect(run.stdout).toContain(`1 chunk no manifest names removed, ${lostBytes} bytes freed`);
      // The first account still has a manifest that is not indexed: its objects stay.
      expect(run.stdout).toContain(`kept the chunks of account ${accountId}: a manifest of the account`);
      expect(existsSync(chunkFile(other.id, lost))).toBe(false);
      for (const id of named) expect(existsSync(chunkFile(other.id, id))).toBe(true);
      const byId = (rows: Json[]) => [...rows].sort((a, b) => (a.chunk_id! < b.chunk_id! ? -1 : 1));
      expect(byId(await chunkRows())).toEqual(
        byId([...chunksBefore, { ...restoredRow, refs: 1, stored: true }]),
      );

      driver.writeDisk(server.domain, randomBytes(2 * MiB));
      await restore(backupId, server.id, otherAuth);
      expect(driver.readDisk(server.domain).equals(disk)).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );
});
