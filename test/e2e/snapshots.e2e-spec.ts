/**
 * The snapshots API exactly as published plus this service's additions, end to end
 * on real Postgres + Redis with an in-process worker on a fake hypervisor node.
 *
 * This file: the published examples (201/200/204/400/401/404, with and without the trailing slash),
 * whole lifecycles (create, restore with real disk content, delete), the actions resource, job failures
 * and retries, the per-server limit, the 20-concurrent-creates race and Welsh messages.
 * Bad inputs, tenant isolation, state rules and paging are in `snapshots-rules.e2e-spec.ts`.
 */
import { INestApplicationContext } from '@nestjs/common';
import { Client } from 'pg';
import request from 'supertest';
import { FakeHypervisorDriver, fakeDomainUuid } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER, HypervisorError } from '../../src/hypervisor/hypervisor-driver';
import { JobQueue } from '../../src/jobs/job-queue';
import { createAccount, createNode, createServer, createTenant, createToken } from '../factories';
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

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const MIB = 1024 * 1024;
const PUBLISHED = {
  createMessage: 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
  restoreMessage: 'Server is being restored from snapshot. This may take 5-15 minutes.',
  unauthorized: 'Unauthorized - Invalid or missing authentication token',
  serverNotFound: 'Not Found - Server does not exist',
  snapshotNotFound: 'Not Found - Snapshot does not exist',
};
const WELSH = {
  createMessage: "Mae'r ciplun yn cael ei greu. Gall hyn gymryd 3-10 munud yn dibynnu ar faint y gweinydd.",
  restoreMessage: "Mae'r gweinydd yn cael ei adfer o'r ciplun. Gall hyn gymryd 5-15 munud.",
  unauthorized: 'Heb awdurdod - Tocyn dilysu annilys neu ar goll',
  snapshotNotFound: "Heb ei Ganfod - Nid yw'r ciplun yn bodoli",
};
/** The fields the contract publishes for a snapshot, and what this service adds. */
const PART1_SNAPSHOT_FIELDS = ['id', 'server', 'name', 'status', 'size_mb', 'created_at', 'description'];
const PART2_SNAPSHOT_FIELDS = [
  'progress',
  'consistency',
  'completed_at',
  'error',
  'protection',
  'kind',
  'expires_at',
];
// Labels (`{}` when none): test/e2e/labels.e2e-spec.ts.
PART2_SNAPSHOT_FIELDS.push('labels');

type Auth = Record<string, string>;
type Json = Record<string, unknown>;

const pick = (o: Json, keys: string[]): Json => Object.fromEntries(keys.map((k) => [k, o[k]]));
const noSlash = (p: string) => p.replace(/\/(?=$|\?)/, '');

