/**
 * Fair scheduling per hypervisor node, on real Postgres and Redis with the API and a worker built as in
 * production (fake driver, each copy lasting FAKE_DRIVER_DELAY_MS): account A floods the node with one
 * create per server; account B's single create, sent afterwards, still starts within one operation's
 * time, and A never runs more than WORKER_ACCOUNT_CONCURRENCY copies at once.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { HYPERVISOR_DRIVER, HypervisorDriver } from '../../src/hypervisor/hypervisor-driver';
import { jobIdOf, JobQueue } from '../../src/jobs/job-queue';
import { createNode, createServer, createTenant } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

/** How long each fake copy lasts: "one operation's time". */
const COPY_MS = 1000;
/** Servers (one create each) of the flooding account. */
const FLOOD = 10;

type Tenant = Awaited<ReturnType<typeof createTenant>>;

describe('fair scheduling per node (real Postgres + Redis, fake driver)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext | undefined;
  let nodeName: string;
  let nodeId: number;
  const savedDelay = process.env.FAKE_DRIVER_DELAY_MS;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeName = node.name;
    nodeId = node.id;
    process.env.FAKE_DRIVER_DELAY_MS = String(COPY_MS);
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
  });
  afterAll(async () => {
    if (savedDelay === undefined) delete process.env.FAKE_DRIVER_DELAY_MS;
    else process.env.FAKE_DRIVER_DELAY_MS = savedDelay;
    await api?.close();
    await db?.drop();
  });

  /**
   * Starts the node's worker and watches its driver: the most copies each account had running at once
   * (an observer around the real fake driver's createSnapshot; the copy itself is untouched).
   */
  async function startObservedWorker(env: Record<string, string>) {
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeName, ...env }));
    const driver = worker.get<HypervisorDriver>(HYPERVISOR_DRIVER);
    const accountOf = async (serverId: number) =>
      (await api.prisma.server.findUniqueOrThrow({ where: { id: serverId } })).accountId;
    const running = new Map<number, number>();
    const most = new Map<number, number>();
    const copy = driver.createSnapshot.bind(driver);
    driver.createSnapshot = async (server, ...rest) => {
      const account = await accountOf(server.id);
      running.set(account, (running.get(account) ?? 0) + 1);
      most.set(account, Math.max(most.get(account) ?? 0, running.get(account)!));
      try {
        return await copy(server, ...rest);
      } finally {
        running.set(account, running.get(account)! - 1);
      }
    };
    return { most };
  }

  const create = (t: Tenant, serverId: number) =>
    request(api.url)
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .send({ server_id: serverId, name: `fair-${serverId}` });

  async function flood(a: Tenant): Promise<number[]> {
    const servers = [a.server.id];
    for (let k = 1; k < FLOOD; k++) servers.push((await createServer(api.prisma, a.account.id, nodeId)).id);
    const answers = await Promise.all(servers.map((id) => create(a, id)));
    for (const res of answers) expect(res.status).toBe(201);
    return answers.map((res) => res.body.action_id as number);
  }

  const actions = (ids: number[]) =>
    api.prisma.action.findMany({
      where: { id: { in: ids } },
      select: { id: true, status: true, createdAt: true, startedAt: true, finishedAt: true },
      orderBy: { startedAt: 'asc' },
    });

  /** Runs the scenario: A floods, then B sends one create once A's copies are under way. */
  async function scenario(env: Record<string, string>) {
    const a = await createTenant(api.prisma, nodeId);
    const b = await createTenant(api.prisma, nodeId);
    const observed = await startObservedWorker(env);
    const aIds = await flood(a);
    await eventually(async () => (await actions(aIds)).some((x) => x.status === 'running'));
    const res = await create(b, b.server.id);
    expect(res.status).toBe(201);
    const bId = res.body.action_id as number;
    const all = [...aIds, bId];
    await eventually(
      async () => (await actions(all)).every((x) => x.status === 'succeeded'),
      FLOOD * COPY_MS * 3,
    );
    const rows = await actions(all);
    const bRow = rows.find((x) => x.id === bId)!;
    const aRows = rows.filter((x) => x.id !== bId);
    const durations = aRows
      .map((x) => x.finishedAt!.getTime() - x.startedAt!.getTime())
      .sort((p, q) => p - q);
    return {
      a,
      b,
      observed,
      /** B's wait from accepted to started. */
      bWaitMs: bRow.startedAt!.getTime() - bRow.createdAt.getTime(),
      /** One operation's time: the median duration of A's operations. */
      opMs: durations[Math.floor(durations.length / 2)],
      /** A's operations that started after B's. */
      aAfterB: aRows.filter((x) => x.startedAt! > bRow.startedAt!).length,
    };
  }

  it("node full with A's share: B's create starts within one operation's time, ahead of A's queue", async () => {
    const r = await scenario({ WORKER_CONCURRENCY: '2', WORKER_ACCOUNT_CONCURRENCY: '2' });
    // The figure for docs/reliability.md.
    process.stdout.write(
      `fair (node full): B waited ${r.bWaitMs} ms; one operation ${r.opMs} ms; ${r.aAfterB} of A's ${FLOOD} started after B\n`,
    );
    expect(r.bWaitMs).toBeLessThanOrEqual(r.opMs);
    // FIFO would have started B after all of A's; fair order starts it after at most A's first few.
    expect(r.aAfterB).toBeGreaterThanOrEqual(FLOOD - 4);
    expect(r.observed.most.get(r.a.account.id)).toBe(2);
  });

  it('A never runs more than its cap; B takes a free slot at once', async () => {
    const r = await scenario({ WORKER_CONCURRENCY: '3', WORKER_ACCOUNT_CONCURRENCY: '2' });
    process.stdout.write(
      `fair (free slot): B waited ${r.bWaitMs} ms; one operation ${r.opMs} ms; A at most ${r.observed.most.get(r.a.account.id)} at once\n`,
    );
    expect(r.observed.most.get(r.a.account.id)).toBe(2);
    expect(r.observed.most.get(r.b.account.id)).toBe(1);
    expect(r.bWaitMs).toBeLessThan(r.opMs / 2);
  });

  it("gives each job its action's place among its account's open operations on the node as priority", async () => {
    // No worker: the actions stay pending, as in a queue that has not reached them.
    const a = await createTenant(api.prisma, nodeId);
    const b = await createTenant(api.prisma, nodeId);
    const other = await createNode(api.prisma);
    const aServers = [a.server.id];
    for (let k = 0; k < 3; k++) aServers.push((await createServer(api.prisma, a.account.id, nodeId)).id);
    const elsewhere = await createServer(api.prisma, a.account.id, other.id);
    const post = async (t: Tenant, serverId: number) => {
      const res = await create(t, serverId);
      expect(res.status).toBe(201);
      return res.body.action_id as number;
    };
    const first = await post(a, aServers[0]);
    await post(a, elsewhere.id); // another node: its own line
    const second = await post(a, aServers[1]);
    await api.prisma.action.update({ where: { id: first }, data: { status: 'succeeded' } }); // no longer open
    const third = await post(a, aServers[2]);
    const fourth = await post(a, aServers[3]);
    const quiet = await post(b, b.server.id);
    const queue = api.app.get(JobQueue).queueFor(nodeId);
    const job = async (id: number) => (await queue.getJob(jobIdOf(id)))!;
    const priorities = await Promise.all(
      [first, second, third, fourth, quiet].map(async (id) => (await job(id)).opts.priority),
    );
    // first: 1 when enqueued; second: 2 (first still open); third: 2 (first finished); fourth: 3; B: 1.
    expect(priorities).toEqual([1, 2, 2, 3, 1]);
    expect((await job(quiet)).data).toEqual({ actionId: quiet, accountId: b.account.id });
  });
});
