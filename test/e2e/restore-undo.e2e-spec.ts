/**
 * Undo of a restore end to end on real Postgres and Redis, an in-process worker on a fake node and the
 * real backup data path (BACKUP_DIR): every restore first takes a `pre_restore` safety copy (a backup
 * when the node's store is configured, else a snapshot), outside the limits, shown on the restore
 * action; `POST /api/v1/actions/{id}/undo/` restores it (and undo of the undo redoes); the refusals; a
 * failed safety copy stops the restore with the disk untouched; the sweeper removes expired copies.
 * The same on real libvirt disks, compared with qemu-img: test/libvirt/restore-undo.e2e-spec.ts.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { Clock } from '../../src/common/clock';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { SafetyCopySweeper } from '../../src/restore-undo/safety-copy-sweeper';
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

type Auth = Record<string, string>;
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const HOUR = 3_600_000;

describe('undo of a restore (real Postgres + Redis + worker, fake node, real backup data path)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let node: { id: number; name: string };

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    node = await createNode(api.prisma);
    worker = await startWorker(
      testConfig(db, 'worker', {
        WORKER_NODE: node.name,
        JOB_ATTEMPTS: '1',
        SAFETY_COPY_SWEEP_INTERVAL_MS: '0',
      }),
    );
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
  });
  afterEach(async () => {
    driver?.clearFailures();
    jest.restoreAllMocks();
    await api.prisma.node.update({ where: { id: node.id }, data: { backupStore: 'default' } });
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  const http = () => request(api.url);

  async function tenant(disk: Buffer, status: 'running' | 'stopped' = 'running') {
    const account = await createAccount(api.prisma);
    const { token } = await createToken(api.prisma, account.id);
    const server = await createServer(api.prisma, account.id, node.id, { status });
    driver.defineDomain(server.domain, {
      diskPath: server.diskPath,
      running: status === 'running',
      diskBytes: disk,
    });
    return { account, server, auth: { Authorization: `Bearer ${token}` } as Auth };
  }

  async function done(auth: Auth, actionId: number): Promise<Json> {
    return eventually(async () => {
      const r = await http().get(`/api/v1/actions/${actionId}/`).set(auth);
      return r.body.status === 'succeeded' || r.body.status === 'failed' ? (r.body as Json) : null;
    });
  }

  async function snapshotOf(auth: Auth, serverId: number, name: string): Promise<number> {
    const res = await http().post('/api/v1/snapshots/').set(auth).send({ server_id: serverId, name });
    expect(res.status).toBe(201);
    expect(await done(auth, res.body.action_id)).toMatchObject({ status: 'succeeded' });
    return res.body.id as number;
  }

  async function backupOf(auth: Auth, serverId: number, name: string): Promise<number> {
    const res = await http().post('/api/v1/backups/').set(auth).send({ server_id: serverId, name });
    expect(res.status).toBe(201);
    expect(await done(auth, res.body.action_id)).toMatchObject({ status: 'succeeded' });
    return res.body.id as number;
  }

  /** Restores the server from `path` (a snapshot's or a backup's restore) and waits for it. */
  async function restored(auth: Auth, path: string): Promise<Json> {
    const res = await http().post(path).set(auth);
    expect(res.status).toBe(200);
    return done(auth, res.body.action_id as number);
  }

  async function undone(auth: Auth, actionId: number, headers: Auth = {}): Promise<Json> {
    const res = await http().post(`/api/v1/actions/${actionId}/undo/`).set(auth).set(headers);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      undo_of: actionId,
      status: expect.stringMatching(/^(pending|running|succeeded)$/),
    });
    return done(auth, res.body.id as number);
  }

  const A = Buffer.from('A'.repeat(8192));
  const B = Buffer.from('B'.repeat(8192));

  it('snapshot restore, no backup store: a pre_restore snapshot outside the limit; undo puts the disk back, undo of the undo redoes', async () => {
    await api.prisma.node.update({ where: { id: node.id }, data: { backupStore: 'not-configured' } });
    const t = await tenant(A);
    const snap = await snapshotOf(t.auth, t.server.id, 'with-a');
    driver.writeDisk(t.server.domain, B);
    const before = Date.now();
    const restore = await restored(t.auth, `/api/v1/snapshots/${snap}/restore/`);
    expect(restore).toMatchObject({ status: 'succeeded', undo_of: null });
    expect(driver.readDisk(t.server.domain)).toEqual(A);
    const copy = restore.safety_copy as Json;
    expect(copy).toEqual({ type: 'snapshot', id: expect.any(Number), expires_at: expect.any(String) });
    const expires = Date.parse(copy.expires_at as string);
    expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 168 * HOUR);
    expect(expires).toBeLessThanOrEqual(Date.now() + 168 * HOUR);
    const shown = (await http().get(`/api/v1/snapshots/${copy.id}/`).set(t.auth)).body;
    expect(shown).toMatchObject({ kind: 'pre_restore', status: 'completed', expires_at: copy.expires_at });
    const server = (await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth)).body;
    expect(server.snapshot_quota.used).toBe(1); // only the customer's own snapshot

    const undo = await undone(t.auth, restore.id as number);
    expect(undo).toMatchObject({
      kind: 'restore_snapshot',
      status: 'succeeded',
      snapshot: { id: copy.id, name: `pre-restore-${restore.id}` },
      undo_of: restore.id,
    });
    expect(driver.readDisk(t.server.domain)).toEqual(B);
    // The undo took its own copy (of A): undoing it puts the restored disk back.
    expect(undo.safety_copy).toMatchObject({ type: 'snapshot' });
    await undone(t.auth, undo.id as number);
    expect(driver.readDisk(t.server.domain)).toEqual(A);
    expect(await api.prisma.server.findUnique({ where: { id: t.server.id } })).toMatchObject({
      status: 'running',
    });
  });

  it('backup restore with a backup store: an incremental pre_restore backup outside the limit; undo puts the disk back', async () => {
    const t = await tenant(A, 'stopped');
    const backup = await backupOf(t.auth, t.server.id, 'with-a');
    driver.writeDisk(t.server.domain, B);
    const restore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    expect(restore.status).toBe('succeeded');
    expect(driver.readDisk(t.server.domain)).toEqual(A);
    expect(restore.safety_copy).toMatchObject({ type: 'backup' });
    const copy = (await http().get(`/api/v1/backups/${restore.safety_copy.id}/`).set(t.auth)).body;
    expect(copy).toMatchObject({ kind: 'pre_restore', status: 'completed', mode: 'incremental' });
    const list = (await http().get(`/api/v1/backups/?server_id=${t.server.id}&kind=pre_restore`).set(t.auth))
      .body;
    expect(list.results.map((b: Json) => b.id)).toEqual([copy.id]);
    const server = (await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth)).body;
    expect(server.backup_quota.used).toBe(1);

    const undo = await undone(t.auth, restore.id as number);
    expect(undo).toMatchObject({ kind: 'restore_backup', status: 'succeeded', backup: { id: copy.id } });
    expect(driver.readDisk(t.server.domain)).toEqual(B);

    // Audited, and the undo's outcome is an event whose body says what it undid.
    const audit = await api.prisma.auditEvent.findMany({
      where: { accountId: t.account.id, action: 'restore.undo' },
    });
    expect(audit).toEqual([
      expect.objectContaining({ outcome: 'accepted', targetType: 'action', targetId: restore.id }),
    ]);
    const events = (await http().get('/api/v1/events/').set(t.auth)).body;
    const undoEvent = (events.results as Json[]).find((e) => e.data?.id === undo.id);
    expect(undoEvent).toMatchObject({ type: 'restore.completed', data: { undo_of: restore.id } });
  });

  it('refusals: another tenant 404, not a restore / not succeeded / expired 400 (Welsh too), server busy 400', async () => {
    const t = await tenant(A, 'stopped');
    const backup = await backupOf(t.auth, t.server.id, 'r');
    const restore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    const other = await tenant(A, 'stopped');
    expectProblem(
      await http().post(`/api/v1/actions/${restore.id}/undo/`).set(other.auth),
      404,
      'action_not_found',
    );
    expectProblem(await http().post('/api/v1/actions/abc/undo/').set(t.auth), 404, 'action_not_found');

    const create = await api.prisma.action.findFirstOrThrow({
      where: { backupId: backup, kind: 'create_backup' },
    });
    const notRestore = await http().post(`/api/v1/actions/${create.id}/undo/`).set(t.auth);
    expectProblem(notRestore, 400, 'action_not_undoable');
    expect(notRestore.body).toMatchObject({ reason: 'not_a_restore', action_id: create.id });

    // A restore that failed took no copy and did nothing to undo.
    driver.injectFailure({ method: 'restoreDiskFrom', mode: 'fail_always' });
    const failedRestore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    driver.clearFailures();
    expect(failedRestore.status).toBe('failed');
    const notSucceeded = await http().post(`/api/v1/actions/${failedRestore.id}/undo/`).set(t.auth);
    expectProblem(notSucceeded, 400, 'action_not_undoable');
    expect(notSucceeded.body.reason).toBe('not_succeeded');

    // The server held by another operation: the one-operation rule, as for any restore.
    const hold = await api.prisma.action.create({
      data: { kind: 'create_snapshot', status: 'running', accountId: t.account.id, serverId: t.server.id },
    });
    const busy = await http().post(`/api/v1/actions/${restore.id}/undo/`).set(t.auth);
    expectProblem(busy, 400, 'invalid_server_state');
    expect(busy.body.action).toMatchObject({ id: hold.id });
    await api.prisma.action.update({ where: { id: hold.id }, data: { status: 'failed' } });

    await api.prisma.backup.update({
      where: { id: restore.safety_copy.id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    const expired = await http()
      .post(`/api/v1/actions/${restore.id}/undo/`)
      .set(t.auth)
      .set('Accept-Language', 'cy');
    expectProblem(expired, 400, 'action_not_undoable');
    expect(expired.body).toMatchObject({ reason: 'expired' });
    expect(expired.body.detail).toMatch(
      /^Cais Gwael - Ni ellir dadwneud gweithred \d+: mae ei gopi diogelwch wedi dod i ben$/,
    );
    expect(await api.prisma.action.count({ where: { serverId: t.server.id, kind: 'restore_backup' } })).toBe(
      2,
    );
  });

  it('Idempotency-Key: a retry answers the same undo and starts nothing new', async () => {
    const t = await tenant(A, 'stopped');
    const backup = await backupOf(t.auth, t.server.id, 'i');
    const restore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    const key = { 'Idempotency-Key': `undo-${restore.id}` };
    const first = await http().post(`/api/v1/actions/${restore.id}/undo/`).set(t.auth).set(key);
    const again = await http().post(`/api/v1/actions/${restore.id}/undo/`).set(t.auth).set(key);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    await done(t.auth, first.body.id as number);
    expect(await api.prisma.action.count({ where: { serverId: t.server.id, kind: 'restore_backup' } })).toBe(
      2,
    );
  });

  it('a safety copy that fails stops the restore: failed clearly, the disk untouched, the server running again', async () => {
    await api.prisma.node.update({ where: { id: node.id }, data: { backupStore: 'not-configured' } });
    const t = await tenant(A);
    const snap = await snapshotOf(t.auth, t.server.id, 's');
    driver.writeDisk(t.server.domain, B);
    const restoresBefore = driver.callCount('restoreSnapshot');
    driver.injectFailure({ method: 'createSnapshot', mode: 'fail_always' });
    const restore = await restored(t.auth, `/api/v1/snapshots/${snap}/restore/`);
    expect(restore).toMatchObject({
      status: 'failed',
      error: { code: 'safety_copy_failed', message: expect.stringMatching(/restore did not run/) },
      safety_copy: null,
    });
    expect(driver.callCount('restoreSnapshot')).toBe(restoresBefore);
    expect(driver.readDisk(t.server.domain)).toEqual(B);
    expect(await api.prisma.server.findUnique({ where: { id: t.server.id } })).toMatchObject({
      status: 'running',
    });
    const copy = await api.prisma.snapshot.findFirstOrThrow({
      where: { serverId: t.server.id, kind: 'pre_restore' },
    });
    expect(copy.status).toBe('failed');
  });

  it('the sweeper removes expired safety copies (injected clock), audited; the restore then cannot be undone', async () => {
    const t = await tenant(A, 'stopped');
    const backup = await backupOf(t.auth, t.server.id, 'w');
    const restore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    const sweeper = worker.get(SafetyCopySweeper);
    await sweeper.sweep();
    const kept = await api.prisma.backup.findUniqueOrThrow({ where: { id: restore.safety_copy.id } });
    expect(kept.deletedAt).toBeNull(); // not expired yet
    const clock = worker.get(Clock);
    jest.spyOn(clock, 'now').mockReturnValue(new Date(Date.now() + 168 * HOUR + 60_000));
    expect(await sweeper.sweep()).toBeGreaterThanOrEqual(1);
    const copy = await api.prisma.backup.findUniqueOrThrow({ where: { id: restore.safety_copy.id } });
    expect(copy.deletedAt).not.toBeNull();
    const del = await api.prisma.action.findFirstOrThrow({
      where: { backupId: copy.id, kind: 'delete_backup' },
    });
    expect(await done(t.auth, del.id)).toMatchObject({ status: 'succeeded' });
    expect(
      await api.prisma.auditEvent.count({
        where: { action: 'safety_copy.expire', targetId: copy.id, actor: 'sweeper' },
      }),
    ).toBe(1);
    expect((await http().get(`/api/v1/actions/${restore.id}/`).set(t.auth)).body.safety_copy).toBeNull();
    const refused = await http().post(`/api/v1/actions/${restore.id}/undo/`).set(t.auth);
    expectProblem(refused, 400, 'action_not_undoable');
    expect(refused.body.reason).toBe('expired');
  });

  it('a protected safety copy outlives its expiry: the sweeper passes it over until it is unprotected', async () => {
    const t = await tenant(A, 'stopped');
    const backup = await backupOf(t.auth, t.server.id, 'p');
    const restore = await restored(t.auth, `/api/v1/backups/${backup}/restore/`);
    const copyId = restore.safety_copy.id as number;
    const protect = (on: boolean) =>
      http().post(`/api/v1/backups/${copyId}/actions/change_protection/`).set(t.auth).send({ delete: on });
    expect((await protect(true)).status).toBe(200);
    const sweeper = worker.get(SafetyCopySweeper);
    const now = jest
      .spyOn(worker.get(Clock), 'now')
      .mockReturnValue(new Date(Date.now() + 168 * HOUR + 60_000));
    try {
      await sweeper.sweep();
      const kept = await api.prisma.backup.findUniqueOrThrow({ where: { id: copyId } });
      expect(kept.deletedAt).toBeNull();
      expect((await http().get(`/api/v1/actions/${restore.id}/`).set(t.auth)).body.safety_copy).toMatchObject(
        {
          id: copyId,
        },
      );
      expect((await protect(false)).status).toBe(200);
      await sweeper.sweep();
      const gone = await api.prisma.backup.findUniqueOrThrow({ where: { id: copyId } });
      expect(gone.deletedAt).not.toBeNull();
      // The delete job the sweep started ends here, not under the file's teardown.
      const del = await api.prisma.action.findFirstOrThrow({
        where: { backupId: copyId, kind: 'delete_backup' },
      });
      expect(await done(t.auth, del.id)).toMatchObject({ status: 'succeeded' });
    } finally {
      now.mockRestore();
    }
  });
});
