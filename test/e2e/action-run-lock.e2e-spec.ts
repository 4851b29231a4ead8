/**
 * One attempt at a time per action: the queue is at-least-once, and a job whose lock lapsed under load
 * is handed to a second attempt while the first still runs. The second must stand down — two restores
 * (or creates) of one disk at once leave neither. Nor may the reaper fail an action whose attempt is
 * alive: a starved worker stops heartbeating and loses its job while it still rewrites the disk.
 */
import { INestApplicationContext } from '@nestjs/common';
import { DelayedError, type Job } from 'bullmq';
import request from 'supertest';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { createCompletedSnapshot, createNode, createTenant } from '../factories';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { ActionJobData } from '../../src/jobs/job-queue';
import { NodeWorkerService } from '../../src/jobs/node-worker.service';
import { ActionRunLocks } from '../../src/jobs/action-run-locks';
import { AppConfig } from '../../src/config/app-config';

describe('one attempt at a time per action (real Postgres + Redis, in-process worker)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let nodeName: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    nodeName = (await createNode(api.prisma)).name;
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeName }));
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  it('a second attempt handed the job while the first still copies stands down and puts the job back for later; the copy runs once', async () => {
    const node = await api.prisma.node.findUniqueOrThrow({ where: { name: nodeName } });
    const t = await createTenant(api.prisma, node.id);
    driver.injectFailure({ method: 'createSnapshot', mode: 'delay', ms: 1500 });
    try {
      const before = driver.callCount('createSnapshot');
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .send({ server_id: t.server.id, name: 'once' })
        .expect(201);
      const actionId = (created.body as { action_id: number }).action_id;
      await eventually(async () => driver.callCount('createSnapshot') > before);
      // What BullMQ does when the first attempt's lock lapses: the same job, run again beside it.
      const delayedUntil: number[] = [];
      const again = {
        id: 'handed-over',
        name: 'create_snapshot',
        data: { actionId, accountId: t.account.id },
        opts: {},
        attemptsMade: 1,
        moveToDelayed: (at: number) => {
          delayedUntil.push(at);
          return Promise.resolve();
        },
      };
      // It stands down and puts the job back for later (no attempt used): the action keeps its job.
      await expect(
        worker.get(NodeWorkerService).process(again as unknown as Job<ActionJobData>, 'token'),
      ).rejects.toBeInstanceOf(DelayedError);
      expect(delayedUntil).toHaveLength(1);
      const action = await eventually(async () => {
        const a = await api.prisma.action.findUniqueOrThrow({ where: { id: actionId } });
        return a.status === 'succeeded' ? a : null;
      });
      expect(action.attempts).toBe(1);
      expect(driver.callCount('createSnapshot') - before).toBe(1);
    } finally {
      driver.clearFailures();
    }
  });
  it('the reaper leaves a stale-looking restore whose attempt holds its run lock; once the lock is gone it fails it and frees the server', async () => {
    const node = await api.prisma.node.findUniqueOrThrow({ where: { name: nodeName } });
    const t = await createTenant(api.prisma, node.id);
    const snap = await createCompletedSnapshot(api.prisma, {
      accountId: t.account.id,
      serverId: t.server.id,
    });
    // As a starved attempt leaves it: `running`, heartbeat long silent, its job handed over and gone.
    const stale = new Date(Date.now() - 86_400_000);
    await api.prisma.server.update({ where: { id: t.server.id }, data: { status: 'restoring' } });
    const restore = await api.prisma.action.create({
      data: {
        kind: 'restore_snapshot',
        status: 'running',
        accountId: t.account.id,
        serverId: t.server.id,
        snapshotId: snap.id,
        serverStatusBefore: 'running',
        heartbeatAt: stale,
        startedAt: stale,
      },
    });
    // The live attempt, in another worker process: its own session holds the action's run lock.
    const otherWorker = new ActionRunLocks(worker.get(AppConfig));
    try {
      expect(await otherWorker.tryHold(restore.id)).not.toBeNull();
      await worker.get(NodeWorkerService).reap();
      expect(await api.prisma.action.findUniqueOrThrow({ where: { id: restore.id } })).toMatchObject({
        status: 'running',
        errorCode: null,
      });
      expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
        'restoring',
      );
    } finally {
      await otherWorker.onModuleDestroy(); // that process died: its session, and the lock, are gone
    }
    expect(await worker.get(NodeWorkerService).reap()).toBeGreaterThanOrEqual(1);
    expect(await api.prisma.action.findUniqueOrThrow({ where: { id: restore.id } })).toMatchObject({
      status: 'failed',
      errorCode: 'interrupted',
    });
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).status).toBe(
      'running',
    );
  });
});
