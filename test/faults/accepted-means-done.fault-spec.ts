/**
 * "Accepted means done", with real processes: the API and the worker run from dist/,
 * Redis is cut for real (a proxy that resets every connection and refuses new ones).
 *
 * - While Redis is down, create (201), restore (200) and delete (204) are still accepted, and each is
 *   committed with its action before the response. When Redis returns, the worker's dispatcher
 *   enqueues the committed actions and every one of them completes.
 * - Jobs are deduplicated by action id: adding the same action again is a no-op, and no action runs twice.
 */
import { Queue } from 'bullmq';
import { nodeQueueName } from '../../src/jobs/job-queue';
import { createNode, createServer } from '../factories';
import {
  AppProcess,
  createSnapshot,
  deleteSnapshot,
  FaultLab,
  recordFigures,
  restoreSnapshot,
  shown,
  sleep,
  Tenant,
} from './support/fault-env';

const FILE = 'test/faults/accepted-means-done.fault-spec.ts';

describe('accepted means done (real API + worker processes, Redis cut)', () => {
  let lab: FaultLab;
  let api: AppProcess;
  let worker: AppProcess;
  const ENV = { FAKE_DRIVER_DELAY_MS: '300' };

  beforeAll(async () => {
    lab = await FaultLab.create();
    [api, worker] = await Promise.all([lab.startApi(ENV), lab.startWorker(ENV)]);
  });
  afterAll(async () => {
    await lab?.close();
  });

  async function completedSnapshot(t: Tenant, serverId: number): Promise<number> {
    const res = await createSnapshot(api, t, serverId, { name: 'before-outage' });
    expect(shown(res)).toMatchObject({ status: 201 });
    const action = await lab.finishedAction(res.body.action_id as number);
    expect(action.status).toBe('succeeded');
    return res.body.id as number;
  }

  it('Redis down: create 201, restore 200, delete 204 are committed with their actions; when Redis returns they are enqueued and complete', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const createServers = [t.serverId, await lab.addServer(t), await lab.addServer(t, 'stopped')];
    const restoreServer = await lab.addServer(t);
    const deleteServer = await lab.addServer(t);
    const toRestore = await completedSnapshot(t, restoreServer);
    const toDelete = await completedSnapshot(t, deleteServer);

    await lab.redisProxy.cut();
    // The API must notice: its queue producer fails fast instead of buffering commands.
    const accepted: { kind: string; actionId: number; snapshotId: number }[] = [];
    for (const [i, serverId] of createServers.entries()) {
      const res = await createSnapshot(api, t, serverId, { name: `during-outage-${i}` });
      expect(shown(res)).toMatchObject({ status: 201, body: { status: 'in_progress' } });
      accepted.push({
        kind: 'create_snapshot',
        actionId: res.body.action_id as number,
        snapshotId: res.body.id as number,
      });
    }
    const restore = await restoreSnapshot(api, t, toRestore);
    expect(shown(restore)).toMatchObject({ status: 200, body: { server: { status: 'restoring' } } });
    accepted.push({
      kind: 'restore_snapshot',
      actionId: restore.body.action_id as number,
      snapshotId: toRestore,
    });
    const del = await deleteSnapshot(api, t, toDelete);
    expect(del.status).toBe(204);
    const delAction = await lab.prisma.action.findFirstOrThrow({
      where: { snapshotId: toDelete, kind: 'delete_snapshot' },
    });
    accepted.push({ kind: 'delete_snapshot', actionId: delAction.id, snapshotId: toDelete });

    // Committed before the response: every accepted operation has its rows, and no job exists yet.
    for (const a of accepted) {
      const row = await lab.prisma.action.findUniqueOrThrow({ where: { id: a.actionId } });
      expect({ id: a.actionId, kind: row.kind, status: row.status, snapshotId: row.snapshotId }).toEqual({
        id: a.actionId,
        kind: a.kind,
        status: 'pending',
        snapshotId: a.snapshotId,
      });
      expect(await lab.nodeQueue().getJob(`action-${a.actionId}`)).toBeUndefined();
    }
    expect(
      await lab.prisma.snapshot.count({
        where: { id: { in: accepted.slice(0, 3).map((a) => a.snapshotId) } },
      }),
    ).toBe(3);
    expect((await lab.prisma.server.findUniqueOrThrow({ where: { id: restoreServer } })).status).toBe(
      'restoring',
    );
    expect(
      (await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: toDelete } })).deletedAt,
    ).not.toBeNull();

    // The outage lasts a while: nothing can run, nothing is lost.
    await sleep(1500);
    for (const a of accepted) expect(await lab.actionStatus(a.actionId)).toBe('pending');

    await lab.redisProxy.restore();
    for (const a of accepted) {
      const done = await lab.finishedAction(a.actionId, 20_000).catch(async (e: unknown) => {
        throw new Error(
          `never finished after Redis returned: ${String(e)}\n${await lab.describeAction(a.actionId)}`,
        );
      });
      expect({ id: a.actionId, status: done.status, error: done.errorMessage }).toEqual({
        id: a.actionId,
        status: 'succeeded',
        error: null,
      });
    }
    for (const a of accepted.filter((x) => x.kind === 'create_snapshot')) {
      const s = await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: a.snapshotId } });
      expect({ status: s.status, hasSize: s.sizeBytes !== null && s.sizeBytes > 0n }).toEqual({
        status: 'completed',
        hasSize: true,
      });
    }
    expect((await lab.prisma.server.findUniqueOrThrow({ where: { id: restoreServer } })).status).toBe(
      'running',
    );
    expect(api.alive && worker.alive).toBe(true);

    recordFigures({
      guarantee: 'Accepted means done (Redis down)',
      file: FILE,
      test: 'Redis down: create 201, restore 200, delete 204 are committed … and complete',
      faults: 1,
      checked: accepted.length,
      lost: 0,
      ms: Date.now() - started,
      note: `${accepted.length} operations accepted during the outage (3 creates, 1 restore, 1 delete), all succeeded after it`,
    });
  });

  it('jobs are deduplicated by action id: adding an accepted action again is a no-op, and no action ever runs twice', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const res = await createSnapshot(api, t, t.serverId, { name: 'dedup' });
    expect(shown(res)).toMatchObject({ status: 201 });
    const actionId = res.body.action_id as number;
    const queue = lab.nodeQueue();
    // The same action enqueued twice more, exactly as the API and the dispatcher enqueue it.
    for (let i = 0; i < 2; i++) {
      await queue.add('create_snapshot', { actionId }, { jobId: `action-${actionId}` });
    }
    expect((await lab.finishedAction(actionId)).status).toBe('succeeded');
    // After completion too (completed jobs are kept, so the id is still taken).
    await queue.add('create_snapshot', { actionId }, { jobId: `action-${actionId}` });
    await sleep(500);

    const jobs = await queue.getJobs(['wait', 'active', 'delayed', 'completed', 'failed', 'prioritized']);
    const ids = jobs.map((j) => j.id);
    expect(ids.filter((id) => id === `action-${actionId}`)).toHaveLength(1);
    // Over the whole file (API enqueues, dispatcher re-enqueues after the outage, manual adds): never two
    // jobs for one action, never a job without an action, and no action claimed more than once.
    const actions = await lab.prisma.action.findMany({ select: { id: true, attempts: true, status: true } });
    const actionJobIds = new Set(actions.map((a) => `action-${a.id}`));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => !actionJobIds.has(id!))).toEqual([]);
    expect(actions.filter((a) => a.attempts > 1)).toEqual([]);
    expect((await lab.prisma.action.findUniqueOrThrow({ where: { id: actionId } })).attempts).toBe(1);

    recordFigures({
      guarantee: 'Queue jobs deduplicated by action id',
      file: FILE,
      test: 'jobs are deduplicated by action id …',
      faults: 3,
      checked: actions.length,
      lost: 0,
      ms: Date.now() - started,
      note: `3 duplicate adds; ${actions.length} actions, ${ids.length} jobs, every action claimed once`,
    });
  });

  it("the API's own producer recovers: after an outage during its first enqueue to a node, the next create is enqueued by the API itself", async () => {
    const started = Date.now();
    // A node without a worker (so no dispatcher can enqueue for it) and an API that never enqueued to it.
    const node = await createNode(lab.prisma, {
      snapshotDir: `/tmp/vps-fault-snapshots-${lab.queuePrefix}-2`,
    });
    const t = await lab.tenant();
    const first = await createServer(lab.prisma, t.accountId, node.id);
    const second = await createServer(lab.prisma, t.accountId, node.id);
    const fresh = await lab.startApi(ENV);
    const connection = lab.inspector.duplicate();
    const queue = new Queue(nodeQueueName(node.id), { connection, prefix: lab.queuePrefix });
    try {
      await lab.redisProxy.cut();
      const during = await createSnapshot(fresh, t, first.id, { name: 'first-enqueue-in-outage' });
      expect(shown(during)).toMatchObject({ status: 201 });
      await lab.redisProxy.restore();
      // The API's Redis client reconnects within its retry delay (at most 2 s).
      await sleep(3000);
      const after = await createSnapshot(fresh, t, second.id, { name: 'after-outage' });
      expect(shown(after)).toMatchObject({ status: 201 });
      const job = await queue.getJob(`action-${after.body.action_id as number}`);
      expect({ job: job?.id ?? 'not enqueued' }).toEqual({ job: `action-${after.body.action_id as number}` });

      recordFigures({
        guarantee: "API's producer recovers after an outage",
        file: FILE,
        test: "the API's own producer recovers …",
        faults: 1,
        checked: 2,
        lost: 0,
        ms: Date.now() - started,
      });
    } finally {
      await lab.redisProxy.restore();
      await queue.close();
      connection.disconnect();
      await fresh.kill();
    }
  });
});
