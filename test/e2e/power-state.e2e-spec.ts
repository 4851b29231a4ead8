/**
 * True power state: the worker reconciles each server's status with its domain, so a guest stopped,
 * paused, crashed or removed outside the API shows within the interval; a server an operation holds
 * keeps the status that operation owns until it ends, and is reconciled at once afterwards.
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
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';

const INTERVAL_MS = 200;

describe('power state reconciliation (real Postgres + Redis, in-process worker on the fake driver)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let nodeId: number;
  let auth: Record<string, string>;
  let accountId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    worker = await startWorker(
      testConfig(db, 'worker', { WORKER_NODE: node.name, POWER_STATE_INTERVAL_MS: String(INTERVAL_MS) }),
    );
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    const account = await createAccount(api.prisma);
    accountId = account.id;
    auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  /** A server whose domain the fake knows, running, with its UUID registered. */
  async function runningServer() {
    const domain = `pwr-${Math.random().toString(36).slice(2, 10)}`;
    driver.defineDomain(domain, { running: true });
    const server = await createServer(api.prisma, accountId, nodeId, {
      domain,
      domainUuid: await driver.findDomainUuid(domain),
      status: 'running',
    });
    return { id: server.id, domain };
  }

  const statusOf = async (id: number): Promise<string> =>
    ((await request(api.url).get(`/api/v1/servers/${id}/`).set(auth).expect(200)).body as { status: string })
      .status;

  /** Waits until the API shows `want`, answering how long that took (ms). */
  async function shows(id: number, want: string): Promise<number> {
    const t0 = Date.now();
    await eventually(async () => (await statusOf(id)) === want, 5_000, 20);
    return Date.now() - t0;
  }

  it('a domain stopped, paused, crashed, started or removed outside the API shows within the interval', async () => {
    const s = await runningServer();
    const other = await runningServer();
    for (const state of ['stopped', 'paused', 'crashed', 'running'] as const) {
      driver.setPowerState(s.domain, state);
      // Within two intervals (a pass may have just looked before the change), plus the request.
      expect(await shows(s.id, state)).toBeLessThan(2 * INTERVAL_MS + 1_000);
    }
    driver.undefineDomain(s.domain);
    await shows(s.id, 'missing');
    expect(await statusOf(other.id)).toBe('running');
  });

  it('a server an operation holds is not reconciled until the operation ends, then at once', async () => {
    const s = await runningServer();
    driver.injectFailure({ method: 'createSnapshot', mode: 'delay', ms: 6 * INTERVAL_MS });
    try {
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(auth)
        .send({ server_id: s.id, name: 'held' })
        .expect(201);
      const actionId = (created.body as { action_id: number }).action_id;
      await eventually(
        async () =>
          ((await request(api.url).get(`/api/v1/actions/${actionId}/`).set(auth)).body as { status: string })
            .status === 'running',
      );
      driver.setPowerState(s.domain, 'paused');
      // Several passes run while the create holds the server: none writes its status.
      await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
      expect(await statusOf(s.id)).toBe('running');
      await eventually(
        async () =>
          ((await request(api.url).get(`/api/v1/actions/${actionId}/`).set(auth)).body as { status: string })
            .status === 'succeeded',
      );
      await shows(s.id, 'paused');
    } finally {
      driver.clearFailures();
    }
  });
});
