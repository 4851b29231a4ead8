/**
 * Restore and delete are single statements (lock the server row, then check and write in a VOLATILE SQL
 * function, migration 20261128040000). These tests race them against each other and against create on
 * one server, and check that a statement waiting for the lock sees what the holder committed meanwhile:
 * exactly one long operation wins, the others get the published 400 / 404 problems, never a 5xx, and
 * the rows agree with the answers.
 *
 * The node has no worker, so accepted actions stay pending and hold the server.
 */
import request from 'supertest';
import { Prisma } from '../../src/generated/prisma/client';
import { createNode, createTenant } from '../factories';
import { expectProblem } from '../support/problem-assertions';
import {
  createTestDatabase,
  eventually,
  startApi,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

type Tenant = Awaited<ReturnType<typeof createTenant>>;

describe('snapshot restore / delete / create races on one server (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const completed = (t: Tenant, name: string) =>
    api.prisma.snapshot.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        name,
        status: 'completed',
        progress: 100,
        sizeBytes: 1n << 20n,
        consistency: 'stopped',
        completedAt: new Date(),
      },
    });
  const restore = (t: Tenant, id: number, key?: string) =>
    request(api.url)
      .post(`/api/v1/snapshots/${id}/restore/`)
      .set({ ...t.auth, ...(key ? { 'Idempotency-Key': key } : {}) });
  const del = (t: Tenant, id: number) => request(api.url).delete(`/api/v1/snapshots/${id}/`).set(t.auth);
  const create = (t: Tenant, name: string) =>
    request(api.url).post('/api/v1/snapshots/').set(t.auth).send({ server_id: t.server.id, name });

  /** Holds the server row lock in a transaction; `commit(work)` writes under it, then commits. */
  async function holdServerLock(serverId: number) {
    let release!: (work: (tx: Prisma.TransactionClient) => Promise<unknown>) => void;
    const released = new Promise<(tx: Prisma.TransactionClient) => Promise<unknown>>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = api.prisma.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT id FROM servers WHERE id = ${serverId} FOR UPDATE`;
        locked();
        await (
          await released
        )(tx);
      },
      { timeout: 30_000 },
    );
    await isLocked;
    return {
      async commit(work: (tx: Prisma.TransactionClient) => Promise<unknown>) {
        release(work);
        await holder;
      },
    };
  }

  /** Waits until `n` statements of the API wait for a row lock. */
  const blockedOnLock = (n: number) =>
    eventually(async () => {
      const [row] = await api.prisma.$queryRaw<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`;
      return row.n >= n;
    });

  it('restores, deletes and creates at once: exactly one long operation, one delete per snapshot, published refusals only', async () => {
    for (let round = 0; round < 4; round++) {
      const t = await createTenant(api.prisma, nodeId);
      const a = await completed(t, `a${round}`);
      const b = await completed(t, `b${round}`);
      const N = 6;
      const fire = <T>(f: (i: number) => T) => Array.from({ length: N }, (_, i) => f(i));
      const [restores, deletesA, deletesB, creates] = await Promise.all([
        Promise.all(fire((i) => restore(t, a.id, i % 2 ? `k-${round}-${i}` : undefined).then((r) => r))),
        Promise.all(fire(() => del(t, a.id).then((r) => r))),
        Promise.all(fire(() => del(t, b.id).then((r) => r))),
        Promise.all(fire((i) => create(t, `c${i}`).then((r) => r))),
      ]);
      const all = [...restores, ...deletesA, ...deletesB, ...creates];
      expect(all.filter((r) => r.status >= 500).map((r) => r.body)).toEqual([]);

      const restored = restores.filter((r) => r.status === 200);
      const created = creates.filter((r) => r.status === 201);
      expect(restored.length + created.length).toBe(1);
      const winner = restored[0]?.body.action_id ?? created[0]?.body.action_id;
      const winnerKind = restored.length ? 'restore_snapshot' : 'create_snapshot';

      for (const r of [...restores, ...creates]) {
        if (r.status === 200 || r.status === 201) continue;
        if (r.status === 404) {
          expect(restores).toContain(r);
          expectProblem(r, 404, 'snapshot_not_found');
          continue;
        }
        expectProblem(r, 400, 'invalid_server_state');
        expect(r.body).toMatchObject({
          server_id: t.server.id,
          action: { id: winner, kind: winnerKind, status: 'pending' },
        });
      }
      // Deletes do not hold the server: one delete per snapshot, unless a restore from it holds it.
      if (restored.length) {
        for (const d of deletesA) {
          expectProblem(d, 400, 'invalid_snapshot_state');
          expect(d.body).toMatchObject({ snapshot_status: 'completed' });
          expect(d.body.detail).toContain('a restore from it is in progress');
        }
      } else {
        expect(deletesA.filter((d) => d.status === 204)).toHaveLength(1);
        for (const d of deletesA) if (d.status !== 204) expectProblem(d, 404, 'snapshot_not_found');
        for (const r of restores) if (r.status !== 400) expectProblem(r, 404, 'snapshot_not_found');
      }
      expect(deletesB.filter((d) => d.status === 204)).toHaveLength(1);
      for (const d of deletesB) if (d.status !== 204) expectProblem(d, 404, 'snapshot_not_found');

      // The rows agree with the answers.
      const actions = await api.prisma.action.findMany({ where: { serverId: t.server.id } });
      const count = (kind: string) => actions.filter((x) => x.kind === kind).length;
      expect(count('restore_snapshot')).toBe(restored.length);
      expect(count('create_snapshot')).toBe(created.length);
      expect(count('delete_snapshot')).toBe(
        [...deletesA, ...deletesB].filter((d) => d.status === 204).length,
      );
      const server = await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } });
      expect(server.status).toBe(restored.length ? 'restoring' : 'running');
      if (restored.length) {
        expect(actions.find((x) => x.kind === 'restore_snapshot')).toMatchObject({
          id: winner,
          snapshotId: a.id,
          serverStatusBefore: 'running',
        });
      }
      const rowA = await api.prisma.snapshot.findUniqueOrThrow({ where: { id: a.id } });
      expect(rowA.deletedAt === null).toBe(restored.length === 1);
    }
  });

  it('a restore waiting for the server lock sees a delete committed meanwhile: 404, nothing written', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const snap = await completed(t, 'gone');
    const lock = await holdServerLock(t.server.id);
    const waiting = restore(t, snap.id).then((r) => r);
    await blockedOnLock(1);
    await lock.commit((tx) =>
      tx.snapshot.update({ where: { id: snap.id }, data: { deletedAt: new Date() } }),
    );
    expectProblem(await waiting, 404, 'snapshot_not_found');
    expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(0);
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
      'running',
    );
  });

  it('a restore waiting for the server lock sees a create committed meanwhile: 400 invalid_server_state naming it', async () => {
    const t = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const snap = await completed(t, 'base');
    const lock = await holdServerLock(t.server.id);
    const waiting = restore(t, snap.id).then((r) => r);
    await blockedOnLock(1);
    let holding = 0;
    await lock.commit(async (tx) => {
      const s = await tx.snapshot.create({
        data: { accountId: t.account.id, serverId: t.server.id, name: 'racing' },
      });
      holding = (
        await tx.action.create({
          data: { kind: 'create_snapshot', accountId: t.account.id, serverId: t.server.id, snapshotId: s.id },
        })
      ).id;
    });
    const res = await waiting;
    expectProblem(res, 400, 'invalid_server_state');
    expect(res.body).toMatchObject({
      server_id: t.server.id,
      server_status: 'stopped',
      action: { id: holding, kind: 'create_snapshot', status: 'pending' },
    });
    expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(1);
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
      'stopped',
    );
  });

  it('a delete waiting for the server lock sees a restore from it committed meanwhile: 400 invalid_snapshot_state', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const snap = await completed(t, 'in-use');
    const lock = await holdServerLock(t.server.id);
    const waiting = del(t, snap.id).then((r) => r);
    await blockedOnLock(1);
    await lock.commit(async (tx) => {
      await tx.server.update({ where: { id: t.server.id }, data: { status: 'restoring' } });
      await tx.action.create({
        data: {
          kind: 'restore_snapshot',
          accountId: t.account.id,
          serverId: t.server.id,
          snapshotId: snap.id,
          serverStatusBefore: 'running',
        },
      });
    });
    const res = await waiting;
    expectProblem(res, 400, 'invalid_snapshot_state');
    expect(res.body).toMatchObject({ snapshot_status: 'completed' });
    expect(res.body.detail).toContain('a restore from it is in progress');
    expect((await api.prisma.snapshot.findUniqueOrThrow({ where: { id: snap.id } })).deletedAt).toBeNull();
    expect(await api.prisma.action.count({ where: { serverId: t.server.id, kind: 'delete_snapshot' } })).toBe(
      0,
    );
  });

  it('a restore retried with its Idempotency-Key after the first committed answers the same action, even once the server is busy', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const snap = await completed(t, 'keyed');
    const first = await restore(t, snap.id, 'restore-once');
    expect(first.status).toBe(200);
    // As if the first request died after its statement committed: the stored response is lost.
    await api.prisma.idempotencyKey.updateMany({
      where: { key: 'restore-once' },
      data: { statusCode: null, response: Prisma.DbNull, lockedUntil: null },
    });
    const retry = await restore(t, snap.id, 'restore-once');
    expect(retry.status).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    expect(retry.body).toEqual(first.body);
    expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(1);
  });
});
