/**
 * One attempt at a time per action: the queue is at-least-once, and a job whose lock lapsed under load
 * is handed to a second attempt while the first still runs. The second must stand down — two restores
 * (or creates) of one disk at once leave neither.
 */
import { INestApplicationContext } from '@nestjs/common';
import type { Job } from 'bullmq';
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
import { createNode, createTenant } from '../factories';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { ActionJobData } from '../../src/jobs/job-queue';
import { NodeWorkerService } from '../../src/jobs/node-worker.service';

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

  it('a second attempt handed the job while the first still copies stands down; the copy runs once', async () => {
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
      const again = {
        id: 'handed-over',
        name: 'create_snapshot',
        data: { actionId, accountId: t.account.id },
        opts: {},
        attemptsMade: 1,
      };
      const second = await worker
        .get(NodeWorkerService)
        .process(again as unknown as Job<ActionJobData>, 'token');
      expect(second).toBe('duplicate');
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
});
