/**
 * The Backups API (contract Part 3) end to end on real Postgres and Redis: every endpoint, the manual
 * limit under concurrency, "one long operation per server" shared with snapshots, restore onto another
 * server of the account, tenant isolation, validation, Welsh.
 *
 * Two nodes: one served by an in-process worker whose BACKUP_DATA_PATH is `RecordingDataPath` (a test
 * double recording what the jobs ask; the data path itself is tested on its own), and an "idle" node
 * without a worker, whose actions stay pending so states can be held deterministically.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { expectProblem } from '../support/problem-assertions';
import { RecordingDataPath, startWorkerWithDataPath } from '../support/backup-data-path-double';
import { NodeWorkerService } from '../../src/jobs/node-worker.service';

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const MIB = 1024 * 1024;
type Auth = Record<string, string>;
type Json = Record<string, unknown>;

describe('backups API (real Postgres + Redis + worker)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let workerNodeId: number;
  let idleNodeId: number;
  const dataPath = new RecordingDataPath();

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { JOB_ATTEMPTS: '1' }));
    const node = await createNode(api.prisma);
    workerNodeId = node.id;
    idleNodeId = (await createNode(api.prisma)).id;
    worker = await startWorkerWithDataPath(
      testConfig(db, 'worker', { WORKER_NODE: node.name, JOB_ATTEMPTS: '1' }),
      dataPath,
    );
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  async function tenant(opts: { node?: 'worker' | 'idle'; status?: 'running' | 'stopped' } = {}) {
    const account = await createAccount(api.prisma);
    const { token } = await createToken(api.prisma, account.id);
    const server = await createServer(
      api.prisma,
      account.id,
      opts.node === 'worker' ? workerNodeId : idleNodeId,
      {
        status: opts.status ?? 'running',
      },
    );
    return { account, server, auth: { Authorization: `Bearer ${token}` } as Auth };
  }

  const http = () => request(api.url);
  const create = (auth: Auth, body: Json, headers: Auth = {}) =>
    http().post('/api/v1/backups/').set(auth).set(headers).send(body);

  /** A backup row as a finished job would have left it. */
  function insertBackup(
    t: { account: { id: number }; server: { id: number; nodeId: number } },
    data: {
      kind?: 'manual' | 'automatic';
      status?: 'completed' | 'failed' | 'in_progress' | 'corrupt';
      name?: string;
    } = {},
  ) {
    return api.prisma.backup.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        store: 'default',
        name: data.name ?? 'seeded',
        kind: data.kind ?? 'manual',
        status: data.status ?? 'completed',
        sizeBytes: data.status === 'completed' ? BigInt(3 * MIB) : null,
        checkpoint: data.status === 'completed' ? 'vps-backup-seeded' : null,
      },
    });
  }

  const actionOf = (auth: Auth, id: number) =>
    eventually(async () => {
      const res = await http().get(`/api/v1/actions/${id}/`).set(auth);
      return ['succeeded', 'failed'].includes(res.body.status) ? (res.body as Json) : null;
    });

  it('creates a backup (201, the message in English and Welsh), which the worker completes, then incrementally', async () => {
    const t = await tenant({ node: 'worker' });
    const res = await create(t.auth, { server_id: t.server.id, name: 'nightly-1', description: 'first' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      server: { id: t.server.id, name: t.server.name },
      name: 'nightly-1',
      kind: 'manual',
      status: 'in_progress',
      size_mb: null,
      stored_mb: null,
      description: 'first',
      expires_at: null,
      verified_at: null,
      message:
        'Backup is being created. This may take a few minutes depending on how much has changed since the last backup.',
      action_id: expect.any(Number),
    });
    expect(res.body.created_at).toMatch(TIME);
    expect(Object.keys(res.body).slice(0, 8)).toEqual([
      'id',
      'server',
      'name',
      'kind',
      'status',
      'size_mb',
      'stored_mb',
      'created_at',
    ]);
    expect(await actionOf(t.auth, res.body.action_id)).toMatchObject({
      kind: 'create_backup',
      status: 'succeeded',
    });
    const first = await http().get(`/api/v1/backups/${res.body.id}/`).set(t.auth);
    expect(first.body).toMatchObject({
      status: 'completed',
      progress: 100,
      size_mb: 8,
      stored_mb: 8,
      mode: 'full',
      mode_reason: 'no_previous_backup',
      consistency: 'crash_consistent',
    });
    expect(first.body.completed_at).toMatch(TIME);

    const cy = await create(
      t.auth,
      { server_id: t.server.id, name: 'nightly-2' },
      { 'Accept-Language': 'cy' },
    );
    expect(cy.status).toBe(201);
    expect(cy.body.message).toMatch(/^Mae'r copi wrth gefn yn cael ei greu/);
    await actionOf(t.auth, cy.body.action_id);
    const write = dataPath.writes.find((w) => w.backup.id === cy.body.id)!;
    expect(write.base).toEqual({
      backup: { id: res.body.id, accountId: t.account.id, storeName: 'default' },
      checkpoint: `vps-backup-${res.body.id}`,
    });
    expect(write.checkpoint).toBe(`vps-backup-${cy.body.id}`);
    const second = await http().get(`/api/v1/backups/${cy.body.id}/`).set(t.auth);
    expect(second.body).toMatchObject({
      status: 'completed',
      mode: 'incremental',
      mode_reason: null,
      stored_mb: 1,
    });

    const server = await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
    expect(server.body).toMatchObject({
      backup_quota: { limit: 10, used: 2 },
      backup_policy: { enabled: false, next_run_at: null },
    });
  });

  it('a failed write fails the backup with its error, frees its slot, and is not a base', async () => {
    const t = await tenant({ node: 'worker' });
    dataPath.failNextWrite = true;
    const res = await create(t.auth, { server_id: t.server.id, name: 'doomed' });
    expect(await actionOf(t.auth, res.body.action_id)).toMatchObject({ status: 'failed' });
    const failed = await http().get(`/api/v1/backups/${res.body.id}/`).set(t.auth);
    expect(failed.body).toMatchObject({ status: 'failed', size_mb: null, error: expect.any(String) });
    // Written to its node's store, recorded on its row; the failed create released what it referenced.
    const doomed = { id: res.body.id, accountId: t.account.id, storeName: 'default' };
    expect(dataPath.writes.find((w) => w.backup.id === res.body.id)!.backup).toEqual(doomed);
    expect(dataPath.deletes).toContainEqual(doomed);
    expect((await api.prisma.backup.findUniqueOrThrow({ where: { id: res.body.id } })).store).toBe('default');
    const server = await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
    expect(server.body.backup_quota).toEqual({ limit: 10, used: 0 });
    const next = await create(t.auth, { server_id: t.server.id, name: 'again' });
    await actionOf(t.auth, next.body.action_id);
    expect(dataPath.writes.find((w) => w.backup.id === next.body.id)!.base).toBeNull();
  });

  it('lists with server_id, kind, ordering and paging; other tenants see nothing and their server is 404', async () => {
    const t = await tenant();
    const other = await tenant();
    const a = await insertBackup(t, { name: 'b-manual' });
    const b = await insertBackup(t, { name: 'a-auto', kind: 'automatic' });
    await insertBackup(other, { name: 'theirs' });
    const all = await http().get(`/api/v1/backups/?server_id=${t.server.id}`).set(t.auth);
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ count: 2, next: null, previous: null });
    expect(all.body.results.map((r: Json) => r.id)).toEqual([b.id, a.id]);
    const manual = await http().get(`/api/v1/backups/?kind=manual`).set(t.auth);
    expect(manual.body.results.map((r: Json) => r.id)).toEqual([a.id]);
    const byName = await http().get(`/api/v1/backups/?ordering=name&page_size=1`).set(t.auth);
    expect(byName.body.results.map((r: Json) => r.id)).toEqual([b.id]);
    expect(byName.body.next).toMatch(/page=2/);
    expectProblem(
      await http().get(`/api/v1/backups/?server_id=${other.server.id}`).set(t.auth),
      404,
      'server_not_found',
    );
    const bad = await http().get('/api/v1/backups/?kind=weekly&ordering=size').set(t.auth);
    expectProblem(bad, 400, 'validation_failed');
    expect(bad.body.errors.map((e: Json) => e.field).sort()).toEqual(['kind', 'ordering']);
    expectProblem(await http().get(`/api/v1/backups/${a.id}/`).set(other.auth), 404, 'backup_not_found');
    expectProblem(await http().get('/api/v1/backups/abc/').set(t.auth), 404, 'backup_not_found');
    expect((await http().get('/api/v1/backups/').set(other.auth)).body.count).toBe(1);
  });

  it('refuses an 11th manual backup (automatic ones do not count), in English and Welsh', async () => {
    const t = await tenant();
    for (let i = 0; i < 10; i++) await insertBackup(t);
    await insertBackup(t, { kind: 'automatic' });
    await insertBackup(t, { status: 'failed' });
    const res = await create(t.auth, { server_id: t.server.id, name: 'eleventh' });
    expectProblem(res, 400, 'backup_limit_reached');
    expect(res.body).toMatchObject({ limit: 10, used: 10, server_id: t.server.id });
    const cy = await create(
      t.auth,
      { server_id: t.server.id, name: 'eleventh' },
      { 'Accept-Language': 'cy' },
    );
    expect(cy.body.detail).toMatch(/^Cais Gwael - Cyrhaeddwyd terfyn y copïau wrth gefn/);
    expect(await api.prisma.backup.count({ where: { serverId: t.server.id } })).toBe(12);
  });

  it('concurrent creates never exceed the limit nor run two operations on one server', async () => {
    const t = await tenant();
    for (let i = 0; i < 9; i++) await insertBackup(t);
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => create(t.auth, { server_id: t.server.id, name: `race-${i}` })),
    );
    expect(answers.filter((r) => r.status === 201)).toHaveLength(1);
    for (const r of answers.filter((x) => x.status !== 201)) {
      expect(r.status).toBe(400);
      expect(['invalid_server_state', 'backup_limit_reached']).toContain(r.body.code);
    }
    expect(await api.prisma.backup.count({ where: { serverId: t.server.id, deletedAt: null } })).toBe(10);
    // The open backup create holds the server against a snapshot too (one long operation per server).
    const snap = await http()
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .send({ server_id: t.server.id, name: 's' });
    expectProblem(snap, 400, 'invalid_server_state');
    expect(snap.body.action).toMatchObject({ kind: 'create_backup' });
  });

  it('answers an Idempotency-Key retry with the first backup and starts nothing new', async () => {
    const t = await tenant();
    const key = { 'Idempotency-Key': `k-${t.server.id}` };
    const first = await create(t.auth, { server_id: t.server.id, name: 'once' }, key);
    const again = await create(t.auth, { server_id: t.server.id, name: 'once' }, key);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(first.body.id);
    expect(again.body.action_id).toBe(first.body.action_id);
    expect(await api.prisma.backup.count({ where: { serverId: t.server.id } })).toBe(1);
  });

  it('validates the create body field by field and writes nothing', async () => {
    const t = await tenant();
    const res = await create(t.auth, { server_id: 'x', name: 'bad name!', description: 5 });
    expectProblem(res, 400, 'validation_failed');
    expect([...new Set(res.body.errors.map((e: Json) => e.field))].sort()).toEqual([
      'description',
      'name',
      'server_id',
    ]);
    expectProblem(await create(t.auth, { server_id: 2147483647, name: 'n' }), 404, 'server_not_found');
    const other = await tenant();
    expectProblem(await create(t.auth, { server_id: other.server.id, name: 'n' }), 404, 'server_not_found');
    expect(
      await api.prisma.backup.count({ where: { serverId: { in: [t.server.id, other.server.id] } } }),
    ).toBe(0);
  });

  it("restores onto the backup's own server through the worker; the server returns to running", async () => {
    const t = await tenant({ node: 'worker' });
    const made = await create(t.auth, { server_id: t.server.id, name: 'base' });
    await actionOf(t.auth, made.body.action_id);
    const res = await http().post(`/api/v1/backups/${made.body.id}/restore/`).set(t.auth).send();
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'success',
      message: 'Server is being restored from backup. This may take a few minutes.',
      backup: { id: made.body.id, name: 'base', created_at: made.body.created_at },
      server: { id: t.server.id, name: t.server.name, status: 'restoring' },
      action_id: expect.any(Number),
    });
    expect(await actionOf(t.auth, res.body.action_id)).toMatchObject({
      kind: 'restore_backup',
      status: 'succeeded',
    });
    expect(dataPath.restores.find((r) => r.backup.id === made.body.id)!.target.id).toBe(t.server.id);
    expect((await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth)).body.status).toBe('running');
  });

  it("restores onto another server of the account on another node; never onto another tenant's", async () => {
    const t = await tenant({ node: 'worker' });
    const target = await createServer(api.prisma, t.account.id, idleNodeId, { status: 'stopped' });
    const backup = await insertBackup(t);
    const res = await http()
      .post(`/api/v1/backups/${backup.id}/restore/`)
      .set(t.auth)
      .set('Accept-Language', 'cy')
      .send({ server_id: target.id });
    expect(res.status).toBe(200);
    expect(res.body.message).toBe(
      "Mae'r gweinydd yn cael ei adfer o'r copi wrth gefn. Gall hyn gymryd ychydig funudau.",
    );
    expect(res.body.server).toEqual({ id: target.id, name: target.name, status: 'restoring' });
    const action = await api.prisma.action.findUniqueOrThrow({ where: { id: res.body.action_id } });
    expect(action).toMatchObject({ kind: 'restore_backup', serverId: target.id, backupId: backup.id });
    // The restore holds the target: a second one onto it is refused, the backup cannot be deleted.
    const again = await http()
      .post(`/api/v1/backups/${backup.id}/restore/`)
      .set(t.auth)
      .send({ server_id: target.id });
    expectProblem(again, 400, 'invalid_server_state');
    const del = await http().delete(`/api/v1/backups/${backup.id}/`).set(t.auth);
    expectProblem(del, 400, 'invalid_backup_state');

    const other = await tenant();
    const theirs = await http()
      .post(`/api/v1/backups/${backup.id}/restore/`)
      .set(t.auth)
      .send({ server_id: other.server.id });
    expectProblem(theirs, 404, 'server_not_found');
    const notMine = await http()
      .post(`/api/v1/backups/${backup.id}/restore/`)
      .set(other.auth)
      .send({ server_id: other.server.id });
    expectProblem(notMine, 404, 'backup_not_found');
    const bad = await http()
      .post(`/api/v1/backups/${backup.id}/restore/`)
      .set(t.auth)
      .send({ server_id: 'x' });
    expectProblem(bad, 400, 'validation_failed');
  });

  it('refuses to restore a backup that is not completed', async () => {
    const t = await tenant();
    for (const status of ['in_progress', 'failed', 'corrupt'] as const) {
      const b = await insertBackup(t, { status });
      const res = await http().post(`/api/v1/backups/${b.id}/restore/`).set(t.auth).send();
      expectProblem(res, 400, 'invalid_backup_state');
      expect(res.body.backup_status).toBe(status);
    }
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
      'running',
    );
  });

  it('deletes a backup (204): it leaves every list and frees its slot, and the worker releases its data', async () => {
    const t = await tenant({ node: 'worker' });
    const made = await create(t.auth, { server_id: t.server.id, name: 'gone' });
    await actionOf(t.auth, made.body.action_id);
    const res = await http().delete(`/api/v1/backups/${made.body.id}/`).set(t.auth);
    expect(res.status).toBe(204);
    expectProblem(await http().get(`/api/v1/backups/${made.body.id}/`).set(t.auth), 404, 'backup_not_found');
    expect((await http().get('/api/v1/backups/').set(t.auth)).body.count).toBe(0);
    await eventually(async () => dataPath.deletes.some((d) => d.id === made.body.id));
    expectProblem(
      await http().delete(`/api/v1/backups/${made.body.id}/`).set(t.auth),
      404,
      'backup_not_found',
    );
    expectProblem(
      await http().post(`/api/v1/backups/${made.body.id}/restore/`).set(t.auth).send(),
      404,
      'backup_not_found',
    );
    const inProgress = await insertBackup(t, { status: 'in_progress' });
    expectProblem(
      await http().delete(`/api/v1/backups/${inProgress.id}/`).set(t.auth),
      400,
      'invalid_backup_state',
    );
    const other = await tenant();
    const failed = await insertBackup(t, { status: 'failed' });
    expectProblem(
      await http().delete(`/api/v1/backups/${failed.id}/`).set(other.auth),
      404,
      'backup_not_found',
    );
    expect((await http().delete(`/api/v1/backups/${failed.id}/`).set(t.auth)).status).toBe(204);
  });

  it('after a worker died mid-job, the reaper fails the backup create and brings a restore target back', async () => {
    const t = await tenant({ node: 'worker' });
    const target = await createServer(api.prisma, t.account.id, workerNodeId, { status: 'restoring' });
    const stale = new Date(Date.now() - 86_400_000);
    const running = {
      status: 'running' as const,
      accountId: t.account.id,
      heartbeatAt: stale,
      startedAt: stale,
    };
    const writing = await insertBackup(t, { status: 'in_progress' });
    const source = await insertBackup(t);
    const create = await api.prisma.action.create({
      data: {
        ...running,
        kind: 'create_backup',
        serverId: t.server.id,
        backupId: writing.id,
        serverStatusBefore: 'running',
      },
    });
    const restore = await api.prisma.action.create({
      data: {
        ...running,
        kind: 'restore_backup',
        serverId: target.id,
        backupId: source.id,
        serverStatusBefore: 'stopped',
      },
    });
    expect(await worker.get(NodeWorkerService).reap()).toBeGreaterThanOrEqual(2);
    for (const a of [create, restore]) {
      expect(await api.prisma.action.findUniqueOrThrow({ where: { id: a.id } })).toMatchObject({
        status: 'failed',
        errorCode: 'interrupted',
      });
    }
    expect(await api.prisma.backup.findUniqueOrThrow({ where: { id: writing.id } })).toMatchObject({
      status: 'failed',
      errorCode: 'interrupted',
    });
    // The dead write's chunk references are released.
    expect(dataPath.deletes).toContainEqual({
      id: writing.id,
      accountId: t.account.id,
      storeName: 'default',
    });
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: target.id } })).status).toBe('stopped');
    expect((await api.prisma.backup.findUniqueOrThrow({ where: { id: source.id } })).status).toBe(
      'completed',
    );
  });

  it('records audit events for create, restore and delete', async () => {
    const t = await tenant();
    const made = await create(t.auth, { server_id: t.server.id, name: 'audited' });
    const events = await eventually(async () => {
      const rows = await api.prisma.auditEvent.findMany({ where: { accountId: t.account.id } });
      return rows.length ? rows : null;
    });
    expect(events.map((e) => e.action)).toContain('backup.create');
    expect(events.find((e) => e.action === 'backup.create')).toMatchObject({
      targetType: 'backup',
      targetId: made.body.id,
    });
  });

  describe('backup policy', () => {
    const policy = {
      enabled: true,
      schedule: { frequency: 'weekly', weekday: 3, hour: 22 },
      retention: { daily: 7, weekly: 4, monthly: 2 },
    };

    it('is off by default, takes a whole policy, and shows on the server', async () => {
      const t = await tenant();
      const path = `/api/v1/servers/${t.server.id}/backup-policy/`;
      expect((await http().get(path).set(t.auth)).body).toEqual({
        enabled: false,
        schedule: { frequency: 'daily', weekday: null, hour: 0 },
        retention: { daily: 7, weekly: 4, monthly: 0 },
      });
      const put = await http().put(path).set(t.auth).send(policy);
      expect(put.status).toBe(200);
      expect(put.body).toEqual(policy);
      expect((await http().get(path).set(t.auth)).body).toEqual(policy);
      const daily = { ...policy, schedule: { frequency: 'daily', hour: 1 } };
      expect((await http().put(path).set(t.auth).send(daily)).body.schedule).toEqual({
        frequency: 'daily',
        weekday: null,
        hour: 1,
      });
      // The next slot: tomorrow's or today's 01:00-05:00 UTC window, at the server's offset in it.
      const shown = (await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth)).body.backup_policy;
      expect(shown).toEqual({ enabled: true, next_run_at: expect.any(String), last_run: null });
      const next = new Date(shown.next_run_at);
      expect(next.getUTCHours()).toBeGreaterThanOrEqual(1);
      expect(next.getUTCHours()).toBeLessThan(5);
      expect(next.getTime() - Date.now()).toBeGreaterThan(0);
      expect(next.getTime() - Date.now()).toBeLessThanOrEqual(86_400_000);
    });

    it("names every invalid field, and another tenant's server is 404", async () => {
      const t = await tenant();
      const path = `/api/v1/servers/${t.server.id}/backup-policy/`;
      const res = await http()
        .put(path)
        .set(t.auth)
        .send({
          enabled: 'yes',
          schedule: { frequency: 'weekly', hour: 24 },
          retention: { daily: -1, weekly: 4 },
        });
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.errors.map((e: Json) => e.field).sort()).toEqual([
        'enabled',
        'retention.daily',
        'retention.monthly',
        'schedule.hour',
        'schedule.weekday',
      ]);
      expectProblem(await http().put(path).set(t.auth).send({ enabled: true }), 400, 'validation_failed');
      const other = await tenant();
      expectProblem(await http().get(path).set(other.auth), 404, 'server_not_found');
      expectProblem(await http().put(path).set(other.auth).send(policy), 404, 'server_not_found');
      expect(await api.prisma.backupPolicy.count({ where: { serverId: t.server.id } })).toBe(0);
    });
  });
});
