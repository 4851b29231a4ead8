import { INestApplicationContext } from '@nestjs/common';
import { createServer } from 'node:net';
import request from 'supertest';
import { ConfigError, loadConfig } from '../../src/config/app-config';
import { JobQueue } from '../../src/jobs/job-queue';
import { WorkerMetricsServer } from '../../src/metrics/worker-metrics.server';
import { createAccount, createNode, createServer as createVm, createTenant, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TEST_BACKUP_MASTER_KEY,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

const METRICS_TOKEN = 'metrics-secret-0123456789abcdef';

/** Value of one sample in a Prometheus text exposition (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('metrics, and the admin queue dashboard (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let node: { id: number; name: string };
  let admin: string;
  let tenant: Awaited<ReturnType<typeof createTenant>>;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { METRICS_TOKEN, METRICS_CACHE_MS: '0' }));
    node = await createNode(api.prisma);
    tenant = await createTenant(api.prisma, node.id);
    admin = (await createToken(api.prisma, tenant.account.id, { scopes: ['admin'] })).token;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const scrape = async () => {
    const res = await request(api.url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
    expect(res.status).toBe(200);
    return res.text;
  };

  describe('protection of /metrics', () => {
    it('needs the metrics token or an admin token', async () => {
      const none = await request(api.url).get('/metrics');
      expect(none.status).toBe(401);
      expect(none.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(none.body.code).toBe('unauthorized');
      const wrong = await request(api.url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}x`);
      expect(wrong.status).toBe(401);
      const customer = await request(api.url).get('/metrics').set(tenant.auth);
      expect(customer.status).toBe(403);
      expect(customer.body.code).toBe('forbidden');
      const ok = await request(api.url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
      expect(ok.status).toBe(200);
      expect(ok.headers['content-type']).toMatch(/^text\/plain;.*version=0\.0\.4/);
      expect(ok.text).toContain('# TYPE http_request_duration_seconds histogram');
      expect(ok.text).toContain('process_cpu_seconds_total');
      const byAdmin = await request(api.url).get('/metrics').set('Authorization', `Bearer ${admin}`);
      expect(byAdmin.status).toBe(200);
    });

    it('with no METRICS_TOKEN configured, only admin tokens read it', async () => {
      const other = await startApi(testConfig(db, 'api'));
      try {
        const res = await request(other.url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
        expect(res.status).toBe(401);
        expect(
          (await request(other.url).get('/metrics').set('Authorization', `Bearer ${admin}`)).status,
        ).toBe(200);
      } finally {
        await other.close();
      }
    });
  });

  it('times HTTP requests by route template and status, never by raw URL', async () => {
    expect((await request(api.url).get(`/api/v1/servers/${tenant.server.id}/`).set(tenant.auth)).status).toBe(
      200,
    );
    expect((await request(api.url).get('/api/v1/servers/987654/').set(tenant.auth)).status).toBe(404);
    expect((await request(api.url).get('/api/v1/servers/').set('Authorization', 'Bearer nope')).status).toBe(
      401,
    );
    expect((await request(api.url).get('/no/such/path/4242')).status).toBe(404);
    const text = await scrape();
    const count = (route: string, status: string) =>
      sample(text, 'http_request_duration_seconds_count', { method: 'GET', route, status });
    expect(count('/api/v1/servers/:id', '200')).toBeGreaterThanOrEqual(1);
    expect(count('/api/v1/servers/:id', '404')).toBeGreaterThanOrEqual(1);
    expect(count('/api/v1/servers', '401')).toBeGreaterThanOrEqual(1);
    expect(count('unmatched', '404')).toBeGreaterThanOrEqual(1);
    expect(count('/healthz', '200') ?? 0).toBe(0); // not requested yet: no series made up
    // In the labels: a sample's value is a float whose digits may hold any of these by chance
    // (a duration sum of 0.0014342429… once failed this test).
    const labels = (text.match(/\{[^}\n]*\}/g) ?? []).join('\n');
    expect(labels).toContain('route="unmatched"');
    expect(labels).not.toContain(`/api/v1/servers/${tenant.server.id}`);
    expect(labels).not.toContain('987654');
    expect(labels).not.toContain('4242');
  });

  it('counts live snapshots by status with one grouped query', async () => {
    const base = { accountId: tenant.account.id, serverId: tenant.server.id };
    await api.prisma.snapshot.createMany({
      data: [
        { ...base, name: 'a', status: 'completed' },
        { ...base, name: 'b', status: 'completed' },
        { ...base, name: 'c', status: 'failed' },
        { ...base, name: 'd', status: 'completed', deletedAt: new Date() },
      ],
    });
    const text = await scrape();
    expect(sample(text, 'vps_snapshots', { status: 'completed' })).toBe(2);
    expect(sample(text, 'vps_snapshots', { status: 'failed' })).toBe(1);
    expect(sample(text, 'vps_snapshots', { status: 'in_progress' })).toBe(0);
    expect(sample(text, 'vps_metrics_source_up', { source: 'postgres' })).toBe(1);
    expect(sample(text, 'vps_metrics_source_up', { source: 'redis' })).toBe(1);
  });

  it('reports queue depth per node and state', async () => {
    const idle = await createNode(api.prisma); // no worker consumes its queue
    const queue = api.app.get(JobQueue);
    for (const actionId of [900001, 900002, 900003])
      await queue.enqueue(idle.id, actionId, 'create_snapshot');
    const text = await scrape();
    expect(sample(text, 'vps_queue_jobs', { node: idle.name, state: 'waiting' })).toBe(3);
    for (const state of ['active', 'delayed', 'failed'])
      expect(sample(text, 'vps_queue_jobs', { node: idle.name, state })).toBe(0);
  });

  describe('worker metrics listener', () => {
    let worker: INestApplicationContext;
    let port: number;

    beforeAll(async () => {
      port = await freePort();
      worker = await startWorker(
        testConfig(db, 'worker', {
          WORKER_NODE: node.name,
          WORKER_METRICS_PORT: String(port),
          METRICS_TOKEN,
        }),
      );
    });
    afterAll(async () => {
      await worker?.close();
    });

    it('serves job duration, outcome, active jobs and bytes copied, labelled with its node', async () => {
      expect(worker.get(WorkerMetricsServer).address()).toMatchObject({ address: '127.0.0.1', port });
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(tenant.auth)
        .send({ server_id: tenant.server.id, name: 'metered' });
      expect(created.status).toBe(201);
      const url = `http://127.0.0.1:${port}`;
      const text = await eventually(async () => {
        const res = await request(url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
        const labels = { kind: 'create_snapshot', outcome: 'succeeded', node: node.name };
        return (
          res.status === 200 && sample(res.text, 'vps_job_duration_seconds_count', labels) === 1 && res.text
        );
      });
      expect(sample(text, 'vps_snapshot_bytes_copied_total', { node: node.name })).toBeGreaterThan(0);
      expect(sample(text, 'vps_jobs_active', { kind: 'create_snapshot', node: node.name })).toBe(0);
      const snap = await api.prisma.snapshot.findFirstOrThrow({ where: { name: 'metered' } });
      expect(Number(snap.sizeBytes)).toBe(
        sample(text, 'vps_snapshot_bytes_copied_total', { node: node.name }),
      );
    });

    it('needs the metrics token for /metrics; /healthz and /readyz are open', async () => {
      const url = `http://127.0.0.1:${port}`;
      expect((await request(url).get('/metrics')).status).toBe(401);
      expect((await request(url).get('/metrics').set('Authorization', `Bearer ${admin}`)).status).toBe(401);
      expect((await request(url).get('/healthz')).status).toBe(200);
      const ready = await request(url).get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body).toEqual({ status: 'ready', checks: { postgres: 'up', redis: 'up' } });
      expect((await request(url).get('/other')).status).toBe(404);
    });

    it('refuses a non-loopback listener without a token, and is off by default', () => {
      const env = {
        DATABASE_URL: db.url,
        REDIS_URL: 'redis://127.0.0.1:6379',
        WORKER_NODE: 'hv1',
        BACKUP_MASTER_KEY: TEST_BACKUP_MASTER_KEY,
      };
      expect(() =>
        loadConfig({ ...env, WORKER_METRICS_PORT: '9464', WORKER_METRICS_HOST: '0.0.0.0' }, 'worker'),
      ).toThrow(ConfigError);
      expect(
        loadConfig(
          { ...env, WORKER_METRICS_PORT: '9464', WORKER_METRICS_HOST: '0.0.0.0', METRICS_TOKEN },
          'worker',
        ).workerMetricsPort,
      ).toBe(9464);
      expect(loadConfig(env, 'worker').workerMetricsPort).toBe(0);
      expect(() => loadConfig({ ...env, METRICS_TOKEN: 'short' }, 'worker')).toThrow(/METRICS_TOKEN/);
    });
  });

  describe('admin queue dashboard (/admin/queues)', () => {
    it('is refused without a token (Basic challenge) and to account tokens', async () => {
      const none = await request(api.url).get('/admin/queues');
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Basic realm=/);
      const customer = await request(api.url).get('/admin/queues').set(tenant.auth);
      expect(customer.status).toBe(403);
      const basicCustomer = await request(api.url).get('/admin/queues/api/queues').auth('x', tenant.token);
      expect(basicCustomer.status).toBe(403);
    });

    it('shows every node queue to admin tokens, as Bearer or as the Basic password', async () => {
      const page = await request(api.url).get('/admin/queues').set('Authorization', `Bearer ${admin}`);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.text).toContain('<base href="/admin/queues/" />');
      const other = await createVm(api.prisma, (await createAccount(api.prisma)).id, node.id);
      expect(other.id).toBeGreaterThan(0);
      const queues = await request(api.url).get('/admin/queues/api/queues').auth('ops', admin);
      expect(queues.status).toBe(200);
      const names = (queues.body.queues as { name: string; readOnlyMode: boolean }[]).map((q) => q.name);
      expect(names).toContain(`node-${node.id}`);
      expect((queues.body.queues as { readOnlyMode: boolean }[]).every((q) => q.readOnlyMode)).toBe(true);
      const text = await scrape();
      expect(
        sample(text, 'http_request_duration_seconds_count', { route: '/admin/queues/*', status: '200' }),
      ).toBeGreaterThanOrEqual(2);
    });
  });
});