describe('snapshots API as published (real Postgres + Redis + in-process worker, fake node)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let nodeId: number;
  let snapshotDir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    snapshotDir = node.snapshotDir;
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: node.name }));
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    expect(driver).toBeInstanceOf(FakeHypervisorDriver);
  });
  afterEach(() => driver?.clearFailures());
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  // ------------------------------------------------------------------ helpers

  /** Every snapshot representation: exactly the published fields plus this service's, with the published types. */
  const expectSnapshotShape = (s: Json) => {
    expect(Object.keys(s).sort()).toEqual([...PART1_SNAPSHOT_FIELDS, ...PART2_SNAPSHOT_FIELDS].sort());
    expect(s.created_at).toMatch(TIME);
    if (s.status === 'completed') {
      expect(Number.isInteger(s.size_mb)).toBe(true);
      expect(s.completed_at).toMatch(TIME);
      expect(s.progress).toBe(100);
      expect(['stopped', 'quiesced', 'crash_consistent']).toContain(s.consistency);
      expect(s.error).toBeNull();
    } else {
      expect(s.size_mb).toBeNull();
    }
    if (s.status === 'failed') expect(typeof s.error).toBe('string');
  };

  /** A server on the worker's node, with its fake domain defined (power state and disk as given). */
  async function tenant(
    opts: {
      status?: 'running' | 'stopped';
      serverName?: string;
      disk?: Buffer;
      gracefulShutdown?: boolean;
    } = {},
  ) {
    const status = opts.status ?? 'running';
    const account = await createAccount(api.prisma);
    const { token } = await createToken(api.prisma, account.id);
    const server = await createServer(api.prisma, account.id, nodeId, { status, name: opts.serverName });
    driver.defineDomain(server.domain, {
      diskPath: server.diskPath,
      running: status === 'running',
      diskBytes: opts.disk ?? Buffer.from(`disk of ${server.name}`),
      gracefulShutdown: opts.gracefulShutdown,
    });
    return { account, token, server, auth: { Authorization: `Bearer ${token}` } as Auth };
  }

  const create = (auth: Auth, body: Json, path = '/api/v1/snapshots/') =>
    request(api.url).post(path).set(auth).send(body);

  async function waitAction(auth: Auth, actionId: number): Promise<Json> {
    return eventually(async () => {
      const r = await request(api.url).get(`/api/v1/actions/${actionId}/`).set(auth);
      return r.body.status === 'succeeded' || r.body.status === 'failed' ? (r.body as Json) : null;
    });
  }

  const getSnapshot = async (auth: Auth, id: number) =>
    (await request(api.url).get(`/api/v1/snapshots/${id}/`).set(auth)).body as Json;

  const getServer = async (auth: Auth, id: number) =>
    (await request(api.url).get(`/api/v1/servers/${id}/`).set(auth)).body as Json;

  /** Creates a snapshot and waits for its job to end; returns the final snapshot. */
  async function snapshotDone(auth: Auth, serverId: number, name: string): Promise<Json> {
    const res = await create(auth, { server_id: serverId, name });
    expect(res.status).toBe(201);
    await waitAction(auth, res.body.action_id);
    return getSnapshot(auth, res.body.id);
  }

  const rowCounts = async () => ({
    snapshots: await api.prisma.snapshot.count(),
    actions: await api.prisma.action.count(),
  });

  // ------------------------------------------------------------------ published examples

  describe('published examples', () => {
    it('POST /api/v1/snapshots/ → 201 with exactly the published body (curl example)', async () => {
      const t = await tenant({ serverName: 'web-server-01' });
      const before = Date.now();
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set('Authorization', `Bearer ${t.token}`)
        .set('Content-Type', 'application/json')
        .send(
          `{\n"server_id": ${t.server.id},\n"name": "before-update-snapshot",\n"description": "Snapshot before system update"\n}`,
        );
      expect(res.status).toBe(201);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(pick(res.body, [...PART1_SNAPSHOT_FIELDS, 'message'])).toEqual({
        id: expect.any(Number),
        server: { id: t.server.id, name: 'web-server-01' },
        name: 'before-update-snapshot',
        status: 'in_progress',
        size_mb: null,
        created_at: expect.stringMatching(TIME),
        description: 'Snapshot before system update',
        message: PUBLISHED.createMessage,
      });
      expect(Object.keys(res.body).sort()).toEqual(
        [...PART1_SNAPSHOT_FIELDS, ...PART2_SNAPSHOT_FIELDS, 'message', 'action_id'].sort(),
      );
      expect(res.body).toMatchObject({ progress: 0, consistency: null, completed_at: null, error: null });
      expect(Number.isInteger(res.body.action_id)).toBe(true);
      const createdAt = Date.parse(res.body.created_at);
      expect(createdAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(createdAt).toBeLessThanOrEqual(Date.now());
      await waitAction(t.auth, res.body.action_id);
    });

    it('201 bodies always say in_progress with size_mb null, even when the worker is quicker than the response', async () => {
      // 10 creates at once on 10 servers, with a worker that copies instantly: the response must still
      // describe the snapshot as accepted, not as whatever the job made of it meanwhile.
      const tenants = await Promise.all(Array.from({ length: 10 }, () => tenant({ status: 'stopped' })));
      const responses = await Promise.all(
        tenants.map((t, i) => create(t.auth, { server_id: t.server.id, name: `s${i}` })),
      );
      for (const res of responses) {
        expect(res.status).toBe(201);
        expect(res.body).toMatchObject({
          status: 'in_progress',
          size_mb: null,
          progress: 0,
          completed_at: null,
        });
      }
      await Promise.all(responses.map((res, i) => waitAction(tenants[i].auth, res.body.action_id)));
    });

    it('the 201 body describes the snapshot as accepted even when the job finished before the response was built', async () => {
      // Widen the window between "transaction committed, job enqueued" and "response built": hold the
      // server row so the create waits, fill the API's connection pool (20) with slow queries plus one
      // queued behind them, then let the create commit. The job (worker's own pool) finishes at once.
      const t = await tenant({ status: 'stopped' });
      const locker = new Client({ connectionString: db.url });
      // pg_stat_activity is cached for a transaction's duration: watch it from another connection.
      const monitor = new Client({ connectionString: db.url });
      await locker.connect();
      await monitor.connect();
      const sleepers: Promise<unknown>[] = [];
      try {
        await locker.query('BEGIN');
        await locker.query('SELECT 1 FROM servers WHERE id = $1 FOR UPDATE', [t.server.id]);
        const pending = create(t.auth, { server_id: t.server.id, name: 'quick' }).then((r) => r);
        const count = async (sql: string) => Number((await monitor.query(sql)).rows[0].n);
        await eventually(
          async () =>
            (await count(
              "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND wait_event_type = 'Lock' AND datname = current_database()",
            )) >= 1,
        );
        // (Prisma queries are lazy: `then` starts them.)
        for (let i = 0; i < 20; i++)
          sleepers.push(
            api.prisma.$queryRaw`SELECT 1 AS slept FROM pg_sleep(1.5)`.then(
              () => undefined,
              () => undefined,
            ),
          );
        await eventually(
          async () =>
            (await count(
              "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT 1 AS slept%' AND state = 'active'",
            )) >= 19,
        );
        await locker.query('COMMIT');
        const res = await pending;
        expect(res.status).toBe(201);
        expect(res.body).toMatchObject({
          status: 'in_progress',
          size_mb: null,
          progress: 0,
          completed_at: null,
        });
        expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({ status: 'succeeded' });
      } finally {
        await locker.query('ROLLBACK').catch(() => undefined);
        await locker.end();
        await monitor.end();
        await Promise.allSettled(sleepers);
      }
    });

    it('GET /api/v1/snapshots/?server_id= → 200 {count, results} newest first with the published fields', async () => {
      const t = await tenant({ serverName: 'web-server-01', disk: Buffer.alloc(5 * MIB, 7) });
      const older = await snapshotDone(t.auth, t.server.id, 'weekly-snapshot-2025-01-08');
      const newer = await snapshotDone(t.auth, t.server.id, 'pre-migration-snapshot');
      for (const path of [
        `/api/v1/snapshots/?server_id=${t.server.id}`,
        `/api/v1/snapshots?server_id=${t.server.id}`,
      ]) {
        const res = await request(api.url)
          .get(path)
          .set('Authorization', `Bearer ${t.token}`)
          .set('Content-Type', 'application/json');
        expect(res.status).toBe(200);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        expect(Object.keys(res.body).sort()).toEqual(['count', 'next', 'previous', 'results']);
        expect(res.body.count).toBe(2);
        expect(res.body.next).toBeNull();
        expect(res.body.previous).toBeNull();
        expect(res.body.results.map((s: Json) => pick(s, PART1_SNAPSHOT_FIELDS))).toEqual([
          {
            id: newer.id,
            server: { id: t.server.id, name: 'web-server-01' },
            name: 'pre-migration-snapshot',
            status: 'completed',
            size_mb: 5,
            created_at: expect.stringMatching(TIME),
            description: '',
          },
          {
            id: older.id,
            server: { id: t.server.id, name: 'web-server-01' },
            name: 'weekly-snapshot-2025-01-08',
            status: 'completed',
            size_mb: 5,
            created_at: expect.stringMatching(TIME),
            description: '',
          },
        ]);
        res.body.results.forEach(expectSnapshotShape);
        expect(res.body.results[0].created_at >= res.body.results[1].created_at).toBe(true);
      }
      // Without the filter: all of the account's snapshots (and nobody else's).
      const all = await request(api.url).get('/api/v1/snapshots/').set(t.auth);
      expect(all.status).toBe(200);
      expect(all.body.results.map((s: Json) => s.id)).toEqual([newer.id, older.id]);
    });

    it('POST /api/v1/snapshots/{id}/restore/ → 200 with exactly the published body (no request body, as published)', async () => {
      const t = await tenant({ serverName: 'web-server-01' });
      const snap = await snapshotDone(t.auth, t.server.id, 'pre-migration-snapshot');
      const res = await request(api.url)
        .post(`/api/v1/snapshots/${snap.id}/restore/`)
        .set('Authorization', `Bearer ${t.token}`)
        .set('Content-Type', 'application/json');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const { action_id: actionId, ...published } = res.body;
      expect(published).toEqual({
        status: 'success',
        message: PUBLISHED.restoreMessage,
        snapshot: { id: snap.id, name: 'pre-migration-snapshot', created_at: snap.created_at },
        server: { id: t.server.id, name: 'web-server-01', status: 'restoring' },
      });
      expect(res.body.snapshot.created_at).toMatch(TIME);
      expect(Number.isInteger(actionId)).toBe(true);
      expect(await waitAction(t.auth, actionId)).toMatchObject({
        kind: 'restore_snapshot',
        status: 'succeeded',
      });
    });

    it('DELETE /api/v1/snapshots/{id}/ → 204 with no body (as published, Content-Type header and no body)', async () => {
      const t = await tenant();
      const snap = await snapshotDone(t.auth, t.server.id, 'to-delete');
      const res = await request(api.url)
        .delete(`/api/v1/snapshots/${snap.id}/`)
        .set('Authorization', `Bearer ${t.token}`)
        .set('Content-Type', 'application/json');
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
    });

    it('every path works without the trailing slash too', async () => {
      const t = await tenant();
      const created = await create(t.auth, { server_id: t.server.id, name: 'no-slash' }, '/api/v1/snapshots');
      expect(created.status).toBe(201);
      await waitAction(t.auth, created.body.action_id);
      const id = created.body.id;
      const list = await request(api.url).get(`/api/v1/snapshots?server_id=${t.server.id}`).set(t.auth);
      expect(list.status).toBe(200);
      expect(list.body.count).toBe(1);
      const detail = await request(api.url).get(`/api/v1/snapshots/${id}`).set(t.auth);
      expect(detail.status).toBe(200);
      expect(detail.body.id).toBe(id);
      const restored = await request(api.url).post(`/api/v1/snapshots/${id}/restore`).set(t.auth);
      expect(restored.status).toBe(200);
      const action = await request(api.url).get(`/api/v1/actions/${restored.body.action_id}`).set(t.auth);
      expect(action.status).toBe(200);
      await waitAction(t.auth, restored.body.action_id);
      const deleted = await request(api.url).delete(`/api/v1/snapshots/${id}`).set(t.auth);
      expect(deleted.status).toBe(204);
      const gone = await request(api.url).get(`/api/v1/snapshots/${id}`).set(t.auth);
      expectProblem(gone, 404, 'snapshot_not_found');
    });

    describe('401 on every endpoint, with the published detail', () => {
      const endpoints: [string, string, Json?][] = [
        ['GET', '/api/v1/snapshots/'],
        ['GET', '/api/v1/snapshots/?server_id=1'],
        ['POST', '/api/v1/snapshots/', { server_id: 1, name: 'x' }],
        ['POST', '/api/v1/snapshots/1/restore/'],
        ['DELETE', '/api/v1/snapshots/1/'],
        ['GET', '/api/v1/snapshots/1/'],
        ['GET', '/api/v1/actions/1/'],
      ];
      const headers: [string, string | undefined][] = [
        ['missing token', undefined],
        ['unknown token', 'Bearer vps_0000000000000000000000000000000000000000'],
        ['not a bearer token', 'Basic dXNlcjpwYXNz'],
      ];
      it.each(endpoints.flatMap(([m, p, b]) => [[m, p, b] as const, [m, noSlash(p), b] as const]))(
        '%s %s',
        async (method, path, body) => {
          const before = await rowCounts();
          for (const [, header] of headers) {
            let req = request(api.url)[method.toLowerCase() as 'get' | 'post' | 'delete'](path);
            if (header) req = req.set('Authorization', header);
            const res = await (body ? req.send(body) : req);
            expectProblem(res, 401, 'unauthorized');
            expect(res.body.detail).toBe(PUBLISHED.unauthorized);
            expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
          }
          const verb = method.toLowerCase() as 'get' | 'post' | 'delete';
          const welsh = await request(api.url)[verb](path).set('Accept-Language', 'cy');
          expect(welsh.body.detail).toBe(WELSH.unauthorized);
          expect(await rowCounts()).toEqual(before);
        },
      );

      it('an expired or revoked token is 401 too', async () => {
        const t = await tenant();
        const expired = await createToken(api.prisma, t.account.id, {
          expiresAt: new Date(Date.now() - 1000),
        });
        const revoked = await createToken(api.prisma, t.account.id, { revokedAt: new Date() });
        for (const tok of [expired.token, revoked.token]) {
          const res = await create({ Authorization: `Bearer ${tok}` }, { server_id: t.server.id, name: 'x' });
          expectProblem(res, 401, 'unauthorized');
        }
        expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(0);
      });
    });

    it('a read-only token can list but not create, restore or delete (403, nothing written)', async () => {
      const t = await tenant();
      const snap = await snapshotDone(t.auth, t.server.id, 'ro');
      const ro = {
        Authorization: `Bearer ${(await createToken(api.prisma, t.account.id, { scopes: ['read'] })).token}`,
      };
      expect((await request(api.url).get('/api/v1/snapshots/').set(ro)).status).toBe(200);
      const before = await rowCounts();
      expectProblem(await create(ro, { server_id: t.server.id, name: 'x' }), 403, 'forbidden');
      expectProblem(
        await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(ro),
        403,
        'forbidden',
      );
      expectProblem(await request(api.url).delete(`/api/v1/snapshots/${snap.id}/`).set(ro), 403, 'forbidden');
      expect(await rowCounts()).toEqual(before);
      expect((await getSnapshot(t.auth, snap.id as number)).status).toBe('completed');
    });

    it('404 with the published details: unknown server on create, unknown snapshot on restore/delete/detail', async () => {
      const t = await tenant();
      const before = await rowCounts();
      const noServer = await create(t.auth, { server_id: 2147483647, name: 'x' });
      expectProblem(noServer, 404, 'server_not_found');
      expect(noServer.body.detail).toBe(PUBLISHED.serverNotFound);
      for (const [method, path] of [
        ['post', '/api/v1/snapshots/2147483647/restore/'],
        ['delete', '/api/v1/snapshots/2147483647/'],
        ['get', '/api/v1/snapshots/2147483647/'],
      ] as const) {
        const res = await request(api.url)[method](path).set(t.auth);
        expectProblem(res, 404, 'snapshot_not_found');
        expect(res.body.detail).toBe(PUBLISHED.snapshotNotFound);
        const cy = await request(api.url)[method](path).set(t.auth).set('Accept-Language', 'cy');
        expectProblem(cy, 404, 'snapshot_not_found');
        expect(cy.body.detail).toBe(WELSH.snapshotNotFound);
      }
      expect(await rowCounts()).toEqual(before);
    });
  });

  // ------------------------------------------------------------------ lifecycles

  describe('lifecycles', () => {
    it('create → completed with size_mb, consistency, progress and completed_at; the action records it', async () => {
      const disk = Buffer.alloc(3 * MIB, 0xab);
      const t = await tenant({ status: 'running', disk });
      const res = await create(t.auth, { server_id: t.server.id, name: 'life', description: 'lifecycle' });
      expect(res.status).toBe(201);
      const action = await waitAction(t.auth, res.body.action_id);
      expect(action).toEqual({
        id: res.body.action_id,
        kind: 'create_snapshot',
        status: 'succeeded',
        progress: 100,
        server: { id: t.server.id, name: t.server.name },
        snapshot: { id: res.body.id, name: 'life' },
        backup: null,
        error: null,
        created_at: expect.stringMatching(TIME),
        started_at: expect.stringMatching(TIME),
        finished_at: expect.stringMatching(TIME),
        safety_copy: null,
        undo_of: null,
      });
      const snap = await getSnapshot(t.auth, res.body.id);
      expectSnapshotShape(snap);
      expect(snap).toMatchObject({
        id: res.body.id,
        status: 'completed',
        size_mb: 3,
        progress: 100,
        consistency: 'crash_consistent', // the fake copies a running server live, without an agent
        description: 'lifecycle',
        created_at: res.body.created_at,
        error: null,
      });
      expect(driver.readSnapshot(snapshotDir, res.body.id)?.equals(disk)).toBe(true);
      const server = await getServer(t.auth, t.server.id);
      expect(server).toMatchObject({
        status: 'running',
        snapshot_quota: { limit: 5, used: 1 },
        current_action: null,
      });
    });

    it('a stopped server is copied with consistency "stopped"', async () => {
      const t = await tenant({ status: 'stopped' });
      const snap = await snapshotDone(t.auth, t.server.id, 'cold');
      expect(snap).toMatchObject({ status: 'completed', consistency: 'stopped', size_mb: 1 });
    });

    it('restore of a running server: stopped first, disk content restored, running again', async () => {
      const A = Buffer.from('A'.repeat(4096));
      const B = Buffer.from('B'.repeat(4096));
      const t = await tenant({ status: 'running', disk: A });
      const snap = await snapshotDone(t.auth, t.server.id, 'with-a');
      driver.writeDisk(t.server.domain, B);
      expect(driver.readDisk(t.server.domain)).toEqual(B);
      const stopsBefore = driver.callCount('stop');
      driver.injectFailure({ method: 'restoreSnapshot', mode: 'delay', ms: 600 });
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      expect(res.body.server.status).toBe('restoring');
      // While it runs, the server is "restoring" and names the action holding it.
      const during = await getServer(t.auth, t.server.id);
      expect(during).toMatchObject({
        status: 'restoring',
        current_action: {
          id: res.body.action_id,
          kind: 'restore_snapshot',
          status: expect.stringMatching(/^(pending|running)$/),
        },
      });
      const action = await waitAction(t.auth, res.body.action_id);
      expect(action).toMatchObject({
        kind: 'restore_snapshot',
        status: 'succeeded',
        progress: 100,
        error: null,
        server: { id: t.server.id, name: t.server.name },
        snapshot: { id: snap.id, name: 'with-a' },
        started_at: expect.stringMatching(TIME),
        finished_at: expect.stringMatching(TIME),
      });
      expect(driver.readDisk(t.server.domain)).toEqual(A);
      expect(driver.callCount('stop')).toBeGreaterThan(stopsBefore);
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('running');
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'running', current_action: null });
      // The snapshot itself is untouched and can be restored again.
      expect(await getSnapshot(t.auth, snap.id as number)).toMatchObject({ status: 'completed', size_mb: 1 });
    });

    it('restore of a stopped server: disk restored, it stays stopped', async () => {
      const A = Buffer.from('first content');
      const t = await tenant({ status: 'stopped', disk: A });
      const snap = await snapshotDone(t.auth, t.server.id, 'cold-a');
      driver.writeDisk(t.server.domain, Buffer.from('second content, longer than the first'));
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      expect(res.body.server).toEqual({ id: t.server.id, name: t.server.name, status: 'restoring' });
      expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({ status: 'succeeded' });
      expect(driver.readDisk(t.server.domain)).toEqual(A);
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('stopped');
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'stopped', current_action: null });
    });

    it('delete → gone from detail and list at once, slot freed, storage removed by a succeeded action', async () => {
      const t = await tenant();
      const keep = await snapshotDone(t.auth, t.server.id, 'keep');
      const snap = await snapshotDone(t.auth, t.server.id, 'drop');
      expect(driver.readSnapshot(snapshotDir, snap.id as number)).toBeDefined();
      expect((await getServer(t.auth, t.server.id)).snapshot_quota).toEqual({ limit: 5, used: 2 });
      const res = await request(api.url).delete(`/api/v1/snapshots/${snap.id}/`).set(t.auth);
      expect(res.status).toBe(204);
      expectProblem(
        await request(api.url).get(`/api/v1/snapshots/${snap.id}/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
      const list = await request(api.url).get(`/api/v1/snapshots/?server_id=${t.server.id}`).set(t.auth);
      expect(list.body.count).toBe(1);
      expect(list.body.results.map((s: Json) => s.id)).toEqual([keep.id]);
      expect((await getServer(t.auth, t.server.id)).snapshot_quota).toEqual({ limit: 5, used: 1 });
      const del = await api.prisma.action.findFirstOrThrow({
        where: { snapshotId: snap.id as number, kind: 'delete_snapshot' },
      });
      expect(await waitAction(t.auth, del.id)).toMatchObject({
        kind: 'delete_snapshot',
        status: 'succeeded',
        server: { id: t.server.id, name: t.server.name },
        snapshot: { id: snap.id, name: 'drop' },
        error: null,
      });
      expect(driver.readSnapshot(snapshotDir, snap.id as number)).toBeUndefined();
      expect(driver.readSnapshot(snapshotDir, keep.id as number)).toBeDefined();
      // Once deleted it is "not found" for every endpoint.
      expectProblem(
        await request(api.url).delete(`/api/v1/snapshots/${snap.id}/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
      expectProblem(
        await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
    });
  });

  // ------------------------------------------------------------------ failures

  describe('job failures', () => {
    it('createSnapshot failing on every attempt → snapshot failed with error, action failed, no slot used, deletable', async () => {
      const t = await tenant();
      driver.injectFailure({ method: 'createSnapshot', mode: 'fail_always' });
      const res = await create(t.auth, { server_id: t.server.id, name: 'doomed' });
      expect(res.status).toBe(201);
      const action = await waitAction(t.auth, res.body.action_id);
      expect(action).toMatchObject({
        kind: 'create_snapshot',
        status: 'failed',
        error: { code: 'copy_failed', message: 'Copying the disk failed.' },
        finished_at: expect.stringMatching(TIME),
      });
      const row = await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } });
      expect(row.attempts).toBe(3); // JOB_ATTEMPTS default: retried with back-off, then given up
      const snap = await getSnapshot(t.auth, res.body.id);
      expectSnapshotShape(snap);
      expect(snap).toMatchObject({ status: 'failed', size_mb: null, error: 'Copying the disk failed.' });
      expect(JSON.stringify(snap)).not.toContain(t.server.domain);
      expect(driver.readSnapshot(snapshotDir, res.body.id)).toBeUndefined();
      expect(driver.hasPartial(snapshotDir, res.body.id)).toBe(false);
      const server = await getServer(t.auth, t.server.id);
      expect(server).toMatchObject({
        status: 'running',
        snapshot_quota: { limit: 5, used: 0 },
        current_action: null,
      });
      // Failed snapshots are listed (with their error), and can be deleted.
      const list = await request(api.url).get(`/api/v1/snapshots/?server_id=${t.server.id}`).set(t.auth);
      expect(list.body.results).toEqual([expect.objectContaining({ id: res.body.id, status: 'failed' })]);
      expect((await request(api.url).delete(`/api/v1/snapshots/${res.body.id}/`).set(t.auth)).status).toBe(
        204,
      );
      expectProblem(
        await request(api.url).get(`/api/v1/snapshots/${res.body.id}/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
    });

    it('failed snapshots do not count toward the limit', async () => {
      const t = await tenant({ status: 'stopped' });
      for (let i = 0; i < 4; i++) await snapshotDone(t.auth, t.server.id, `ok-${i}`);
      driver.injectFailure({
        method: 'createSnapshot',
        mode: 'fail_always',
        error: new HypervisorError('insufficient_storage'),
      });
      for (let i = 0; i < 2; i++) {
        const failed = await snapshotDone(t.auth, t.server.id, `fail-${i}`);
        expect(failed).toMatchObject({
          status: 'failed',
          error: 'There is not enough storage space on the host.',
        });
      }
      // Not retryable: one attempt only.
      const failedActions = await api.prisma.action.findMany({
        where: { serverId: t.server.id, status: 'failed' },
      });
      expect(failedActions.map((a) => [a.attempts, a.errorCode])).toEqual([
        [1, 'insufficient_storage'],
        [1, 'insufficient_storage'],
      ]);
      driver.clearFailures();
      expect((await getServer(t.auth, t.server.id)).snapshot_quota).toEqual({ limit: 5, used: 4 });
      expect(await snapshotDone(t.auth, t.server.id, 'fifth')).toMatchObject({ status: 'completed' });
      const sixth = await create(t.auth, { server_id: t.server.id, name: 'sixth' });
      expectProblem(sixth, 400, 'snapshot_limit_reached');
      expect(sixth.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
    });

    it('a transient failure is retried and then succeeds (attempts recorded)', async () => {
      const t = await tenant();
      driver.injectFailure({ method: 'createSnapshot', mode: 'fail_nth', n: 1 });
      const res = await create(t.auth, { server_id: t.server.id, name: 'flaky' });
      expect(res.status).toBe(201);
      expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({
        status: 'succeeded',
        error: null,
      });
      expect(
        (await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } })).attempts,
      ).toBe(2);
      expect(await getSnapshot(t.auth, res.body.id)).toMatchObject({
        status: 'completed',
        error: null,
        size_mb: 1,
      });
    });

    it('a restore that fails once is retried: disk restored, running server started again', async () => {
      const A = Buffer.from('version A');
      const t = await tenant({ status: 'running', disk: A });
      const snap = await snapshotDone(t.auth, t.server.id, 'retry-restore');
      driver.writeDisk(t.server.domain, Buffer.from('version B'));
      driver.injectFailure({ method: 'restoreSnapshot', mode: 'fail_nth', n: 1 });
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({
        status: 'succeeded',
        error: null,
      });
      expect(
        (await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } })).attempts,
      ).toBe(2);
      expect(driver.readDisk(t.server.domain).equals(A)).toBe(true);
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('running');
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'running', current_action: null });
    });

    it('a restore that fails verification leaves the disk as it was and the server back to running', async () => {
      const A = Buffer.from('AAAA');
      const B = Buffer.from('BBBB');
      const t = await tenant({ status: 'running', disk: A });
      const snap = await snapshotDone(t.auth, t.server.id, 'will-not-verify');
      driver.writeDisk(t.server.domain, B);
      driver.corruptSnapshot(snapshotDir, snap.id as number);
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      const action = await waitAction(t.auth, res.body.action_id);
      expect(action).toMatchObject({
        kind: 'restore_snapshot',
        status: 'failed',
        error: { code: 'verification_failed', message: 'The snapshot is damaged and cannot be used.' },
      });
      expect(
        (await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } })).attempts,
      ).toBe(1);
      expect(driver.readDisk(t.server.domain)).toEqual(B);
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('running');
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'running', current_action: null });
    });

    it('a stopped server whose restore keeps failing stays stopped', async () => {
      const t = await tenant({ status: 'stopped' });
      const snap = await snapshotDone(t.auth, t.server.id, 'restore-fails');
      driver.injectFailure({ method: 'restoreSnapshot', mode: 'fail_always' });
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({
        status: 'failed',
        error: { code: 'copy_failed' },
      });
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'stopped', current_action: null });
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('stopped');
    });
  });

  // ------------------------------------------------------------------ limit and race

  describe('the 5-per-server limit', () => {
    it('5 created one after another, the 6th is 400 snapshot_limit_reached; deleting one frees the slot', async () => {
      const t = await tenant();
      const snaps: Json[] = [];
      for (let i = 1; i <= 5; i++) snaps.push(await snapshotDone(t.auth, t.server.id, `snap-${i}`));
      expect(snaps.every((s) => s.status === 'completed')).toBe(true);
      const before = await rowCounts();
      const sixth = await create(t.auth, { server_id: t.server.id, name: 'snap-6' });
      expectProblem(sixth, 400, 'snapshot_limit_reached');
      expect(sixth.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
      expect(sixth.body.detail).toBe(
        `Bad Request - Snapshot limit reached: server ${t.server.id} already has 5 of 5 snapshots`,
      );
      expect(await rowCounts()).toEqual(before);
      expect((await request(api.url).delete(`/api/v1/snapshots/${snaps[0].id}/`).set(t.auth)).status).toBe(
        204,
      );
      const again = await create(t.auth, { server_id: t.server.id, name: 'snap-6' });
      expect(again.status).toBe(201);
      await waitAction(t.auth, again.body.action_id);
    });

    it('20 concurrent creates at one server: never more than 5 snapshots, every other answer a coded 400, no 5xx', async () => {
      const t = await tenant();
      let maxLive = 0;
      let racing = true;
      const watch = (async () => {
        while (racing) {
          const live = await api.prisma.snapshot.count({
            where: { serverId: t.server.id, deletedAt: null, status: { not: 'failed' } },
          });
          maxLive = Math.max(maxLive, live);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => create(t.auth, { server_id: t.server.id, name: `race-${i}` })),
      );
      racing = false;
      await watch;
      const accepted = responses.filter((r) => r.status === 201);
      const refused = responses.filter((r) => r.status !== 201);
      expect(accepted.length).toBeGreaterThanOrEqual(1);
      expect(accepted.length).toBeLessThanOrEqual(5);
      for (const r of refused) {
        expectProblem(r, 400, r.body.code);
        expect(['invalid_server_state', 'snapshot_limit_reached']).toContain(r.body.code);
        if (r.body.code === 'invalid_server_state') {
          expect(r.body).toMatchObject({
            server_status: 'running',
            action: {
              id: expect.any(Number),
              kind: 'create_snapshot',
              status: expect.stringMatching(/^(pending|running)$/),
            },
          });
        }
      }
      await Promise.all(accepted.map((r) => waitAction(t.auth, r.body.action_id)));
      const live = await api.prisma.snapshot.count({ where: { serverId: t.server.id, deletedAt: null } });
      expect(live).toBe(accepted.length);
      expect(maxLive).toBeLessThanOrEqual(5);
      expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(accepted.length);
    });

    it('20 concurrent creates at a server with 4 snapshots: exactly one more is accepted', async () => {
      const t = await tenant({ status: 'stopped' });
      await api.prisma.snapshot.createMany({
        data: [0, 1, 2, 3].map((i) => ({
          accountId: t.account.id,
          serverId: t.server.id,
          name: `base-${i}`,
          status: 'completed' as const,
          sizeBytes: BigInt(MIB),
        })),
      });
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => create(t.auth, { server_id: t.server.id, name: `last-${i}` })),
      );
      const accepted = responses.filter((r) => r.status === 201);
      expect(accepted).toHaveLength(1);
      for (const r of responses.filter((x) => x.status !== 201)) {
        expectProblem(r, 400, r.body.code);
        expect(['invalid_server_state', 'snapshot_limit_reached']).toContain(r.body.code);
      }
      await waitAction(t.auth, accepted[0].body.action_id);
      const after = await create(t.auth, { server_id: t.server.id, name: 'after' });
      expectProblem(after, 400, 'snapshot_limit_reached');
      expect(after.body).toMatchObject({ limit: 5, used: 5, server_id: t.server.id });
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id, deletedAt: null } })).toBe(5);
    });
  });

  // ------------------------------------------------------------------ jobs

  describe('jobs', () => {
    it('progress is persisted on the snapshot and its action while the copy runs', async () => {
      const t = await tenant();
      const original = driver.createSnapshot.bind(driver);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      driver.createSnapshot = async (server, snap, onProgress, opts) => {
        onProgress(40);
        await gate;
        return original(server, snap, onProgress, opts);
      };
      try {
        const res = await create(t.auth, { server_id: t.server.id, name: 'slow' });
        expect(res.status).toBe(201);
        const running = await eventually(async () => {
          const a = await request(api.url).get(`/api/v1/actions/${res.body.action_id}/`).set(t.auth);
          return a.body.progress === 40 ? (a.body as Json) : null;
        });
        expect(running).toMatchObject({
          status: 'running',
          started_at: expect.stringMatching(TIME),
          finished_at: null,
        });
        expect(await getSnapshot(t.auth, res.body.id)).toMatchObject({
          status: 'in_progress',
          progress: 40,
          size_mb: null,
        });
        expect((await getServer(t.auth, t.server.id)).current_action).toEqual({
          id: res.body.action_id,
          kind: 'create_snapshot',
          status: 'running',
          progress: 40,
        });
        release();
        expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({
          status: 'succeeded',
          progress: 100,
        });
        expect(await getSnapshot(t.auth, res.body.id)).toMatchObject({ status: 'completed', progress: 100 });
      } finally {
        release();
        Reflect.deleteProperty(driver, 'createSnapshot');
      }
    });

    it('a committed action without a queued job is dispatched by the worker', async () => {
      const t = await tenant({ status: 'stopped' });
      const snap = await api.prisma.snapshot.create({
        data: { accountId: t.account.id, serverId: t.server.id, name: 'outbox' },
      });
      const action = await api.prisma.action.create({
        data: {
          kind: 'create_snapshot',
          accountId: t.account.id,
          serverId: t.server.id,
          snapshotId: snap.id,
          serverStatusBefore: 'stopped',
          createdAt: new Date(Date.now() - 5000),
        },
      });
      expect(await waitAction(t.auth, action.id)).toMatchObject({ status: 'succeeded' });
      expect(await getSnapshot(t.auth, snap.id)).toMatchObject({
        status: 'completed',
        consistency: 'stopped',
      });
    });

    it('enqueuing a finished action again runs nothing (job id = action id)', async () => {
      const t = await tenant();
      const res = await create(t.auth, { server_id: t.server.id, name: 'once' });
      await waitAction(t.auth, res.body.action_id);
      const copies = driver.callCount('createSnapshot');
      const queue = api.app.get(JobQueue);
      await queue.enqueue(nodeId, res.body.action_id, 'create_snapshot');
      await queue.enqueue(nodeId, res.body.action_id, 'create_snapshot');
      await new Promise((r) => setTimeout(r, 400));
      expect(driver.callCount('createSnapshot')).toBe(copies);
      const row = await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } });
      expect(row).toMatchObject({ status: 'succeeded', attempts: 1 });
      expect(await getSnapshot(t.auth, res.body.id)).toMatchObject({ status: 'completed' });
    });

    it('when removing the storage keeps failing, the delete action fails but the snapshot stays deleted', async () => {
      const t = await tenant();
      const snap = await snapshotDone(t.auth, t.server.id, 'sticky');
      driver.injectFailure({ method: 'deleteSnapshot', mode: 'fail_always' });
      expect((await request(api.url).delete(`/api/v1/snapshots/${snap.id}/`).set(t.auth)).status).toBe(204);
      const del = await api.prisma.action.findFirstOrThrow({
        where: { snapshotId: snap.id as number, kind: 'delete_snapshot' },
      });
      expect(await waitAction(t.auth, del.id)).toMatchObject({
        kind: 'delete_snapshot',
        status: 'failed',
        error: { code: 'hypervisor_error', message: expect.any(String) },
      });
      expectProblem(
        await request(api.url).get(`/api/v1/snapshots/${snap.id}/`).set(t.auth),
        404,
        'snapshot_not_found',
      );
      expect(await getServer(t.auth, t.server.id)).toMatchObject({
        status: 'running',
        snapshot_quota: { limit: 5, used: 0 },
        current_action: null,
      });
    });

    it('a guest that ignores the graceful shutdown is powered off, restored and started again', async () => {
      const A = Buffer.from('before');
      const t = await tenant({ status: 'running', disk: A, gracefulShutdown: false });
      const snap = await snapshotDone(t.auth, t.server.id, 'stubborn');
      driver.writeDisk(t.server.domain, Buffer.from('after'));
      const res = await request(api.url).post(`/api/v1/snapshots/${snap.id}/restore/`).set(t.auth);
      expect(res.status).toBe(200);
      expect(await waitAction(t.auth, res.body.action_id)).toMatchObject({ status: 'succeeded' });
      expect(driver.readDisk(t.server.domain).equals(A)).toBe(true);
      expect(await getServer(t.auth, t.server.id)).toMatchObject({ status: 'running', current_action: null });
      expect(
        await driver.getPowerState({
          id: t.server.id,
          domain: t.server.domain,
          domainUuid: fakeDomainUuid(t.server.domain),
          diskPath: t.server.diskPath,
        }),
      ).toBe('running');
    });
  });

  // ------------------------------------------------------------------ Welsh

  describe('Accept-Language: cy', () => {
    it('create and restore messages are Welsh; other fields unchanged', async () => {
      const t = await tenant();
      const res = await create(t.auth, { server_id: t.server.id, name: 'cymraeg' }).set(
        'Accept-Language',
        'cy',
      );
      expect(res.status).toBe(201);
      expect(res.body.message).toBe(WELSH.createMessage);
      expect(res.body).toMatchObject({ status: 'in_progress', size_mb: null, name: 'cymraeg' });
      await waitAction(t.auth, res.body.action_id);
      const restore = await request(api.url)
        .post(`/api/v1/snapshots/${res.body.id}/restore/`)
        .set(t.auth)
        .set('Accept-Language', 'cy-GB, en;q=0.5');
      expect(restore.status).toBe(200);
      expect(restore.body).toMatchObject({
        status: 'success',
        message: WELSH.restoreMessage,
        server: { status: 'restoring' },
      });
      await waitAction(t.auth, restore.body.action_id);
      // English is the default, and wins when preferred.
      const en = await create(t.auth, { server_id: t.server.id, name: 'saesneg' }).set(
        'Accept-Language',
        'en, cy;q=0.5',
      );
      expect(en.body.message).toBe(PUBLISHED.createMessage);
      await waitAction(t.auth, en.body.action_id);
    });

    it('404 detail for a snapshot is the published Welsh sentence', async () => {
      const t = await tenant();
      const res = await request(api.url)
        .get('/api/v1/snapshots/999999/')
        .set(t.auth)
        .set('Accept-Language', 'cy');
      expectProblem(res, 404, 'snapshot_not_found');
      expect(res.body.detail).toBe(WELSH.snapshotNotFound);
    });
  });

  it('a tenant made by the shared factory works too (auto-defined fake domain, stopped)', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const snap = await snapshotDone(t.auth, t.server.id, 'factory');
    expect(snap).toMatchObject({ status: 'completed', consistency: 'stopped', size_mb: 1 });
  });
});
