/**
 * "Dependencies down", against a real API process whose Postgres and Redis connections
 * go through proxies the test cuts (the shared services keep running).
 *
 * - Postgres down: every API request answers 503 `service_unavailable` problem details (quickly, no
 *   crash), `/readyz` is 503 with `checks.postgres: "down"`; when Postgres returns the same process
 *   answers 200 again, without a restart, and nothing was written meanwhile.
 * - Redis down: reads keep working (200), creates are accepted (201, committed), `/readyz` names Redis.
 */
import {
  AppProcess,
  createSnapshot,
  eventually,
  FaultLab,
  http,
  HttpResult,
  listSnapshots,
  recordFigures,
  shown,
  Tenant,
} from './support/fault-env';
import { READINESS_REUSE_MS } from '../../src/health/readiness';

const FILE = 'test/faults/dependencies-down.fault-spec.ts';

function expect503(res: HttpResult) {
  expect(shown(res)).toMatchObject({ status: 503, body: { status: 503, code: 'service_unavailable' } });
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({
    type: expect.any(String),
    title: expect.any(String),
    detail: expect.any(String),
  });
  // No internals leak out of the failure.
  expect(res.text).not.toMatch(/prisma|ECONNREFUSED|127\.0\.0\.1|\n\s+at /i);
}

/**
 * `/readyz` once it shows these checks: the stores are asked at most once a second, so an outage or
 * a return shows up to READINESS_REUSE_MS late.
 */
async function readyzShowing(api: AppProcess, checks: { postgres: string; redis: string }) {
  let res!: HttpResult;
  await eventually(
    async () => {
      res = await http(`${api.url}/readyz`);
      const shownChecks = (res.body as { checks?: Record<string, string> }).checks;
      return shownChecks?.postgres === checks.postgres && shownChecks?.redis === checks.redis;
    },
    READINESS_REUSE_MS + 5000,
    100,
  );
  return res;
}

describe('dependencies down (real API process, Postgres and Redis cut through proxies)', () => {
  let lab: FaultLab;
  let api: AppProcess;
  let t: Tenant;

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi();
    t = await lab.tenant();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('Postgres down: 503 service_unavailable problem details and /readyz 503 (postgres down); back to 200 without a restart', async () => {
    const started = Date.now();
    expect((await listSnapshots(api, t)).status).toBe(200);
    const before = await lab.prisma.snapshot.count();

    await lab.pgProxy.cut();
    let checked = 0;
    const t0 = Date.now();
    const list = await listSnapshots(api, t);
    expect503(list);
    const create = await createSnapshot(api, t, t.serverId, { name: 'while-pg-down' });
    expect503(create);
    const one = await http(`${api.url}/api/v1/servers/${t.serverId}/`, { headers: t.auth });
    expect503(one);
    checked += 3;
    // Answered promptly (a client is not left hanging until its own timeout).
    expect(Date.now() - t0).toBeLessThan(20_000);
    const ready = await readyzShowing(api, { postgres: 'down', redis: 'up' });
    expect(shown(ready)).toMatchObject({
      status: 503,
      body: { code: 'service_unavailable', checks: { postgres: 'down', redis: 'up' } },
    });
    expect((await http(`${api.url}/healthz`)).status).toBe(200);
    checked += 2;
    expect(api.alive).toBe(true);

    await lab.pgProxy.restore();
    await eventually(async () => (await listSnapshots(api, t)).status === 200, 15_000, 200);
    expect(shown(await readyzShowing(api, { postgres: 'up', redis: 'up' }))).toMatchObject({
      status: 200,
      body: { checks: { postgres: 'up', redis: 'up' } },
    });
    // Nothing from the outage was written; the same process now accepts writes again.
    expect(await lab.prisma.snapshot.count()).toBe(before);
    const after = await createSnapshot(api, t, t.serverId, { name: 'after-pg-back' });
    expect(shown(after)).toMatchObject({ status: 201 });
    checked += 3;
    expect(api.alive).toBe(true);

    recordFigures({
      guarantee: 'Postgres down → 503, recovery without restart',
      file: FILE,
      test: 'Postgres down: 503 service_unavailable problem details …',
      faults: 1,
      checked,
      lost: 0,
      ms: Date.now() - started,
    });
  });

  it('Redis down: reads still 200, creates still 201 and committed, /readyz 503 naming Redis', async () => {
    const started = Date.now();
    const serverId = await lab.addServer(t);
    await lab.redisProxy.cut();
    let checked = 0;
    for (let i = 0; i < 3; i++) {
      const list = await listSnapshots(api, t);
      expect(shown(list)).toMatchObject({ status: 200, body: { count: expect.any(Number) } });
      checked++;
    }
    expect((await http(`${api.url}/api/v1/servers/`, { headers: t.auth })).status).toBe(200);
    const create = await createSnapshot(api, t, serverId, { name: 'while-redis-down' });
    expect(shown(create)).toMatchObject({ status: 201 });
    const action = await lab.prisma.action.findUniqueOrThrow({
      where: { id: create.body.action_id as number },
    });
    expect({ status: action.status, snapshotId: action.snapshotId }).toEqual({
      status: 'pending',
      snapshotId: create.body.id,
    });
    const ready = await readyzShowing(api, { postgres: 'up', redis: 'down' });
    expect(shown(ready)).toMatchObject({
      status: 503,
      body: { code: 'service_unavailable', checks: { postgres: 'up', redis: 'down' } },
    });
    checked += 3;

    await lab.redisProxy.restore();
    await eventually(async () => (await http(`${api.url}/readyz`)).status === 200, 15_000, 200);
    expect(api.alive).toBe(true);

    recordFigures({
      guarantee: 'Redis down → reads work, writes accepted',
      file: FILE,
      test: 'Redis down: reads still 200, creates still 201 …',
      faults: 1,
      checked,
      lost: 0,
      ms: Date.now() - started,
    });
  });
});
