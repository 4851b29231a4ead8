/**
 * The backup data path (src/backups/data) on real Postgres, a directory store in a temporary folder
 * and disks held in Buffers: full and incremental writes restore byte for byte, zero chunks are holes,
 * chunks are stored once, encrypted, and removed exactly when no backup holds them — also while
 * deletes and writes sharing chunks race.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BACKUP_DATA_PATH, BackupRef } from '../../src/backups/backup-data-path';
import { BackupDataModule } from '../../src/backups/data/backup-data.module';
import { AccountKeys, BackupMasterKey } from '../../src/backups/data/account-keys';
import { BackupDataError } from '../../src/backups/data/backup-data-errors';
import { accountKeyKey, chunkKey, CHUNK_SIZE_BYTES, manifestKey } from '../../src/backups/data/backup-layout';
import { BACKUP_STORES, BackupStores } from '../../src/backups/data/backup-stores';
import { ChunkReferences } from '../../src/backups/data/chunk-references';
import { ChunkedBackupDataPath, SYNC_BATCH_CHUNKS } from '../../src/backups/data/chunked-backup-data-path';
import { Clock } from '../../src/common/clock';
import { CommonModule } from '../../src/common/common.module';
import { AppConfig } from '../../src/config/app-config';
import { BackupMetrics } from '../../src/metrics/backup-metrics';
import { MetricsService } from '../../src/metrics/metrics.service';
import { ConfigModule } from '../../src/config/config.module';
import { PrismaModule } from '../../src/prisma/prisma.module';
import { PrismaService } from '../../src/prisma/prisma.service';
import { createAccount, createNode } from '../factories';
import { backupFacts, BufferDiskDriver, serverRef, TempDirectoryStore } from '../support/backup-fixtures';
import { createTestDatabase, TestDatabase, testConfig } from '../support/test-env';

const MiB = 1024 * 1024;
const CS = CHUNK_SIZE_BYTES;

describe('backup data path (real Postgres, directory store, Buffer disks)', () => {
  let db: TestDatabase;
  let config: AppConfig;
  let prisma: PrismaService;
  let dir: string;
  let store: TempDirectoryStore;
  let driver: BufferDiskDriver;
  let dataPath: ChunkedBackupDataPath;
  let accountId: number;
  let nextBackupId = 1;
  const masterKey = randomBytes(32).toString('base64');

  const stores: BackupStores = { byName: () => store };
  const build = (cfg: AppConfig, metrics?: BackupMetrics): ChunkedBackupDataPath =>
    new ChunkedBackupDataPath(
      driver,
      stores,
      new AccountKeys(prisma, new BackupMasterKey(cfg)),
      new ChunkReferences(prisma),
      new Clock(),
      metrics,
    );
  const ref = (id = nextBackupId++, account = accountId): BackupRef => ({
    id,
    accountId: account,
    storeName: 'default',
  });
  const write = (backup: BackupRef, serverId: number, base: BackupRef | null = null) =>
    dataPath.writeBackup(
      {
        backup,
        facts: backupFacts(serverId),
        server: serverRef(serverId),
        base: base && { backup: base, checkpoint: `vps-backup-${base.id}` },
        checkpoint: `vps-backup-${backup.id}`,
      },
      () => undefined,
    );
  const restore = (backup: BackupRef, serverId: number) =>
    dataPath.restoreBackup(backup, serverRef(serverId), () => undefined);
  const chunkFiles = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const o of store.list(`accounts/${accountId}/chunks/`)) out.push(o.key);
    return out;
  };
  const chunkRows = () =>
    prisma.$queryRaw<{ chunk_id: string; refs: number; stored: boolean }[]>`
      SELECT chunk_id, refs, stored FROM backup_chunks WHERE account_id = ${accountId} ORDER BY chunk_id`;

  /** A disk of `chunks` full chunks plus a 100 KiB tail: chunks 1 and 4 zero, 2 and 5 equal. */
  const sampleDisk = (): Buffer => {
    const d = Buffer.alloc(6 * CS + 100 * 1024);
    for (const i of [0, 2, 3]) randomBytes(CS).copy(d, i * CS);
    d.copy(d, 5 * CS, 2 * CS, 3 * CS);
    d.write('the tail of the disk', 6 * CS);
    return d;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    config = testConfig(db, 'worker', { WORKER_NODE: 'node-a', BACKUP_MASTER_KEY: masterKey });
    prisma = new PrismaService(config);
  });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'backup-store-'));
    store = new TempDirectoryStore(dir);
    driver = new BufferDiskDriver();
    dataPath = build(config);
    accountId = (await createAccount(prisma)).id;
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await prisma.$disconnect();
    await db.drop();
  });

  it('a full backup restores byte for byte onto another server; zero chunks are holes; equal chunks are stored once', async () => {
    const disk = sampleDisk();
    driver.createDisk(1, disk);
    driver.createDisk(2, randomBytes(3 * CS));
    const b = ref();
    const result = await write(b, 1);
    expect(result).toMatchObject({
      mode: 'full',
      modeReason: 'no_previous_backup',
      checkpoint: `vps-backup-${b.id}`,
    });
    // Chunks 0, 2, 3, 5 and the tail hold data; 5 is 2 again.
    expect(result.sizeBytes).toBe(4 * CS + 100 * 1024);
    expect((await chunkFiles()).length).toBe(4);
    expect(result.storedBytes).toBeGreaterThanOrEqual(3 * CS + 100 * 1024);
    expect(result.storedBytes).toBeLessThan(3 * CS + 100 * 1024 + 4 * 1024);

    await restore(b, 2);
    expect(driver.disk(2).equals(disk)).toBe(true);
    expect(await dataPath.verifyBackup(b)).toEqual({ ok: true });
  });

  it('counts bytes read, uploaded, deduplicated (already stored, all zeros), restored and freed', async () => {
    const registry = new MetricsService();
    dataPath = build(config, new BackupMetrics(registry));
    const value = async (counter: { get(): Promise<{ values: { value: number; labels: object }[] }> }) =>
      Object.fromEntries(
        (await counter.get()).values.map((v) => [Object.values(v.labels).join('/') || 'all', v.value]),
      );
    const disk = sampleDisk();
    const data = 4 * CS + 100 * 1024; // chunks 0, 2, 3, 5 and the tail; a full read skips the zero ones
    driver.createDisk(1, disk);
    const first = ref();
    const made = await write(first, 1);
    expect(await value(registry.backupReadBytes)).toEqual({ all: data });
    // Chunk 5 is chunk 2 again: uploaded once or twice, depending on which finished first.
    const uploadedFirst = (await value(registry.backupUploadedBytes)).all;
    expect(uploadedFirst).toBeGreaterThan(made.storedBytes);
    expect(uploadedFirst).toBeLessThan(made.storedBytes + CS + 64 * 1024);

    // The same disk read whole again: every chunk is already stored; only a manifest goes up.
    const second = ref();
    await write(second, 1);
    expect(await value(registry.backupReadBytes)).toEqual({ all: 2 * data });
    expect(await value(registry.backupDeduplicatedBytes)).toEqual({ stored: data });
    const manifestBytes = (await value(registry.backupUploadedBytes)).all - uploadedFirst;
    expect(manifestBytes).toBeGreaterThan(0);
    expect(manifestBytes).toBeLessThan(4096);

    // The guest zeroes chunk 3: the incremental read reads it, and an all-zero chunk is not stored.
    driver.guestWrite(1, 3 * CS, Buffer.alloc(CS));
    const third = ref();
    await write(third, 1, second);
    expect(await value(registry.backupReadBytes)).toEqual({ all: 2 * data + CS });
    expect(await value(registry.backupDeduplicatedBytes)).toEqual({ stored: data, zero: CS });

    driver.createDisk(2, Buffer.alloc(0));
    await restore(third, 2);
    expect(await value(registry.backupRestoredBytes)).toEqual({ all: data - CS });

    let freed = 0;
    for (const b of [first, second, third]) freed += (await dataPath.deleteBackup(b)).freedBytes;
    expect(freed).toBeGreaterThan(3 * CS);
    expect(await value(registry.backupFreedBytes)).toEqual({ all: freed });
  });

  it('stores nothing in clear: chunks and manifests are sealed, the data key only wrapped', async () => {
    const marker = Buffer.from('plaintext-marker-'.repeat(1000));
    const disk = Buffer.alloc(CS);
    marker.copy(disk);
    driver.createDisk(1, disk);
    const b = ref();
    await write(b, 1);
    const files = await chunkFiles();
    const stored = await Promise.all(
      [...files, manifestKey(accountId, b.id)].map((k) => readFile(path.join(dir, k))),
    );
    for (const body of stored) {
      expect(body.includes(Buffer.from('plaintext-marker'))).toBe(false);
      expect(body.includes(Buffer.from(files[0].split('/').pop()!))).toBe(false); // no chunk id in clear
    }
    const [key] = await prisma.$queryRaw<{ wrapped_key: Buffer }[]>`
      SELECT wrapped_key FROM account_keys WHERE account_id = ${accountId}`;
    expect(key.wrapped_key.length).toBeGreaterThan(32); // sealed: envelope + tag, never the bare key
  });

  it("a write puts the account's wrapped key into the store before its first chunk, once", async () => {
    const puts: string[] = [];
    const recording: BackupStores = {
      byName: () =>
        Object.assign(Object.create(store) as TempDirectoryStore, {
          put: (k: string, b: Buffer) => (puts.push(k), store.put(k, b)),
        }),
    };
    const recorded = new ChunkedBackupDataPath(
      driver,
      recording,
      new AccountKeys(prisma, new BackupMasterKey(config)),
      new ChunkReferences(prisma),
      new Clock(),
    );
    driver.createDisk(1, sampleDisk());
    for (const b of [ref(), ref()]) {
      await recorded.writeBackup(
        { backup: b, facts: backupFacts(1), server: serverRef(1), base: null, checkpoint: `c${b.id}` },
        () => undefined,
      );
    }
    const row = await prisma.accountKey.findUniqueOrThrow({ where: { accountId } });
    const copy = accountKeyKey(accountId, Buffer.from(row.keyId).toString('hex'));
    expect(puts[0]).toBe(copy);
    expect(puts.filter((k) => k === copy)).toHaveLength(1);
    expect((await store.get(copy)).equals(Buffer.from(row.wrappedKey))).toBe(true);
  });

  it('an incremental backup reads only what changed, carries the rest, and each backup restores on its own', async () => {
    const disk = sampleDisk();
    driver.createDisk(1, disk);
    const first = ref();
    await write(first, 1);
    const before = Buffer.from(driver.disk(1));
    driver.guestWrite(1, 3 * CS + 5, Buffer.from('changed'));
    driver.guestWrite(1, 1 * CS, randomBytes(64 * 1024)); // a zero chunk gains data

    const second = ref();
    const result = await write(second, 1, first);
    expect(result).toMatchObject({ mode: 'incremental', modeReason: null });
    expect(result.sizeBytes).toBe(5 * CS + 100 * 1024);
    expect(result.storedBytes).toBeGreaterThanOrEqual(2 * CS);
    expect(result.storedBytes).toBeLessThan(2 * CS + 4096);

    driver.createDisk(2, Buffer.alloc(0));
    await restore(second, 2);
    expect(driver.disk(2).equals(driver.disk(1))).toBe(true);
    await restore(first, 2);
    expect(driver.disk(2).equals(before)).toBe(true);
  });

  it('deleting frees exactly the chunks no other backup holds, and is idempotent', async () => {
    const disk = sampleDisk();
    driver.createDisk(1, disk);
    const first = ref();
    await write(first, 1);
    driver.guestWrite(1, 0, randomBytes(CS)); // chunk 0 replaced
    const second = ref();
    await write(second, 1, first);
    expect((await chunkFiles()).length).toBe(5);

    const freed = await dataPath.deleteBackup(first);
    expect(freed.freedBytes).toBeGreaterThanOrEqual(CS);
    expect(freed.freedBytes).toBeLessThan(CS + 4096); // the old chunk 0 only
    expect((await chunkFiles()).length).toBe(4);
    expect(await dataPath.deleteBackup(first)).toEqual({ freedBytes: 0 });
    expect((await chunkRows()).every((r) => r.refs === 1 && r.stored)).toBe(true);

    driver.createDisk(2, Buffer.alloc(0));
    await restore(second, 2);
    expect(driver.disk(2).equals(driver.disk(1))).toBe(true);

    await dataPath.deleteBackup(second);
    expect(await chunkFiles()).toEqual([]);
    expect(await chunkRows()).toEqual([]);
  });

  it('an incremental write whose base lost its chunks meanwhile fails retryably and leaves nothing', async () => {
    driver.createDisk(1, sampleDisk());
    const first = ref();
    await write(first, 1);
    driver.guestWrite(1, 0, randomBytes(64 * 1024));
    // The base's chunks go (as when it is deleted) after its manifest was read.
    const refs = new ChunkReferences(prisma);
    await refs.release(first.id);
    await refs.collect({ store: 'default', accountId }, (id) => store.delete(chunkKey(accountId, id)));
    const second = ref();
    await expect(write(second, 1, first)).rejects.toMatchObject({
      code: 'backup_base_unavailable',
      retryable: true,
    });
    expect(await store.head(manifestKey(accountId, second.id))).toBeNull();
    expect(await chunkRows()).toEqual([]);
    expect([...driver.disks.get(1)!.checkpoints.keys()]).toEqual([`vps-backup-${first.id}`]);
  });

  /** A disk of `n` chunks that differ and hold data (one byte each, the rest zeros: cheap to make). */
  const distinctChunks = (n: number): Buffer => {
    const d = Buffer.alloc(n * CS);
    for (let i = 0; i < n; i++) d.writeUInt32BE(i + 1, i * CS);
    return d;
  };

  /** The directory store, recording its chunk and manifest puts (once done) and syncs (as they start). */
  class RecordingStore extends TempDirectoryStore {
    readonly events: string[] = [];
    constructor(
      root: string,
      private readonly failSync: number | null = null,
    ) {
      super(root);
    }
    override async put(key: string, body: Buffer): Promise<void> {
      await super.put(key, body);
      this.events.push(`put ${key}`);
    }
    override async sync(keys: readonly string[] = []): Promise<void> {
      this.events.push(`sync ${keys.join(' ')}`);
      if (this.events.filter((e) => e.startsWith('sync ')).length === this.failSync) {
        throw new Error('the disk went away');
      }
      await super.sync();
    }
  }

  it("a write's chunks are synced a batch at a time, the first while later ones are put, all before its manifest, then marked stored", async () => {
    const recording = new RecordingStore(dir);
    store = recording;
    driver.createDisk(1, distinctChunks(SYNC_BATCH_CHUNKS + 6));
    const b = ref();
    await write(b, 1);
    const chunkPuts = recording.events.filter((e) => e.startsWith(`put accounts/${accountId}/chunks/`));
    const syncs = recording.events.filter((e) => e.startsWith('sync '));
    expect(chunkPuts).toHaveLength(SYNC_BATCH_CHUNKS + 6);
    const synced = syncs.flatMap((e) => e.split(' ').slice(1));
    expect(synced.sort()).toEqual(chunkPuts.map((e) => e.slice('put '.length)).sort());
    // A full batch goes while the next chunks are read, sealed and put; the manifest only after the last.
    expect(syncs.length).toBeGreaterThan(1);
    expect(recording.events.indexOf(syncs[0])).toBeLessThan(recording.events.indexOf(chunkPuts.at(-1)!));
    const manifestAt = recording.events.indexOf(`put ${manifestKey(accountId, b.id)}`);
    expect(manifestAt).toBeGreaterThan(recording.events.indexOf(syncs.at(-1)!));
    expect((await chunkRows()).every((r) => r.stored && r.refs === 1)).toBe(true);
    expect(await chunkRows()).toHaveLength(SYNC_BATCH_CHUNKS + 6);
  });

  it('a write whose store fails to sync a batch fails with that error and leaves nothing', async () => {
    store = new RecordingStore(dir, 1);
    driver.createDisk(1, distinctChunks(SYNC_BATCH_CHUNKS + 6));
    const b = ref();
    await expect(write(b, 1)).rejects.toThrow('the disk went away');
    expect(await store.head(manifestKey(accountId, b.id))).toBeNull();
    expect(await chunkRows()).toEqual([]);
    expect(await chunkFiles()).toEqual([]);
    expect([...driver.disks.get(1)!.checkpoints.keys()]).toEqual([]);
  });

  it('a write whose references the database lost before they were flushed fails before its manifest, and leaves nothing', async () => {
    // A reference is committed without a flush; a database that restarts then loses it. Here one
    // reference row goes (with its count) once the chunks are put, as such a restart would take it.
    const b = ref();
    class LosingStore extends TempDirectoryStore {
      override async sync(): Promise<void> {
        await prisma.$executeRaw`
          WITH gone AS (
            DELETE FROM backup_chunk_refs
            WHERE backup_id = ${b.id} AND chunk_id = (SELECT min(chunk_id) FROM backup_chunk_refs WHERE backup_id = ${b.id})
            RETURNING store, account_id, chunk_id
          )
          UPDATE backup_chunks c SET refs = c.refs - 1 FROM gone g
          WHERE c.store = g.store AND c.account_id = g.account_id AND c.chunk_id = g.chunk_id`;
        await super.sync();
      }
    }
    store = new LosingStore(dir);
    driver.createDisk(1, sampleDisk());
    await expect(write(b, 1)).rejects.toThrow(/3 of its 4 chunk references are there/);
    expect(await store.head(manifestKey(accountId, b.id))).toBeNull();
    expect(await chunkRows()).toEqual([]);
    expect(await chunkFiles()).toEqual([]);
  });

  it("a retried write first drops what an earlier attempt of the same backup left, then holds exactly its manifest's chunks", async () => {
    const b = ref();
    // An earlier attempt took a reference that its clean-up could not release (the database was away).
    const stale = 'f'.repeat(64);
    await new ChunkReferences(prisma).acquire({ store: 'default', accountId }, b.id, [
      { chunkId: stale, sizeBytes: 1 },
    ]);
    driver.createDisk(1, sampleDisk());
    await write(b, 1);
    const [held] = await prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM backup_chunk_refs WHERE backup_id = ${b.id}`;
    expect(held.n).toBe(4); // chunks 0, 2 (= 5), 3 and the tail
    expect((await chunkRows()).find((r) => r.chunk_id === stale)?.refs).toBe(0);
  });

  it('a missing or damaged chunk fails restore (backup_corrupt) with the disk untouched; verify names it', async () => {
    driver.createDisk(1, sampleDisk());
    const b = ref();
    await write(b, 1);
    const [victim, other] = await chunkFiles();
    const sealed = await readFile(path.join(dir, victim));
    sealed[sealed.length - 100] ^= 1;
    await writeFile(path.join(dir, victim), sealed);

    const target = randomBytes(2 * MiB);
    driver.createDisk(2, target);
    await expect(restore(b, 2)).rejects.toMatchObject({ name: 'BackupDataError', code: 'backup_corrupt' });
    expect(driver.disk(2).equals(target)).toBe(true);
    expect(await dataPath.verifyBackup(b)).toEqual({ ok: false, problem: expect.stringContaining('chunk') });

    await rm(path.join(dir, other));
    await writeFile(path.join(dir, victim), (await readFile(path.join(dir, victim))).fill(0));
    await expect(restore(b, 2)).rejects.toBeInstanceOf(BackupDataError);
    expect(driver.disk(2).equals(target)).toBe(true);
  });

  it('a chunk moved under another id does not open: the sealing binds it to its id', async () => {
    driver.createDisk(1, sampleDisk());
    const b = ref();
    await write(b, 1);
    const [a, c] = await chunkFiles();
    await writeFile(path.join(dir, a), await readFile(path.join(dir, c)));
    expect(await dataPath.verifyBackup(b)).toMatchObject({ ok: false });
  });

  it('another master key cannot read the data: backup_key_unavailable', async () => {
    driver.createDisk(1, sampleDisk());
    const b = ref();
    await write(b, 1);
    const otherKey = testConfig(db, 'worker', {
      WORKER_NODE: 'node-a',
      BACKUP_MASTER_KEY: randomBytes(32).toString('base64'),
    });
    driver.createDisk(2, Buffer.alloc(0));
    await expect(build(otherKey).restoreBackup(b, serverRef(2), () => undefined)).rejects.toMatchObject({
      code: 'backup_key_unavailable',
    });
  });

  it('a cancelled write leaves no backup, no chunk, no reference and no new checkpoint', async () => {
    driver.createDisk(1, sampleDisk());
    const abort = new AbortController();
    const b = ref();
    await expect(
      dataPath.writeBackup(
        { backup: b, facts: backupFacts(1), server: serverRef(1), base: null, checkpoint: 'vps-backup-x' },
        (pct) => pct >= 40 && abort.abort(),
        { signal: abort.signal },
      ),
    ).rejects.toMatchObject({ code: 'cancelled' });
    expect(await store.head(manifestKey(accountId, b.id))).toBeNull();
    expect(await chunkFiles()).toEqual([]);
    expect(await chunkRows()).toEqual([]);
    expect([...driver.disks.get(1)!.checkpoints.keys()]).toEqual([]);
  });

  it('deletes and writes sharing chunks race without losing a chunk a live backup needs', async () => {
    // Objects take a moment to put and delete, and each delete and write starts a little apart, so a
    // collection's locked batch and a writer's references overlap in every order.
    const slow = new TempDirectoryStore(dir);
    const pause = (ms: number) => new Promise((r) => setTimeout(r, Math.random() * ms));
    const racing: BackupStores = {
      byName: () =>
        Object.assign(Object.create(slow) as TempDirectoryStore, {
          put: async (k: string, b: Buffer) => (await pause(4), slow.put(k, b)),
          delete: async (k: string) => (await pause(8), slow.delete(k)),
        }),
    };
    const racer = new ChunkedBackupDataPath(
      driver,
      racing,
      new AccountKeys(prisma, new BackupMasterKey(config)),
      new ChunkReferences(prisma),
      new Clock(),
    );
    const servers = [1, 2];
    for (const s of servers) {
      const disk = Buffer.alloc(6 * CS);
      for (let i = 0; i < 6; i++) randomBytes(64 * 1024).copy(disk, i * CS);
      driver.createDisk(s, disk);
    }
    const writeOn = (b: BackupRef, server: number) =>
      racer.writeBackup(
        {
          backup: b,
          facts: backupFacts(server),
          server: serverRef(server),
          base: null,
          checkpoint: `c${b.id}`,
        },
        () => undefined,
      );

    let live = servers.map(() => ref());
    await Promise.all(servers.map((s, k) => writeOn(live[k], s)));
    for (let round = 0; round < 12; round++) {
      // Each round a server's previous backup is deleted while its next one (sharing all but one
      // chunk with it) is written.
      const next = servers.map(() => ref());
      await Promise.all(
        servers.flatMap((s, k) => {
          driver.guestWrite(s, (round % 6) * CS, randomBytes(64 * 1024));
          return [
            pause(30).then(() => racer.deleteBackup(live[k])),
            pause(30).then(() => writeOn(next[k], s)),
          ];
        }),
      );
      live = next;
      for (const b of live) expect(await racer.verifyBackup(b)).toEqual({ ok: true });
    }
    const rows = await chunkRows();
    expect(rows.every((r) => r.stored && r.refs === 1)).toBe(true);
    const files = await chunkFiles();
    expect(files.sort()).toEqual(rows.map((r) => chunkKey(accountId, r.chunk_id)).sort());
  }, 240_000);

  it('is provided as BACKUP_DATA_PATH in a worker context, over its driver and the stores module given', async () => {
    const node = await createNode(prisma);
    const cfg = testConfig(db, 'worker', { WORKER_NODE: node.name, BACKUP_MASTER_KEY: masterKey });
    @Module({ providers: [{ provide: BACKUP_STORES, useValue: stores }], exports: [BACKUP_STORES] })
    class StoresModule {}
    const ctx = await NestFactory.createApplicationContext(
      {
        module: class Root {},
        imports: [
          ConfigModule.forConfig(cfg),
          CommonModule,
          PrismaModule,
          BackupDataModule.withStores(StoresModule),
        ],
      },
      { logger: false },
    );
    try {
      expect(ctx.get(BACKUP_DATA_PATH)).toBeInstanceOf(ChunkedBackupDataPath);
    } finally {
      await ctx.close();
    }
  });
});
