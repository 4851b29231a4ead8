/**
 * Continued (see `snapshots.e2e-spec.ts` for the published examples and lifecycles):
 * the published list example reproduced byte for byte, paging and ordering, the state rules (one long
 * operation per server, what may be restored or deleted when), tenant isolation on every endpoint, and
 * a table of bad inputs (each a 400 or 404 problem, never a 5xx, never a row written).
 *
 * Two nodes: one served by an in-process worker (fake driver), and an "idle" node without a worker,
 * whose actions stay pending so that "in progress" and "restoring" states can be held deterministically.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
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
import { expectProblem } from '../support/problem-assertions';
import { Scope } from '../../src/auth/principal';
import { ProblemException } from '../../src/common/problem';
import { SnapshotsService } from '../../src/snapshots/snapshots.service';

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const MIB = 1024 * 1024;
const MAX_INT32 = 2147483647;

type Auth = Record<string, string>;
type Json = Record<string, unknown>;

describe('snapshots API rules: paging, states, tenants, bad inputs (real Postgres + Redis + worker)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let workerNodeId: number;
  let idleNodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    workerNodeId = node.id;
    idleNodeId = (await createNode(api.prisma)).id;
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: node.name }));
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  // ------------------------------------------------------------------ helpers

  async function account() {
    const acct = await createAccount(api.prisma);
    const { token } = await createToken(api.prisma, acct.id);
    return { account: acct, token, auth: { Authorization: `Bearer ${token}` } as Auth };
  }

  async function tenant(
    opts: { node?: 'worker' | 'idle'; status?: 'running' | 'stopped'; serverName?: string } = {},
  ) {
    const a = await account();
    const server = await createServer(
      api.prisma,
      a.account.id,
      opts.node === 'worker' ? workerNodeId : idleNodeId,
      {
        status: opts.status ?? 'running',
        name: opts.serverName,
      },
    );
    return { ...a, server };
  }

  /** A snapshot row written straight to the database (as a finished job would have left it). */
  function insertSnapshot(
    server: { id: number; accountId: number },
    opts: {
      name: string;
      status?: 'in_progress' | 'completed' | 'failed';
      createdAt?: Date;
      sizeBytes?: bigint;
      description?: string;
      deletedAt?: Date;
    },
  ) {
    const status = opts.status ?? 'completed';
    return api.prisma.snapshot.create({
      data: {
        accountId: server.accountId,
        serverId: server.id,
        name: opts.name,
        description: opts.description ?? '',
        status,
        progress: status === 'completed' ? 100 : 0,
        sizeBytes: status === 'completed' ? (opts.sizeBytes ?? BigInt(MIB)) : null,
        consistency: status === 'completed' ? 'stopped' : null,
        error: status === 'failed' ? 'Copying the disk failed.' : null,
        createdAt: opts.createdAt,
        completedAt: status === 'in_progress' ? null : (opts.createdAt ?? new Date()),
        deletedAt: opts.deletedAt,
      },
    });
  }

  const create = (auth: Auth, body: unknown) =>
    request(api.url)
      .post('/api/v1/snapshots/')
      .set(auth)
      .send(body as object);
  const rowCounts = async () => ({
    snapshots: await api.prisma.snapshot.count(),
    liveSnapshots: await api.prisma.snapshot.count({ where: { deletedAt: null } }),
    actions: await api.prisma.action.count(),
  });
  const path = (res: string) => {
    const u = new URL(res);
    return u.pathname + u.search;
  };

  // ------------------------------------------------------------------ the published list, byte for byte

  it('the published list example comes out exactly as published (ids aside)', async () => {
    const t = await tenant({ serverName: 'web-server-01' });
    const s798 = await insertSnapshot(t.server, {
      name: 'weekly-snapshot-2025-01-08',
      description: 'Weekly snapshot',
      sizeBytes: BigInt(4856 * MIB),
      createdAt: new Date('2025-01-08T12:00:00.000Z'),
    });
    const s801 = await insertSnapshot(t.server, {
      name: 'pre-migration-snapshot',
      description: 'Before major migration',
      sizeBytes: BigInt(5120 * MIB),
      createdAt: new Date('2025-01-15T18:30:00.456Z'),
    });
    const res = await request(api.url)
      .get(`/api/v1/snapshots/?server_id=${t.server.id}`)
      .set('Authorization', `Bearer ${t.token}`)
      .set('Content-Type', 'application/json');
    expect(res.status).toBe(200);
    const part1 = {
      count: res.body.count,
      results: res.body.results.map((s: Json) => ({
        id: s.id,
        server: s.server,
        name: s.name,
        status: s.status,
        size_mb: s.size_mb,
        created_at: s.created_at,
        description: s.description,
      })),
    };
    expect(part1).toEqual({
      count: 2,
      results: [
        {
          id: s801.id,
          server: { id: t.server.id, name: 'web-server-01' },
          name: 'pre-migration-snapshot',
          status: 'completed',
          size_mb: 5120,
          created_at: '2025-01-15T18:30:00Z',
          description: 'Before major migration',
        },
        {
          id: s798.id,
          server: { id: t.server.id, name: 'web-server-01' },
          name: 'weekly-snapshot-2025-01-08',
          status: 'completed',
          size_mb: 4856,
          created_at: '2025-01-08T12:00:00Z',
          description: 'Weekly snapshot',
        },
      ],
    });
    // This service only adds: paging links and per-snapshot fields.
    expect(res.body).toMatchObject({ next: null, previous: null });
    expect(res.body.results[0]).toMatchObject({
      progress: 100,
      consistency: 'stopped',
      completed_at: '2025-01-15T18:30:00Z',
      error: null,
    });
  });

  // ------------------------------------------------------------------ paging and ordering

  describe('paging and ordering', () => {
    let t: Awaited<ReturnType<typeof tenant>>;
    const ids: Record<string, number> = {};

    beforeAll(async () => {
      t = await tenant();
      const at = (m: number) => new Date(Date.UTC(2025, 0, 1, 12, m, 0, 500));
      ids.bravo = (await insertSnapshot(t.server, { name: 'bravo', createdAt: at(1) })).id;
      ids.alpha = (await insertSnapshot(t.server, { name: 'alpha', createdAt: at(2) })).id;
      ids.charlie = (
        await insertSnapshot(t.server, { name: 'charlie', createdAt: at(3), status: 'in_progress' })
      ).id;
      ids.delta = (await insertSnapshot(t.server, { name: 'delta', createdAt: at(4), status: 'failed' })).id;
      ids.echo = (
        await insertSnapshot(t.server, { name: 'echo', createdAt: at(5), deletedAt: new Date() })
      ).id;
    });

    const names = async (query: string) => {
      const res = await request(api.url)
        .get(`/api/v1/snapshots/?server_id=${t.server.id}${query}`)
        .set(t.auth);
      expect(res.status).toBe(200);
      return res.body.results.map((s: Json) => s.name);
    };

    it('newest first by default; failed and in-progress listed, deleted not', async () => {
      expect(await names('')).toEqual(['delta', 'charlie', 'alpha', 'bravo']);
      const res = await request(api.url).get(`/api/v1/snapshots/?server_id=${t.server.id}`).set(t.auth);
      expect(res.body.count).toBe(4);
      const byName = Object.fromEntries(res.body.results.map((s: Json) => [s.name, s]));
      expect(byName.charlie).toMatchObject({ status: 'in_progress', size_mb: null, completed_at: null });
      expect(byName.delta).toMatchObject({
        status: 'failed',
        size_mb: null,
        error: 'Copying the disk failed.',
      });
      expect(byName.alpha).toMatchObject({
        status: 'completed',
        size_mb: 1,
        created_at: '2025-01-01T12:02:00Z',
      });
    });

    it.each([
      ['created_at', ['bravo', 'alpha', 'charlie', 'delta']],
      ['-created_at', ['delta', 'charlie', 'alpha', 'bravo']],
      ['name', ['alpha', 'bravo', 'charlie', 'delta']],
      ['-name', ['delta', 'charlie', 'bravo', 'alpha']],
      ['id', ['bravo', 'alpha', 'charlie', 'delta']],
      ['-id', ['delta', 'charlie', 'alpha', 'bravo']],
    ])('ordering=%s', async (ordering, expected) => {
      expect(await names(`&ordering=${ordering}`)).toEqual(expected);
    });

    it('page / page_size with DRF next / previous links that keep the other parameters', async () => {
      const base = `/api/v1/snapshots/?server_id=${t.server.id}&ordering=name&page_size=3`;
      const p1 = await request(api.url).get(base).set(t.auth);
      expect(p1.status).toBe(200);
      expect(p1.body.count).toBe(4);
      expect(p1.body.results.map((s: Json) => s.name)).toEqual(['alpha', 'bravo', 'charlie']);
      expect(p1.body.previous).toBeNull();
      expect(path(p1.body.next)).toBe(`${base}&page=2`);
      const p2 = await request(api.url).get(path(p1.body.next)).set(t.auth);
      expect(p2.body.results.map((s: Json) => s.name)).toEqual(['delta']);
      expect(p2.body.count).toBe(4);
      expect(p2.body.next).toBeNull();
      expect(path(p2.body.previous)).toBe(base);
      // Same without the trailing slash.
      const noSlash = await request(api.url)
        .get(base.replace('/?', '?') + '&page=2')
        .set(t.auth);
      expect(noSlash.body.results.map((s: Json) => s.name)).toEqual(['delta']);
      // Past the last page: 404 as in DRF. An empty first page is fine.
      expectProblem(await request(api.url).get(`${base}&page=3`).set(t.auth), 404, 'page_not_found');
      const empty = await tenant();
      const none = await request(api.url)
        .get(`/api/v1/snapshots/?server_id=${empty.server.id}`)
        .set(empty.auth);
      expect(none.body).toEqual({ count: 0, next: null, previous: null, results: [] });
    });

    it("the unfiltered list covers all of the account's servers", async () => {
      const other = await createServer(api.prisma, t.account.id, idleNodeId);
      const extra = await insertSnapshot(other, {
        name: 'other-server',
        createdAt: new Date(Date.UTC(2025, 0, 1, 13)),
      });
      const res = await request(api.url).get('/api/v1/snapshots/').set(t.auth);
      expect(res.body.count).toBe(5);
      expect(res.body.results[0]).toMatchObject({ id: extra.id, server: { id: other.id, name: other.name } });
      expect(res.body.results.map((s: Json) => s.id)).not.toContain(ids.echo);
    });

    it.each([
      ['server_id=abc', 'server_id'],
      ['server_id=-1', 'server_id'],
      ['server_id=0', 'server_id'],
      ['server_id=1.5', 'server_id'],
      ['server_id=0x10', 'server_id'],
      ['server_id=1e3', 'server_id'],
      ['server_id=', 'server_id'],
      ['server_id=%201', 'server_id'],
      ['server_id=01', 'server_id'],
      ['server_id=2147483648', 'server_id'],
      ['server_id=99999999999999999999', 'server_id'],
      ['server_id=1&server_id=2', 'server_id'],
      ['page=0', 'page'],
      ['page=-1', 'page'],
      ['page=abc', 'page'],
      ['page_size=0', 'page_size'],
      ['page_size=101', 'page_size'],
      ['page_size=ten', 'page_size'],
      ['ordering=bogus', 'ordering'],
      ['ordering=created_at;drop', 'ordering'],
      ['ordering=size_mb', 'ordering'],
    ])('GET ?%s → 400 validation_failed naming %s', async (query, field) => {
      const res = await request(api.url).get(`/api/v1/snapshots/?${query}`).set(t.auth);
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.detail).toBe('Bad Request - Invalid parameters');
      expect(res.body.errors).toEqual(expect.arrayContaining([{ field, message: expect.any(String) }]));
    });

    it('GET ?server_id= of an unknown server → 404 server_not_found', async () => {
      const res = await request(api.url).get(`/api/v1/snapshots/?server_id=${MAX_INT32}`).set(t.auth);
      expectProblem(res, 404, 'server_not_found');
      expect(res.body.detail).toBe('Not Found - Server does not exist');
    });
  });

  // ------------------------------------------------------------------ state rules

  describe('one long operation per server, and what may be restored or deleted when', () => {
    it('while a snapshot is being created: it cannot be restored or deleted, and the server takes no other operation', async () => {
      const t = await tenant();
      const created = await create(t.auth, { server_id: t.server.id, name: 'held' });
      expect(created.status).toBe(201);
      const snap = await request(api.url).get(`/api/v1/snapshots/${created.body.id}/`).set(t.auth);
      expect(snap.body).toMatchObject({
        status: 'in_progress',
        size_mb: null,
        progress: 0,
        completed_at: null,
        error: null,
      });
      const action = await request(api.url).get(`/api/v1/actions/${created.body.action_id}/`).set(t.auth);
      expect(action.body).toMatchObject({
        kind: 'create_snapshot',
        status: 'pending',
        progress: 0,
        started_at: null,
        finished_at: null,
        error: null,
        created_at: expect.stringMatching(TIME),
      });
      const server = await request(api.url).get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
      expect(server.body).toMatchObject({
        status: 'running',
        snapshot_quota: { limit: 5, used: 1 },
        current_action: {
          id: created.body.action_id,
          kind: 'create_snapshot',
          status: 'pending',
          progress: 0,
        },
      });
      const before = await rowCounts();

      const restore = await request(api.url)
        .post(`/api/v1/snapshots/${created.body.id}/restore/`)
        .set(t.auth);
      expectProblem(restore, 400, 'invalid_snapshot_state');
      expect(restore.body.snapshot_status).toBe('in_progress');
      expect(restore.body.detail).toBe(
        `Bad Request - Snapshot ${created.body.id} cannot be restored while it is still being created`,
      );

      const del = await request(api.url).delete(`/api/v1/snapshots/${created.body.id}/`).set(t.auth);
      expectProblem(del, 400, 'invalid_snapshot_state');
      expect(del.body.snapshot_status).toBe('in_progress');

      const second = await create(t.auth, { server_id: t.server.id, name: 'second' });
      expectProblem(second, 400, 'invalid_server_state');
      expect(second.body).toMatchObject({
        server_id: t.server.id,
        server_status: 'running',
        action: { id: created.body.action_id, kind: 'create_snapshot', status: 'pending' },
      });
      expect(second.body.detail).toMatch(/^Bad Request - Server is not in a valid state for snapshot/);
      expect(second.body.detail).toContain(String(created.body.action_id));
      const cy = await create(t.auth, { server_id: t.server.id, name: 'second' }).set(
        'Accept-Language',
        'cy',
      );
      expectProblem(cy, 400, 'invalid_server_state');
      expect(cy.body.detail).toMatch(/^Cais Gwael - /);

      // A restore of another (completed) snapshot of the busy server is refused the same way.
      const done = await insertSnapshot(t.server, { name: 'older' });
      const before2 = await rowCounts();
      const other = await request(api.url).post(`/api/v1/snapshots/${done.id}/restore/`).set(t.auth);
      expectProblem(other, 400, 'invalid_server_state');
      expect(other.body.detail).toMatch(/^Bad Request - Server is not in a valid state for restoration/);
      expect(other.body.action).toEqual({
        id: created.body.action_id,
        kind: 'create_snapshot',
        status: 'pending',
      });
      expect(await rowCounts()).toEqual(before2);
      expect(before2.actions).toBe(before.actions);
      expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
        'running',
      );
      // Deleting a completed snapshot is not a server operation: allowed while the create runs.
      expect((await request(api.url).delete(`/api/v1/snapshots/${done.id}/`).set(t.auth)).status).toBe(204);
    });

    it('while a restore runs: the server is "restoring", its snapshot cannot be deleted, nothing else starts', async () => {
      const t = await tenant({ status: 'stopped' });
      const source = await insertSnapshot(t.server, { name: 'source' });
      const unrelated = await insertSnapshot(t.server, { name: 'unrelated' });
      const restore = await request(api.url).post(`/api/v1/snapshots/${source.id}/restore/`).set(t.auth);
      expect(restore.status).toBe(200);
      expect(restore.body.server).toEqual({ id: t.server.id, name: t.server.name, status: 'restoring' });
      const server = await request(api.url).get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
      expect(server.body).toMatchObject({
        status: 'restoring',
        current_action: { id: restore.body.action_id, kind: 'restore_snapshot', status: 'pending' },
      });
      const before = await rowCounts();
      const held = {
        server_status: 'restoring',
        action: { id: restore.body.action_id, kind: 'restore_snapshot', status: 'pending' },
      };

      const del = await request(api.url).delete(`/api/v1/snapshots/${source.id}/`).set(t.auth);
      expectProblem(del, 400, 'invalid_snapshot_state');
      expect(del.body.detail).toBe(
        `Bad Request - Snapshot ${source.id} cannot be deleted while a restore from it is in progress`,
      );

      const again = await request(api.url).post(`/api/v1/snapshots/${source.id}/restore/`).set(t.auth);
      expectProblem(again, 400, 'invalid_server_state');
      expect(again.body).toMatchObject(held);
      expect(again.body.detail).toMatch(
        /^Bad Request - Server is not in a valid state for restoration: its status is "restoring"/,
      );

      const otherRestore = await request(api.url)
        .post(`/api/v1/snapshots/${unrelated.id}/restore/`)
        .set(t.auth);
      expectProblem(otherRestore, 400, 'invalid_server_state');

      const snap = await create(t.auth, { server_id: t.server.id, name: 'during-restore' });
      expectProblem(snap, 400, 'invalid_server_state');
      expect(snap.body).toMatchObject(held);
      expect(await rowCounts()).toEqual(before);

      // Deleting a snapshot the restore does not read is allowed.
      expect((await request(api.url).delete(`/api/v1/snapshots/${unrelated.id}/`).set(t.auth)).status).toBe(
        204,
      );
      expect((await request(api.url).get(`/api/v1/snapshots/${source.id}/`).set(t.auth)).body.status).toBe(
        'completed',
      );
    });

    it('a server marked "restoring" with no open action still refuses create and restore (action: null)', async () => {
      const t = await tenant();
      const snap = await insertSnapshot(t.server, { name: 'x' });
      await api.prisma.server.update({ where: { id: t.server.id }, data: { status: 'restoring' } });
      const before = await rowCounts();
      const c = await create(t.auth, { server_id: t.server.id, name: 'y' });
      expectProblem(c, 400, 'invalid_server_state');
      expect(c.body).toMatchObject({ server_id: t.server.id, server_status: 'restoring', action: null });
      const r = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expectProblem(r, 400, 'invalid_server_state');
      expect(r.body).toMatchObject({ server_status: 'restoring', action: null });
      expect(await rowCounts()).toEqual(before);
    });

    it('a failed snapshot cannot be restored (400 invalid_snapshot_state) but can be deleted', async () => {
      const t = await tenant();
      const failed = await insertSnapshot(t.server, { name: 'broken', status: 'failed' });
      const before = await rowCounts();
      const r = await request(api.url).post(`/api/v1/snapshots/${failed.id}/restore/`).set(t.auth);
      expectProblem(r, 400, 'invalid_snapshot_state');
      expect(r.body.snapshot_status).toBe('failed');
      expect(await rowCounts()).toEqual(before);
      expect((await request(api.url).delete(`/api/v1/snapshots/${failed.id}/`).set(t.auth)).status).toBe(204);
      expectProblem(
        await request(api.url).get(`/api/v1/snapshots/${failed.id}/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
    });

    it('the limit counts in-progress snapshots, not failed or deleted ones', async () => {
      const t = await tenant();
      for (let i = 0; i < 4; i++) await insertSnapshot(t.server, { name: `c${i}` });
      await insertSnapshot(t.server, { name: 'f', status: 'failed' });
      await insertSnapshot(t.server, { name: 'd', deletedAt: new Date() });
      const fifth = await create(t.auth, { server_id: t.server.id, name: 'fifth' });
      expect(fifth.status).toBe(201);
      // The fifth is still in progress (no worker on this node): the server is busy, and full.
      await api.prisma.action.update({ where: { id: fifth.body.action_id }, data: { status: 'failed' } });
      const sixth = await create(t.auth, { server_id: t.server.id, name: 'sixth' });
      expectProblem(sixth, 400, 'snapshot_limit_reached');
      expect(sixth.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
    });

    it('the limit is per server, and names need not be unique', async () => {
      const t = await tenant();
      for (let i = 0; i < 5; i++) await insertSnapshot(t.server, { name: 'same' });
      const full = await create(t.auth, { server_id: t.server.id, name: 'same' });
      expectProblem(full, 400, 'snapshot_limit_reached');
      expect(full.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
      const second = await createServer(api.prisma, t.account.id, idleNodeId);
      await insertSnapshot(second, { name: 'same' });
      const ok = await create(t.auth, { server_id: second.id, name: 'same' });
      expect(ok.status).toBe(201);
      const list = await request(api.url).get(`/api/v1/snapshots/?server_id=${second.id}`).set(t.auth);
      expect(list.body.results.map((s: Json) => s.name)).toEqual(['same', 'same']);
    });

    it('20 concurrent creates at a server whose jobs never start: exactly one accepted, 19 × invalid_server_state', async () => {
      const t = await tenant();
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => create(t.auth, { server_id: t.server.id, name: `r${i}` })),
      );
      const accepted = responses.filter((r) => r.status === 201);
      expect(accepted).toHaveLength(1);
      const refused = responses.filter((r) => r.status !== 201);
      for (const r of refused) {
        expectProblem(r, 400, 'invalid_server_state');
        expect(r.body.action).toEqual({
          id: accepted[0].body.action_id,
          kind: 'create_snapshot',
          status: 'pending',
        });
      }
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(1);
      expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(1);
    });

    it('creates arriving together are answered each as alone; a server locked elsewhere holds up only its own create', async () => {
      // Creates of one turn of the event loop share a statement (SnapshotsService.createMany): it must
      // not wait for a row lock held elsewhere, nor let an unknown or foreign server or a full one change
      // the other answers. Called in one go on the service, so that they are one batch for sure.
      const t = await tenant();
      const { row: tokenRow } = await createToken(api.prisma, t.account.id);
      const me = {
        accountId: t.account.id,
        tokenId: tokenRow.id,
        scopes: ['read', 'write'] as Scope[],
        expiresAt: null,
      };
      const mine = [t.server];
      for (let i = 0; i < 5; i++) mine.push(await createServer(api.prisma, t.account.id, idleNodeId));
      const [locked, ...free] = mine;
      const stranger = await tenant();
      await insertSnapshot(free[0], { name: 'f1' });
      for (let i = 0; i < 5; i++) await insertSnapshot(free[1], { name: `full${i}` });
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let isLocked!: () => void;
      const lockHeld = new Promise<void>((r) => (isLocked = r));
      const holder = api.prisma.$transaction(
        async (tx) => {
          await tx.$queryRaw`SELECT id FROM servers WHERE id = ${locked.id} FOR UPDATE`;
          isLocked();
          await released;
        },
        { timeout: 30_000 },
      );
      await lockHeld;
      const service = api.app.get(SnapshotsService);
      const settle = (p: Promise<{ snapshot: { id: number; name: string }; actionId: number }>) =>
        p.then(
          (v) => ({ ok: v, err: null }),
          (e: unknown) => ({ ok: null, err: e as ProblemException }),
        );
      const waiting = settle(service.create(me, { serverId: locked.id, name: 'late' }));
      const together = await Promise.all([
        ...free.map((s, i) => settle(service.create(me, { serverId: s.id, name: `n${i}` }))),
        settle(service.create(me, { serverId: stranger.server.id, name: 'foreign' })),
        settle(service.create(me, { serverId: 2_000_000_000, name: 'unknown' })),
        settle(service.create(me, { serverId: free[2].id, name: 'second' })),
      ]);
      // All answered while the lock is still held.
      const [first, full, n2, n3, n4, foreign, unknown, second] = together;
      expect(full.err?.spec).toMatchObject({ status: 400, code: 'snapshot_limit_reached' });
      for (const [i, r] of [first, n2, n3, n4].entries()) {
        const k = i === 0 ? 0 : i + 1;
        expect(r.ok?.snapshot).toMatchObject({ name: `n${k}`, server: { id: free[k].id } });
      }
      expect(foreign.err?.spec).toMatchObject({ status: 404, code: 'server_not_found' });
      expect(unknown.err?.spec).toMatchObject({ status: 404, code: 'server_not_found' });
      // The second create of a server in the same batch is judged after the first: busy.
      expect(second.err?.spec).toMatchObject({ status: 400, code: 'invalid_server_state' });
      expect(await api.prisma.snapshot.count({ where: { serverId: stranger.server.id } })).toBe(0);
      expect(await api.prisma.snapshot.count({ where: { serverId: free[1].id } })).toBe(5);
      expect(await api.prisma.snapshot.count({ where: { serverId: free[2].id } })).toBe(1);
      release();
      await holder;
      const late = await waiting;
      expect(late.ok?.snapshot).toMatchObject({ name: 'late', server: { id: locked.id } });
    });

    it('a create waiting for the server lock sees what the holder committed meanwhile (limit)', async () => {
      // The create's checks must read after the lock is granted: a check reading from a snapshot taken
      // before the wait would count 4 and accept a sixth snapshot.
      const t = await tenant();
      for (let i = 0; i < 4; i++) await insertSnapshot(t.server, { name: `c${i}` });
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const holder = api.prisma.$transaction(
        async (tx) => {
          await tx.$queryRaw`SELECT id FROM servers WHERE id = ${t.server.id} FOR UPDATE`;
          locked();
          await released;
          await tx.snapshot.create({
            data: { accountId: t.account.id, serverId: t.server.id, name: 'fifth', status: 'completed' },
          });
        },
        { timeout: 30_000 },
      );
      await isLocked;
      const waiting = create(t.auth, { server_id: t.server.id, name: 'sixth' }).then((r) => r);
      // The create is blocked on the row lock before the holder writes and commits.
      await eventually(async () => {
        const [row] = await api.prisma.$queryRaw<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`;
        return row.n > 0;
      });
      release();
      await holder;
      const res = await waiting;
      expectProblem(res, 400, 'snapshot_limit_reached');
      expect(res.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(5);
    });

    it('restore and delete of the same snapshot at once: never both', async () => {
      for (let round = 0; round < 8; round++) {
        const t = await tenant();
        const snap = await insertSnapshot(t.server, { name: `r${round}` });
        const [restore, del] = await Promise.all([
          request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth),
          request(api.url).delete(`/api/v1/snapshots/${snap.id}/`).set(t.auth),
        ]);
        const outcome = `${restore.status}/${del.status}`;
        expect(['200/400', '404/204']).toContain(outcome);
        const row = await api.prisma.snapshot.findUniqueOrThrow({ where: { id: snap.id } });
        const restores = await api.prisma.action.count({
          where: { snapshotId: snap.id, kind: 'restore_snapshot' },
        });
        if (outcome === '200/400') {
          expect(del.body.code).toBe('invalid_snapshot_state');
          expect(row.deletedAt).toBeNull();
          expect(restores).toBe(1);
        } else {
          expect(restore.body.code).toBe('snapshot_not_found');
          expect(row.deletedAt).not.toBeNull();
          expect(restores).toBe(0);
          expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
            'running',
          );
        }
      }
    });
  });

  // ------------------------------------------------------------------ tenant isolation

  describe("tenant isolation: another account's ids are 404 everywhere, and nothing changes", () => {
    it('get, restore, delete, create, filter, actions and servers', async () => {
      const a = await tenant({ node: 'worker' });
      const b = await tenant({ node: 'worker' });
      const bSnap = await create(b.auth, { server_id: b.server.id, name: 'b-private' });
      expect(bSnap.status).toBe(201);
      await eventually(async () => {
        const r = await request(api.url).get(`/api/v1/actions/${bSnap.body.action_id}/`).set(b.auth);
        return r.body.status === 'succeeded';
      });
      const aOwn = await create(a.auth, { server_id: a.server.id, name: 'a-own' });
      expect(aOwn.status).toBe(201);
      const before = await rowCounts();
      const same = (res: request.Response, code: string, detail: string) => {
        expectProblem(res, 404, code);
        expect(res.body.detail).toBe(detail);
      };
      const snapNotFound = 'Not Found - Snapshot does not exist';
      same(
        await request(api.url).get(`/api/v1/snapshots/${bSnap.body.id}/`).set(a.auth),
        'snapshot_not_found',
        snapNotFound,
      );
      same(
        await request(api.url).get(`/api/v1/snapshots/${bSnap.body.id}`).set(a.auth),
        'snapshot_not_found',
        snapNotFound,
      );
      same(
        await request(api.url).post(`/api/v1/snapshots/${bSnap.body.id}/restore/`).set(a.auth),
        'snapshot_not_found',
        snapNotFound,
      );
      same(
        await request(api.url).delete(`/api/v1/snapshots/${bSnap.body.id}/`).set(a.auth),
        'snapshot_not_found',
        snapNotFound,
      );
      same(
        await request(api.url).get(`/api/v1/snapshots/?server_id=${b.server.id}`).set(a.auth),
        'server_not_found',
        'Not Found - Server does not exist',
      );
      same(
        await create(a.auth, { server_id: b.server.id, name: 'x' }),
        'server_not_found',
        'Not Found - Server does not exist',
      );
      same(
        await request(api.url).get(`/api/v1/actions/${bSnap.body.action_id}/`).set(a.auth),
        'action_not_found',
        'Not Found - Action does not exist',
      );
      same(
        await request(api.url).get(`/api/v1/servers/${b.server.id}/`).set(a.auth),
        'server_not_found',
        'Not Found - Server does not exist',
      );
      // Indistinguishable from ids that do not exist at all.
      const ghost = await request(api.url).get(`/api/v1/snapshots/${MAX_INT32}/`).set(a.auth);
      const foreign = await request(api.url).get(`/api/v1/snapshots/${bSnap.body.id}/`).set(a.auth);
      const strip = (body: Json) => ({ ...body, request_id: undefined });
      expect(strip(foreign.body)).toEqual(strip(ghost.body));
      // Lists show only the caller's own.
      const listA = await request(api.url).get('/api/v1/snapshots/').set(a.auth);
      expect(listA.body.results.map((s: Json) => s.id)).toEqual([aOwn.body.id]);
      // Nothing was written or changed for B.
      expect(await rowCounts()).toEqual(before);
      const bView = await request(api.url).get(`/api/v1/snapshots/${bSnap.body.id}/`).set(b.auth);
      expect(bView.body).toMatchObject({ status: 'completed', name: 'b-private' });
      expect((await api.prisma.server.findUniqueOrThrow({ where: { id: b.server.id } })).status).toBe(
        'running',
      );
    });
  });

  // ------------------------------------------------------------------ bad inputs

  describe('bad inputs: a 400 or 404 problem, never a 5xx, never a row written', () => {
    // A fresh server for every case, so that one wrongly accepted body cannot mask the next case.
    let t: Awaited<ReturnType<typeof tenant>>;
    beforeEach(async () => {
      t = await tenant();
    });

    const own = () => t.server.id;
    const bodies: [string, () => unknown, string[]][] = [
      ['empty object', () => ({}), ['server_id', 'name']],
      ['missing name', () => ({ server_id: own() }), ['name']],
      ['missing server_id', () => ({ name: 'x' }), ['server_id']],
      ['server_id as a string "12"', () => ({ server_id: String(own()), name: 'x' }), ['server_id']],
      ['server_id fractional', () => ({ server_id: own() + 0.5, name: 'x' }), ['server_id']],
      ['server_id negative', () => ({ server_id: -1, name: 'x' }), ['server_id']],
      ['server_id zero', () => ({ server_id: 0, name: 'x' }), ['server_id']],
      ['server_id 2^31', () => ({ server_id: MAX_INT32 + 1, name: 'x' }), ['server_id']],
      ['server_id 1e300', () => ({ server_id: 1e300, name: 'x' }), ['server_id']],
      ['server_id true', () => ({ server_id: true, name: 'x' }), ['server_id']],
      ['server_id null', () => ({ server_id: null, name: 'x' }), ['server_id']],
      ['server_id array', () => ({ server_id: [own()], name: 'x' }), ['server_id']],
      ['server_id object', () => ({ server_id: { id: own() }, name: 'x' }), ['server_id']],
      ['name a number', () => ({ server_id: own(), name: 5 }), ['name']],
      ['name null', () => ({ server_id: own(), name: null }), ['name']],
      ['name empty', () => ({ server_id: own(), name: '' }), ['name']],
      ['name with a space', () => ({ server_id: own(), name: 'my snapshot' }), ['name']],
      ['name with a dot', () => ({ server_id: own(), name: 'v1.2' }), ['name']],
      ['name with a slash', () => ({ server_id: own(), name: '../etc' }), ['name']],
      ['name with a quote', () => ({ server_id: own(), name: "x'; DROP TABLE snapshots;--" }), ['name']],
      ['name non-ASCII', () => ({ server_id: own(), name: 'café' }), ['name']],
      ['name trailing newline', () => ({ server_id: own(), name: 'ok\n' }), ['name']],
      ['name 65 characters', () => ({ server_id: own(), name: 'a'.repeat(65) }), ['name']],
      ['name an array', () => ({ server_id: own(), name: ['a'] }), ['name']],
      [
        'description 1001 characters',
        () => ({ server_id: own(), name: 'x', description: 'd'.repeat(1001) }),
        ['description'],
      ],
      ['description a number', () => ({ server_id: own(), name: 'x', description: 5 }), ['description']],
      ['description null', () => ({ server_id: own(), name: 'x', description: null }), ['description']],
      ['description an object', () => ({ server_id: own(), name: 'x', description: {} }), ['description']],
      [
        'description with a NUL character',
        () => ({ server_id: own(), name: 'x', description: 'a\u0000b' }),
        ['description'],
      ],
      [
        'description of 1000 emoji with variation selectors (2000 characters)',
        () => ({ server_id: own(), name: 'x', description: '\u2764\ufe0f'.repeat(1000) }),
        ['description'],
      ],
      ['an extra field', () => ({ server_id: own(), name: 'x', extra: 1 }), ['extra']],
      [
        'a read-only field (status)',
        () => ({ server_id: own(), name: 'x', status: 'completed' }),
        ['status'],
      ],
      ['a read-only field (id)', () => ({ server_id: own(), name: 'x', id: 1 }), ['id']],
      ['a JSON array', () => [{ server_id: own(), name: 'x' }], []],
    ];

    it.each(bodies)('POST body: %s → 400 validation_failed', async (_label, body, fields) => {
      const before = await rowCounts();
      const res = await create(t.auth, body());
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.detail).toBe('Bad Request - Invalid parameters');
      const named = (res.body.errors as { field: string; message: string }[]).map((e) => e.field);
      for (const f of fields) expect(named).toContain(f);
      for (const e of res.body.errors)
        expect(e).toEqual({ field: expect.any(String), message: expect.any(String) });
      expect(await rowCounts()).toEqual(before);
    });

    it.each([
      ['malformed JSON', '{"server_id": ', 'malformed_json'],
      ['trailing comma', '{"server_id": 1, "name": "x",}', 'malformed_json'],
      ['a bare string', '"snapshot"', 'malformed_json'],
      ['null', 'null', 'malformed_json'],
      ['an empty body', '', 'validation_failed'],
    ])('POST raw body: %s → 400 %s', async (_label, raw, code) => {
      const before = await rowCounts();
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Content-Type', 'application/json')
        .send(raw.replace('SERVER', String(own())));
      expectProblem(res, 400, code);
      expect(await rowCounts()).toEqual(before);
    });

    it('a "__proto__" member is refused like any extra field, without prototype pollution', async () => {
      const before = await rowCounts();
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Content-Type', 'application/json')
        .send(`{"server_id": ${own()}, "name": "x", "__proto__": {"admin": true, "status": "completed"}}`);
      expectProblem(res, 400, 'validation_failed');
      expect(({} as Json).admin).toBeUndefined();
      expect(await rowCounts()).toEqual(before);
    });

    it('validation problems are Welsh with Accept-Language: cy', async () => {
      const res = await create(t.auth, { server_id: own(), name: 'not ok' }).set('Accept-Language', 'cy');
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.detail).toBe('Cais Gwael - Paramedrau annilys');
      expect(res.body.errors).toEqual([{ field: 'name', message: expect.any(String) }]);
    });

    it('POST with a non-JSON body → 415, nothing written', async () => {
      const before = await rowCounts();
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Content-Type', 'application/x-www-form-urlencoded')
        .send(`server_id=${own()}&name=x`);
      expectProblem(res, 415, 'unsupported_media_type');
      expect(await rowCounts()).toEqual(before);
    });

    it.each([
      ['abc'],
      ['-1'],
      ['0'],
      ['1.5'],
      ['0x10'],
      ['1e3'],
      ['01'],
      ['2147483648'],
      ['99999999999999999999'],
      ['%20'],
      ['1%2C2'],
    ])('path id %s → 404 on GET, restore, DELETE (and actions)', async (id) => {
      const before = await rowCounts();
      for (const [method, p] of [
        ['get', `/api/v1/snapshots/${id}/`],
        ['get', `/api/v1/snapshots/${id}`],
        ['post', `/api/v1/snapshots/${id}/restore/`],
        ['post', `/api/v1/snapshots/${id}/restore`],
        ['delete', `/api/v1/snapshots/${id}/`],
        ['delete', `/api/v1/snapshots/${id}`],
      ] as const) {
        const res = await request(api.url)[method](p).set(t.auth);
        expectProblem(res, 404, 'snapshot_not_found');
        expect(res.body.detail).toBe('Not Found - Snapshot does not exist');
      }
      expectProblem(
        await request(api.url).get(`/api/v1/actions/${id}/`).set(t.auth),
        404,
        'action_not_found',
      );
      expect(await rowCounts()).toEqual(before);
    });

    it('the documented bounds themselves are accepted: 64-character name, 1000-character description, every allowed character', async () => {
      const cases = [
        { name: 'a'.repeat(64) },
        { name: 'Az09_-', description: 'd'.repeat(1000) },
        { name: 'x', description: '😀'.repeat(1000) }, // 1000 characters outside the BMP
        { name: '-', description: '' },
        { name: '_', description: 'ünïcödé, "quotes", <tags> & \\ backslashes' },
      ];
      for (const body of cases) {
        const s = await tenant();
        const res = await create(s.auth, { server_id: s.server.id, ...body });
        expect(res.status).toBe(201);
        expect(res.body).toMatchObject({ name: body.name, description: body.description ?? '' });
        const again = await request(api.url).get(`/api/v1/snapshots/${res.body.id}/`).set(s.auth);
        expect(again.body).toMatchObject({ name: body.name, description: body.description ?? '' });
      }
    });
  });
});
