/**
 * "Nothing stuck", with real processes.
 *
 * - A long copy on a live worker (longer than ACTION_STALE_MS) is not reaped: heartbeats keep it alive.
 * - A restore whose job vanished (worker killed, queue obliterated: Redis lost its data) is failed by the
 *   reaper with a readable error, and the server returns to the status it had before (`running`).
 * - A create whose job vanished and whose heartbeat is old is failed the same way, snapshot included.
 * - A restore that fails on the host (verification_failed) leaves the server usable: status back, a new
 *   snapshot of it can be taken.
 */
import {
  AppProcess,
  createSnapshot,
  eventually,
  FaultLab,
  http,
  recordFigures,
  restoreSnapshot,
  shown,
  sleep,
  Tenant,
} from './support/fault-env';

const FILE = 'test/faults/nothing-stuck.fault-spec.ts';

/** A customer-facing error: a sentence, no stack trace, no path, no host or domain names. */
function expectReadableError(code: string | null, message: string | null, domain: string) {
  expect(code).toMatch(/^[a-z_]+$/);
  expect(message).toEqual(expect.any(String));
  expect(message!.length).toBeGreaterThan(10);
  expect(message).not.toMatch(/\n\s+at |\/[a-z]+\/|Error:|undefined|null/);
  expect(message).not.toContain(domain);
}

