/**
 * Closing an application (`app.close()`, what SIGTERM does in src/main.ts) with work in flight, on real
 * Postgres and Redis: the worker stops taking jobs and lets the running one finish before anything it
 * uses closes, and the API answers a request in flight before its modules close. Either way nothing
 * is left connected to the database afterwards (a pool used after its close opens again and stays).
 */
import { INestApplicationContext } from '@nestjs/common';
import http from 'node:http';
import { Client } from 'pg';
import { FakeHypervisorDriver } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
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

/** Longer than any close here takes, far shorter than a hang. */
const CLOSE_BOUND_MS = 10_000;

describe('closing an application with work in flight (real Postgres + Redis, fake node)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let node: { id: number; name: string };
  let auth: Record<string, string>;
  let accountId: number;
  /** Apps a failed test left open. */
  const open = new Set<{ close(): Promise<void> }>();

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    node = await createNode(api.prisma);
    const account = await createAccount(api.prisma);
    accountId = account.id;
    const { token } = await createToken(api.prisma, account.id);
    auth = { Authorization: `Bearer ${token}` };
  });
  afterAll(async () => {
    for (const app of open) await app.close().catch(() => undefined);
    await api?.close();
    await db?.drop();
  });

  /** The database URL with `name` as application_name, so this app's own connections can be counted. */
  const named = (name: string) => {
    const url = new URL(db.url);
    url.searchParams.set('application_name', name);
    return url.toString();
  };

  /** Connections open under `name`, once the ones just closed are gone (a leaked pool's stay). */
  async function connectionsOf(name: string): Promise<number> {
    const c = new Client({ connectionString: db.url });
    await c.connect();
    try {
      const count = async () =>
        Number(
          (
            await c.query<{ n: string }>(
              'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
              [name],
            )
          ).rows[0]!.n,
        );
      return await eventually(async () => ((await count()) === 0 ? 0 : null), 3000).catch(() => count());
    } finally {
      await c.end();
    }
  }

  it('the worker lets a running job finish before its collaborators close; nothing stays connected', async () => {
    const worker: INestApplicationContext = await startWorker(
      testConfig(db, 'worker', {
        DATABASE_URL: named('close-worker'),
        WORKER_NODE: node.name,
        JOB_ATTEMPTS: '1',
      }),
    );
    open.add(worker);
    const driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    const server = await createServer(api.prisma, accountId, node.id, { status: 'stopped' });
    driver.defineDomain(server.domain, { diskPath: server.diskPath, running: false });
    driver.injectFailure({ method: 'createSnapshot', mode: 'delay', ms: 1500 });
    const res = await fetch(`${api.url}/api/v1/snapshots/`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ server_id: server.id, name: 'in-flight' }),
    });
    expect(res.status).toBe(201);
    const { action_id: actionId } = (await res.json()) as { action_id: number };
    await eventually(async () => {
      const a = await api.prisma.action.findUnique({ where: { id: actionId } });
      return a?.status === 'running';
    });

    const started = Date.now();
    await worker.close();
    open.delete(worker);
    expect(Date.now() - started).toBeLessThan(CLOSE_BOUND_MS);
    // Settled by the time close returns: the job ran to its end with its database still open.
    expect(await api.prisma.action.findUnique({ where: { id: actionId } })).toMatchObject({
      status: 'succeeded',
    });
    expect(await connectionsOf('close-worker')).toBe(0);
  });

  it('the API answers a request in flight before its modules close; nothing stays connected', async () => {
    const closing = await startApi(testConfig(db, 'api', { DATABASE_URL: named('close-api') }));
    open.add(closing);
    const server = await createServer(api.prisma, accountId, node.id, { status: 'stopped' });
    const body = Buffer.from(JSON.stringify({ server_id: server.id, name: 'during-close' }));
    const { port } = new URL(closing.url);
    let closed: Promise<number> | undefined;
    const received = new Promise<void>((resolve) =>
      closing.app.getHttpServer().once('request', () => resolve()),
    );
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/api/v1/snapshots/',
          headers: { ...auth, 'Content-Type': 'application/json', 'Content-Length': body.length },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.subarray(0, 5));
      // The rest of the body once closing has begun (the request is in flight meanwhile).
      void received.then(() => {
        const started = Date.now();
        closed = closing.close().then(() => (open.delete(closing), Date.now() - started));
        setTimeout(() => req.end(body.subarray(5)), 500);
      });
    });

    const res = await answer;
    expect(res.status).toBe(201);
    const actionId = (JSON.parse(res.body) as { action_id: number }).action_id;
    expect(await api.prisma.action.findUnique({ where: { id: actionId } })).toMatchObject({
      status: 'pending',
    });
    expect(await closed).toBeLessThan(CLOSE_BOUND_MS);
    expect(await connectionsOf('close-api')).toBe(0);
  });
});
