/**
 * The worker's writes to actions (src/jobs/action-store.ts) on real Postgres: claims and successful
 * creates of jobs running at the same time go into one statement each, and every guarantee of the
 * single-row statements holds per row — a finished action is never reopened, a duplicated job never
 * applies twice, one bad row does not fail the others of its batch. Also the runner over it: many
 * jobs at once, one of them failing.
 */
import { Client } from 'pg';
import { Clock } from '../../src/common/clock';
import { AppConfig } from '../../src/config/app-config';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HypervisorError } from '../../src/hypervisor/hypervisor-driver';
import { ActionRunner } from '../../src/jobs/action-runner.service';
import { ActionStore, Consistency } from '../../src/jobs/action-store';
import { Heartbeats } from '../../src/jobs/heartbeats';
import { PrismaService } from '../../src/prisma/prisma.service';
import { SafetyCopyStore } from '../../src/restore-undo/safety-copy-store';
import { SafetyCopyTaker } from '../../src/restore-undo/safety-copy-taker';
import { createAccount, createNode, createServer } from '../factories';
import { createTestDatabase, TestDatabase, testConfig } from '../support/test-env';

describe('worker action store (real Postgres): batched claims and outcomes keep every condition', () => {
  let db: TestDatabase;
  let config: AppConfig;
  let prisma: PrismaService;
  let store: ActionStore;
  let accountId: number;
  let nodeId: number;
  let snapshotDir: string;

  /** The runner as the worker builds it, over the store under test and `driver`. */
  const runnerOver = (driver: FakeHypervisorDriver, cfg: AppConfig = config) =>
    new ActionRunner(
      store,
      new Heartbeats(store, cfg, new Clock()),
      cfg,
      new Clock(),
      driver,
      new SafetyCopyTaker(new SafetyCopyStore(prisma), store, cfg, new Clock(), driver),
    );

  beforeAll(async () => {
    db = await createTestDatabase();
    config = testConfig(db, 'worker', { WORKER_NODE: 'node-a' });
    prisma = new PrismaService(config);
    store = new ActionStore(config);
    accountId = (await createAccount(prisma)).id;
    const node = await createNode(prisma);
    nodeId = node.id;
    snapshotDir = node.snapshotDir;
  });
  afterEach(() => jest.restoreAllMocks());
  afterAll(async () => {
    await store?.onModuleDestroy();
    await prisma?.$disconnect();
    await db?.drop();
  });

  /** A server with one in-progress snapshot and its create action (pending unless told). */
  async function pendingCreate(status: 'pending' | 'running' | 'succeeded' | 'failed' = 'pending') {
    const server = await createServer(prisma, accountId, nodeId, { status: 'stopped' });
    const snapshot = await prisma.snapshot.create({
      data: { accountId, serverId: server.id, name: 'snap' },
    });
    const action = await prisma.action.create({
      data: {
        kind: 'create_snapshot',
        status,
        accountId,
        serverId: server.id,
        snapshotId: snapshot.id,
        serverStatusBefore: 'stopped',
      },
    });
    return { server, snapshot, action };
  }

  const actionRow = (id: number) => prisma.action.findUniqueOrThrow({ where: { id } });
  const snapshotRow = (id: number) => prisma.snapshot.findUniqueOrThrow({ where: { id } });
  const result = (
    t: { action: { id: number }; snapshot: { id: number } },
    consistency: Consistency = 'stopped',
  ) => ({
    actionId: t.action.id,
    snapshotId: t.snapshot.id,
    sizeBytes: 3 * 2 ** 30,
    consistency,
    at: new Date(),
  });

  it('claims made together are one statement; each gets its own action, finished and missing ones nothing', async () => {
    const a = await pendingCreate();
    const b = await pendingCreate();
    const again = await pendingCreate('running'); // a retry or a stalled job: claimed again
    const done = await pendingCreate('succeeded');
    const failed = await pendingCreate('failed');
    const statements = jest.spyOn(store as unknown as { claimMany: () => unknown }, 'claimMany');
    const at = new Date('2026-11-28T06:00:00.123Z');
    const claims = await Promise.all(
      [a, b, again, done, failed]
        .map((t) => store.claim(t.action.id, at))
        .concat(store.claim(2 ** 31 - 1, at)),
    );
    expect(statements).toHaveBeenCalledTimes(1);
    expect(claims.map((c) => c?.id ?? null)).toEqual([
      a.action.id,
      b.action.id,
      again.action.id,
      null,
      null,
      null,
    ]);
    expect(claims[0]).toEqual({
      id: a.action.id,
      kind: 'create_snapshot',
      status: 'running',
      startedAt: at,
      serverStatusBefore: 'stopped',
      server: {
        id: a.server.id,
        domain: a.server.domain,
        domainUuid: null,
        diskPath: a.server.diskPath,
        status: 'stopped',
        node: { snapshotDir, backupStore: 'default' },
      },
      snapshot: { id: a.snapshot.id, status: 'in_progress' },
      backup: null,
    });
    for (const t of [a, b, again])
      expect(await actionRow(t.action.id)).toMatchObject({ status: 'running', attempts: 1, heartbeatAt: at });
    // Finished actions are not reopened.
    expect(await actionRow(done.action.id)).toMatchObject({
      status: 'succeeded',
      attempts: 0,
      startedAt: null,
    });
    expect(await actionRow(failed.action.id)).toMatchObject({
      status: 'failed',
      attempts: 0,
      startedAt: null,
    });
  });

  it('a claim keeps the first start time and its own claim time', async () => {
    const t = await pendingCreate();
    const first = new Date('2026-11-28T06:00:00.000Z');
    const second = new Date('2026-11-28T06:00:05.000Z');
    const other = await pendingCreate();
    await store.claim(t.action.id, first);
    const [c] = await Promise.all([store.claim(t.action.id, second), store.claim(other.action.id, first)]);
    expect(c?.startedAt).toEqual(first);
    expect(await actionRow(t.action.id)).toMatchObject({
      startedAt: first,
      heartbeatAt: second,
      attempts: 2,
    });
    expect(await actionRow(other.action.id)).toMatchObject({
      startedAt: first,
      heartbeatAt: first,
      attempts: 1,
    });
  });

  it('the same action claimed twice in one batch is claimed twice, one after the other (as without batching)', async () => {
    const t = await pendingCreate();
    const statements = jest.spyOn(store as unknown as { claimMany: () => unknown }, 'claimMany');
    const at = new Date();
    const [x, y] = await Promise.all([store.claim(t.action.id, at), store.claim(t.action.id, at)]);
    expect(x?.id).toBe(t.action.id);
    expect(y?.id).toBe(t.action.id);
    expect(statements).toHaveBeenCalledTimes(2);
    expect(await actionRow(t.action.id)).toMatchObject({ status: 'running', attempts: 2 });
  });

  it('successful creates made together are one statement; only running actions end, each with its own snapshot', async () => {
    const ts = [await pendingCreate(), await pendingCreate(), await pendingCreate()];
    for (const t of ts) await store.claim(t.action.id, new Date());
    const finished = await pendingCreate('failed'); // e.g. failed by the reaper meanwhile
    const notStarted = await pendingCreate('pending');
    const statements = jest.spyOn(store as unknown as { succeedCreates: () => unknown }, 'succeedCreates');
    const outcomes = await Promise.all([
      store.succeedCreate(result(ts[0], 'stopped')),
      store.succeedCreate(result(ts[1], 'quiesced')),
      store.succeedCreate(result(finished)),
      store.succeedCreate(result(ts[2], 'crash_consistent')),
      store.succeedCreate(result(notStarted)),
    ]);
    expect(statements).toHaveBeenCalledTimes(1);
    expect(outcomes).toEqual([true, true, false, true, false]);
    const consistencies = ['stopped', 'quiesced', 'crash_consistent'];
    for (const [i, t] of ts.entries()) {
      expect(await actionRow(t.action.id)).toMatchObject({ status: 'succeeded', progress: 100 });
      expect(await snapshotRow(t.snapshot.id)).toMatchObject({
        status: 'completed',
        progress: 100,
        sizeBytes: BigInt(3 * 2 ** 30),
        consistency: consistencies[i],
      });
    }
    // A snapshot completes only with its own action.
    for (const t of [finished, notStarted]) {
      expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: 'in_progress', sizeBytes: null });
      expect((await actionRow(t.action.id)).finishedAt).toBeNull();
    }
  });

  it('a duplicated success applies once, in the same batch or later; a finished action never reopens', async () => {
    const t = await pendingCreate();
    await store.claim(t.action.id, new Date());
    const [first, duplicate] = await Promise.all([
      store.succeedCreate(result(t)),
      store.succeedCreate(result(t)),
    ]);
    expect([first, duplicate]).toEqual([true, false]);
    const row = await actionRow(t.action.id);
    expect(row.status).toBe('succeeded');
    expect(await store.succeedCreate(result(t))).toBe(false);
    expect(await store.claim(t.action.id, new Date())).toBeNull();
    expect(
      await store.finish({
        actionId: t.action.id,
        kind: 'create_snapshot',
        outcome: 'failed',
        at: new Date(),
        error: { code: 'copy_failed', message: 'late' },
        failSnapshot: { id: t.snapshot.id, error: 'late' },
      }),
    ).toBe(false);
    expect(await actionRow(t.action.id)).toEqual(row);
    expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: 'completed', error: null });
  });

  it('a row that fails its batch statement fails alone: the others of the batch are applied', async () => {
    const good = [await pendingCreate(), await pendingCreate()];
    const bad = await pendingCreate();
    for (const t of [...good, bad]) await store.claim(t.action.id, new Date());
    const statements = jest.spyOn(store as unknown as { succeedCreates: () => unknown }, 'succeedCreates');
    const outcomes = await Promise.allSettled([
      store.succeedCreate(result(good[0])),
      // Not a snapshot_consistency: Postgres refuses the cast, and with it the whole batch statement.
      store.succeedCreate(result(bad, 'torn' as Consistency)),
      store.succeedCreate(result(good[1])),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes[0]).toEqual({ status: 'fulfilled', value: true });
    expect(outcomes[2]).toEqual({ status: 'fulfilled', value: true });
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toMatch(/snapshot_consistency/);
    expect(statements).toHaveBeenCalledTimes(4); // the batch, then each of its three alone
    for (const t of good) expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: 'completed' });
    expect(await actionRow(bad.action.id)).toMatchObject({ status: 'running' });
    expect(await snapshotRow(bad.snapshot.id)).toMatchObject({ status: 'in_progress' });
  });

  it('a claim batch whose statement fails is tried call by call', async () => {
    const ts = [await pendingCreate(), await pendingCreate()];
    const real = (store as unknown as { claimMany: (k: unknown[]) => Promise<unknown[]> }).claimMany.bind(
      store,
    );
    let calls = 0;
    jest
      .spyOn(store as unknown as { claimMany: (k: unknown[]) => Promise<unknown[]> }, 'claimMany')
      .mockImplementation((keys) =>
        ++calls === 1 ? Promise.reject(new Error('connection lost')) : real(keys),
      );
    const claims = await Promise.all(ts.map((t) => store.claim(t.action.id, new Date())));
    expect(claims.map((c) => c?.id)).toEqual(ts.map((t) => t.action.id));
    expect(calls).toBe(3);
  });

  it('progress and heartbeat touch only a running action; a failed create fails its snapshot with it', async () => {
    const t = await pendingCreate();
    await store.claim(t.action.id, new Date());
    const at = new Date('2026-11-28T07:00:00.000Z');
    await store.progress(t.action.id, { snapshotId: t.snapshot.id, backupId: null }, 42, at);
    expect(await actionRow(t.action.id)).toMatchObject({ progress: 42, heartbeatAt: at });
    expect(await snapshotRow(t.snapshot.id)).toMatchObject({ progress: 42 });
    expect(
      await store.finish({
        actionId: t.action.id,
        kind: 'create_snapshot',
        outcome: 'failed',
        at,
        error: { code: 'copy_failed', message: 'Copying the disk failed.' },
        failSnapshot: { id: t.snapshot.id, error: 'Copying the disk failed.' },
      }),
    ).toBe(true);
    const later = new Date('2026-11-28T08:00:00.000Z');
    await store.progress(t.action.id, { snapshotId: t.snapshot.id, backupId: null }, 80, later);
    await store.heartbeat([t.action.id], later);
    expect(await actionRow(t.action.id)).toMatchObject({
      status: 'failed',
      progress: 42,
      heartbeatAt: at,
      errorCode: 'copy_failed',
      errorMessage: 'Copying the disk failed.',
    });
    expect(await snapshotRow(t.snapshot.id)).toMatchObject({
      status: 'failed',
      progress: 42,
      error: 'Copying the disk failed.',
    });
  });

  it('heartbeats: one statement stamps every running action; finished ones and rows locked elsewhere are left alone', async () => {
    const ts = [await pendingCreate(), await pendingCreate(), await pendingCreate()];
    for (const t of ts) await store.claim(t.action.id, new Date('2026-11-28T06:00:00.000Z'));
    const finished = await pendingCreate('succeeded');
    const heartbeats = new Heartbeats(store, config, { now: () => at } as Clock);
    const at = new Date('2026-11-28T09:00:00.000Z');
    const stops = [...ts, finished].map((t) => heartbeats.track(t.action.id));
    const statements = jest.spyOn(store, 'heartbeat');
    // Another transaction holds the third action's row (an outcome being written): not waited for.
    const other = new Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT id FROM actions WHERE id = $1 FOR UPDATE', [ts[2].action.id]);
      await heartbeats.beat();
      expect(statements).toHaveBeenCalledTimes(1);
      await other.query('ROLLBACK');
    } finally {
      await other.end();
    }
    expect((await actionRow(ts[0].action.id)).heartbeatAt).toEqual(at);
    expect((await actionRow(ts[1].action.id)).heartbeatAt).toEqual(at);
    expect((await actionRow(ts[2].action.id)).heartbeatAt).not.toEqual(at);
    expect((await actionRow(finished.action.id)).heartbeatAt).toBeNull();
    // Once none runs, nothing is stamped (and the timer is gone).
    for (const stop of stops) stop();
    await heartbeats.beat();
    expect(statements).toHaveBeenCalledTimes(1);
    heartbeats.onModuleDestroy();
  });

  it('a finished restore returns its server to the status it had, once', async () => {
    const server = await createServer(prisma, accountId, nodeId, { status: 'restoring' });
    const snapshot = await prisma.snapshot.create({
      data: { accountId, serverId: server.id, name: 'r', status: 'completed' },
    });
    const action = await prisma.action.create({
      data: {
        kind: 'restore_snapshot',
        status: 'running',
        accountId,
        serverId: server.id,
        snapshotId: snapshot.id,
        serverStatusBefore: 'running',
      },
    });
    const loaded = await store.load(action.id);
    expect(loaded).toMatchObject({ id: action.id, kind: 'restore_snapshot', status: 'running' });
    const finish = {
      actionId: action.id,
      kind: 'restore_snapshot' as const,
      outcome: 'succeeded' as const,
      at: new Date(),
      restoreServer: { id: server.id, status: 'running' as const },
    };
    expect(await store.finish(finish)).toBe(true);
    expect(await prisma.server.findUniqueOrThrow({ where: { id: server.id } })).toMatchObject({
      status: 'running',
    });
    await prisma.server.update({ where: { id: server.id }, data: { status: 'restoring' } });
    expect(await store.finish(finish)).toBe(false);
    expect(await prisma.server.findUniqueOrThrow({ where: { id: server.id } })).toMatchObject({
      status: 'restoring',
    });
    expect(await store.load(2 ** 31 - 1)).toBeNull();
  });

  it('the runner: eight creates at once end each on their own, one failing without touching the others', async () => {
    const driver = new FakeHypervisorDriver({ autoDefineDomains: true });
    const runner = runnerOver(driver);
    const ts = await Promise.all(Array.from({ length: 8 }, () => pendingCreate()));
    const original = driver.createSnapshot.bind(driver);
    // Only the fourth server's copy fails (for good: not retryable).
    driver.createSnapshot = async (server, snap, onProgress, opts) => {
      if (server.id === ts[3].server.id) throw new HypervisorError('insufficient_storage');
      return original(server, snap, onProgress, opts);
    };
    const outcomes = await Promise.all(
      ts.map((t) => runner.run(t.action.id, { attempt: 1, maxAttempts: 3 })),
    );
    expect(outcomes).toEqual(ts.map((_, i) => (i === 3 ? 'failed' : 'succeeded')));
    for (const [i, t] of ts.entries()) {
      expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: i === 3 ? 'failed' : 'completed' });
      expect(await actionRow(t.action.id)).toMatchObject({
        status: i === 3 ? 'failed' : 'succeeded',
        attempts: 1,
      });
    }
    // The same jobs again (duplicates): nothing runs, nothing changes.
    const copies = driver.callCount('createSnapshot');
    expect(await Promise.all(ts.map((t) => runner.run(t.action.id, { attempt: 1, maxAttempts: 3 })))).toEqual(
      ts.map(() => 'skipped'),
    );
    expect(driver.callCount('createSnapshot')).toBe(copies);
  });

  it('the runner: a copy that outlives OPERATION_TIMEOUT_MS is aborted and the action fails', async () => {
    const driver = new FakeHypervisorDriver({ autoDefineDomains: true });
    const short = testConfig(db, 'worker', { WORKER_NODE: 'node-a', OPERATION_TIMEOUT_MS: '1000' });
    const runner = runnerOver(driver, short);
    const t = await pendingCreate();
    driver.injectFailure({ method: 'createSnapshot', mode: 'hang' });
    const started = Date.now();
    expect(await runner.run(t.action.id, { attempt: 1, maxAttempts: 1 })).toBe('failed');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(await actionRow(t.action.id)).toMatchObject({ status: 'failed' });
    expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: 'failed' });
  });

  it('the runner: a success that cannot be recorded is not taken for a failed copy; the slot is freed before the write', async () => {
    const driver = new FakeHypervisorDriver({ autoDefineDomains: true });
    const runner = runnerOver(driver);
    const t = await pendingCreate();
    const order: string[] = [];
    const original = store.succeedCreate.bind(store);
    // The database refuses the write of the outcome (once), after the copy succeeded.
    store.succeedCreate = async () => {
      order.push('write');
      throw new Error('Connection terminated unexpectedly');
    };
    try {
      await expect(
        runner.run(t.action.id, {
          attempt: 3,
          maxAttempts: 3,
          hypervisorDone: () => order.push('slot freed'),
        }),
      ).rejects.toThrow('Connection terminated unexpectedly');
    } finally {
      store.succeedCreate = original;
    }
    expect(order).toEqual(['slot freed', 'write']);
    // Last attempt, yet the copy was kept (no delete) and nothing recorded it as failed.
    expect(driver.callCount('deleteSnapshot')).toBe(0);
    expect(await actionRow(t.action.id)).toMatchObject({ status: 'running' });
    expect(await snapshotRow(t.snapshot.id)).toMatchObject({ status: 'in_progress' });
  });

  it('a backup create records its node’s store once (a retry after the node changed store keeps it) and reads what its manifest records', async () => {
    const server = await createServer(prisma, accountId, nodeId, { status: 'stopped' });
    const backup = await prisma.backup.create({ data: { accountId, serverId: server.id, name: 'b' } });
    expect(backup.store).toBeNull();
    expect(await store.backupOfCreate(backup.id, 'default')).toEqual({
      storeName: 'default',
      facts: {
        serverId: server.id,
        name: 'b',
        description: '',
        kind: 'manual',
        createdAt: backup.createdAt,
        expiresAt: null,
      },
    });
    expect((await store.backupOfCreate(backup.id, 'offsite'))?.storeName).toBe('default');
    expect((await prisma.backup.findUniqueOrThrow({ where: { id: backup.id } })).store).toBe('default');
  });
});