describe('nothing stuck (reaper, heartbeats, failed restores; real processes)', () => {
  let lab: FaultLab;
  let api: AppProcess;
  let worker: AppProcess;

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi();
  });
  afterAll(async () => {
    await lab?.close();
  });

  async function serverRow(id: number) {
    return lab.prisma.server.findUniqueOrThrow({ where: { id } });
  }

  it('a live copy longer than ACTION_STALE_MS completes (heartbeats); a restore whose job vanished is failed by the reaper and the server is running again', async () => {
    const started = Date.now();
    // 4 s copies against ACTION_STALE_MS=3000.
    const env = { FAKE_DRIVER_DELAY_MS: '4000' };
    worker = await lab.startWorker(env);
    const t = await lab.tenant();
    const created = await createSnapshot(api, t, t.serverId, { name: 'long-copy' });
    expect(shown(created)).toMatchObject({ status: 201 });
    const createAction = await lab.finishedAction(created.body.action_id as number, 20_000);
    expect({ status: createAction.status, error: createAction.errorMessage }).toEqual({
      status: 'succeeded',
      error: null,
    });

    const restore = await restoreSnapshot(api, t, created.body.id as number);
    expect(shown(restore)).toMatchObject({ status: 200 });
    const actionId = restore.body.action_id as number;
    await eventually(async () => (await lab.actionStatus(actionId)) === 'running', 10_000);
    expect((await serverRow(t.serverId)).status).toBe('restoring');
    // The host dies, and Redis loses the job with it.
    await worker.kill();
    await lab.nodeQueue().obliterate({ force: true });
    expect(await lab.nodeQueue().getJob(`action-${actionId}`)).toBeUndefined();

    worker = await lab.startWorker(env);
    const reaped = await lab.finishedAction(actionId, 20_000).catch(async (e: unknown) => {
      throw new Error(`orphaned restore still open: ${String(e)}\n${await lab.describeAction(actionId)}`);
    });
    const server = await serverRow(t.serverId);
    expect(reaped.status).toBe('failed');
    expectReadableError(reaped.errorCode, reaped.errorMessage, server.domain);
    expect(server.status).toBe('running');
    // The snapshot it restored from is untouched, and the API shows the outcome.
    expect(
      (await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: created.body.id as number } })).status,
    ).toBe('completed');
    const shownAction = await http(`${api.url}/api/v1/actions/${actionId}/`, { headers: t.auth });
    expect(shown(shownAction)).toMatchObject({
      status: 200,
      body: { status: 'failed', error: { code: reaped.errorCode, message: reaped.errorMessage } },
    });

    recordFigures({
      guarantee: 'Reaper: vanished restore job',
      file: FILE,
      test: 'a live copy longer than ACTION_STALE_MS completes …; a restore whose job vanished is failed by the reaper …',
      faults: 2,
      checked: 2,
      lost: 0,
      ms: Date.now() - started,
      note: '1 SIGKILL + 1 queue obliteration; the 4 s copy (stale bound 3 s) succeeded, the orphaned restore failed with server back to running',
    });
  });

  it('a create whose job vanished and whose heartbeat is old is failed by the reaper, its snapshot too', async () => {
    const started = Date.now();
    const t: Tenant = await lab.tenant();
    const old = new Date(Date.now() - 10 * 60_000);
    // Rows exactly as a claimed create leaves them when its worker and its job are gone.
    const snap = await lab.prisma.snapshot.create({
      data: { accountId: t.accountId, serverId: t.serverId, name: 'orphan', progress: 40 },
    });
    const action = await lab.prisma.action.create({
      data: {
        kind: 'create_snapshot',
        status: 'running',
        accountId: t.accountId,
        serverId: t.serverId,
        snapshotId: snap.id,
        serverStatusBefore: 'running',
        attempts: 1,
        progress: 40,
        createdAt: old,
        enqueuedAt: old,
        startedAt: old,
        heartbeatAt: old,
      },
    });
    const reaped = await lab.finishedAction(action.id, 15_000).catch(async (e: unknown) => {
      throw new Error(`orphaned create still open: ${String(e)}\n${await lab.describeAction(action.id)}`);
    });
    const server = await serverRow(t.serverId);
    expect(reaped.status).toBe('failed');
    expectReadableError(reaped.errorCode, reaped.errorMessage, server.domain);
    const s = await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: snap.id } });
    expect({ status: s.status, error: typeof s.error }).toEqual({ status: 'failed', error: 'string' });
    expect(server.status).toBe('running');
    // The server is free again: a new create is accepted.
    const again = await createSnapshot(api, t, t.serverId, { name: 'after-reap' });
    expect(shown(again)).toMatchObject({ status: 201 });

    recordFigures({
      guarantee: 'Reaper: stale create',
      file: FILE,
      test: 'a create whose job vanished and whose heartbeat is old is failed by the reaper …',
      faults: 1,
      checked: 1,
      lost: 0,
      ms: Date.now() - started,
    });
  });

  it('operators see it: the worker that reaped both actions logged each one (JSON, level warn)', () => {
    // Both reaps above were done by this worker process; LOG_LEVEL=warn keeps warnings.
    const lines = worker.output
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const reapedLogs = lines.filter((l) => l.level === 40 && /reap/i.test(String(l.msg)));
    expect({ reapedLogs: reapedLogs.length, tail: reapedLogs.length >= 2 ? '' : worker.tail() }).toEqual({
      reapedLogs: 2,
      tail: '',
    });
  });

  it('a restore that fails on the host (verification_failed) leaves the server usable: status back, new snapshots work', async () => {
    const started = Date.now();
    await worker.kill();
    worker = await lab.startWorker({
      FAKE_DRIVER_DELAY_MS: '200',
      FAKE_DRIVER_FAIL: 'restoreSnapshot:fail_always:verification_failed',
    });
    const t = await lab.tenant();
    const created = await createSnapshot(api, t, t.serverId, { name: 'good' });
    expect(shown(created)).toMatchObject({ status: 201 });
    expect((await lab.finishedAction(created.body.action_id as number)).status).toBe('succeeded');

    const restore = await restoreSnapshot(api, t, created.body.id as number);
    expect(shown(restore)).toMatchObject({ status: 200 });
    const failed = await lab.finishedAction(restore.body.action_id as number, 20_000);
    const server = await serverRow(t.serverId);
    expect({ status: failed.status, code: failed.errorCode }).toEqual({
      status: 'failed',
      code: 'verification_failed',
    });
    expectReadableError(failed.errorCode, failed.errorMessage, server.domain);
    expect(server.status).toBe('running');
    const view = await http(`${api.url}/api/v1/servers/${t.serverId}/`, { headers: t.auth });
    expect(shown(view)).toMatchObject({ status: 200, body: { status: 'running', current_action: null } });

    // Usable: another snapshot is taken and completes.
    await sleep(100);
    const next = await createSnapshot(api, t, t.serverId, { name: 'after-failed-restore' });
    expect(shown(next)).toMatchObject({ status: 201 });
    expect((await lab.finishedAction(next.body.action_id as number)).status).toBe('succeeded');

    recordFigures({
      guarantee: 'Failed restore leaves the server usable',
      file: FILE,
      test: 'a restore that fails on the host (verification_failed) leaves the server usable …',
      faults: 1,
      checked: 3,
      lost: 0,
      ms: Date.now() - started,
    });
  });
});
