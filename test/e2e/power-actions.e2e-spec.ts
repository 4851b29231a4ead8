/**
 * Power actions (`POST /api/v1/servers/{id}/actions/`): start, stop (forced), shutdown (graceful, fails
 * when the guest ignores it) and reboot run in the worker through the driver; each holds its server like
 * a create or a restore does; the server's status is what the domain became as soon as the action ends
 * (the reconciler is off here, so only the action's own outcome can show it); audit, events and
 * Idempotency-Key as the other POSTs.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import { expectProblem } from '../support/problem-assertions';
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

interface ActionBody {
  id: number;
  kind: string;
  status: string;
  server: { id: number; name: string };
  error: { code: string; message: string } | null;
}

describe('power actions (real Postgres + Redis, in-process worker on the fake driver)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let driver: FakeHypervisorDriver;
  let nodeId: number;
  let auth: Record<string, string>;
  let otherAuth: Record<string, string>;
  let accountId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    worker = await startWorker(
      testConfig(db, 'worker', { WORKER_NODE: node.name, POWER_STATE_INTERVAL_MS: '0' }),
    );
    driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
    const account = await createAccount(api.prisma);
    accountId = account.id;
    auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
    const other = await createAccount(api.prisma);
    otherAuth = { Authorization: `Bearer ${(await createToken(api.prisma, other.id)).token}` };
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  async function server(running: boolean, opts: { gracefulShutdown?: boolean } = {}) {
    const domain = `pa-${Math.random().toString(36).slice(2, 10)}`;
    driver.defineDomain(domain, { running, ...opts });
    const s = await createServer(api.prisma, accountId, nodeId, {
      domain,
      domainUuid: await driver.findDomainUuid(domain),
      status: running ? 'running' : 'stopped',
    });
    return { id: s.id, domain };
  }

  const power = (id: number, type: string, headers: Record<string, string> = auth) =>
    request(api.url).post(`/api/v1/servers/${id}/actions/`).set(headers).send({ type });

  const action = async (id: number) =>
    (await request(api.url).get(`/api/v1/actions/${id}/`).set(auth).expect(200)).body as ActionBody;

  async function ended(id: number): Promise<ActionBody> {
    await eventually(async () => ['succeeded', 'failed'].includes((await action(id)).status), 30_000, 50);
    return action(id);
  }

  const statusOf = async (id: number) =>
    ((await request(api.url).get(`/api/v1/servers/${id}/`).set(auth).expect(200)).body as { status: string })
      .status;

  const eventsOf = async (actionId: number) =>
    (
      await api.prisma.event.findMany({
        where: { accountId, subject: { path: ['action_id'], equals: actionId } },
        orderBy: { id: 'asc' },
      })
    ).map((e) => e.type);

  it('stop powers a running server off at once; its status, audit row and event follow', async () => {
    const s = await server(true);
    const res = await power(s.id, 'stop').expect(201);
    const a = res.body as ActionBody;
    expect(a).toMatchObject({ kind: 'stop_server', server: { id: s.id }, error: null });
    expect(['pending', 'running', 'succeeded']).toContain(a.status);
    expect(await ended(a.id)).toMatchObject({ status: 'succeeded', error: null });
    expect(await statusOf(s.id)).toBe('stopped');
    expect(driver.callCount('powerOff')).toBeGreaterThan(0);
    expect(driver.callCount('shutdown')).toBe(0);
    expect(await eventsOf(a.id)).toEqual(['power_action.completed']);
    const audit = await api.prisma.auditEvent.findFirst({
      where: { accountId, action: 'server.power', targetId: s.id },
    });
    expect(audit).toMatchObject({
      targetType: 'server',
      outcome: 'accepted',
      statusCode: 201,
      detail: expect.objectContaining({ type: 'stop', action_id: a.id }),
    });
    // The event's body is the action as its own endpoint shows it.
    const listed = await request(api.url).get('/api/v1/events/').set(auth).expect(200);
    const ev = (listed.body as { results: { type: string; data: ActionBody }[] }).results.find(
      (e) => e.type === 'power_action.completed' && e.data.id === a.id,
    );
    expect(ev?.data).toMatchObject({ id: a.id, kind: 'stop_server', status: 'succeeded' });
  });

  it('start, shutdown and reboot do what they say; start on a running server succeeds and changes nothing', async () => {
    const s = await server(false);
    const started = await ended((await power(s.id, 'start').expect(201)).body.id);
    expect(started).toMatchObject({ kind: 'start_server', status: 'succeeded' });
    expect(await statusOf(s.id)).toBe('running');

    const again = await ended((await power(s.id, 'start').expect(201)).body.id);
    expect(again.status).toBe('succeeded');
    expect(await statusOf(s.id)).toBe('running');

    const shutdowns = driver.callCount('shutdown');
    const starts = driver.callCount('start');
    const rebooted = await ended((await power(s.id, 'reboot').expect(201)).body.id);
    expect(rebooted).toMatchObject({ kind: 'reboot_server', status: 'succeeded' });
    expect(driver.callCount('shutdown')).toBe(shutdowns + 1);
    expect(driver.callCount('start')).toBe(starts + 1);
    expect(await statusOf(s.id)).toBe('running');

    const down = await ended((await power(s.id, 'shutdown').expect(201)).body.id);
    expect(down).toMatchObject({ kind: 'shutdown_server', status: 'succeeded' });
    expect(await statusOf(s.id)).toBe('stopped');
    // Stopping a stopped server is success too.
    expect((await ended((await power(s.id, 'stop').expect(201)).body.id)).status).toBe('succeeded');
  });

  it('a guest that ignores the shutdown request fails shutdown_timeout, stays running, and says so', async () => {
    const s = await server(true, { gracefulShutdown: false });
    const id = (await power(s.id, 'shutdown').expect(201)).body.id as number;
    const a = await ended(id);
    expect(a).toMatchObject({ status: 'failed', error: { code: 'shutdown_timeout' } });
    expect(a.error!.message).toMatch(/did not shut down within the grace period/);
    expect(await statusOf(s.id)).toBe('running');
    expect(await eventsOf(id)).toEqual(['power_action.failed']);
    // A reboot of it fails the same way, before anything is started.
    expect(await ended((await power(s.id, 'reboot').expect(201)).body.id)).toMatchObject({
      status: 'failed',
      error: { code: 'shutdown_timeout' },
    });
  });

  it('one operation per server: a power action and a create or restore refuse each other, naming the holder', async () => {
    const s = await server(true);
    // Delays, not hangs: the worker closes only once its jobs have ended.
    driver.injectFailure({ method: 'createSnapshot', mode: 'delay', ms: 3_000 });
    try {
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(auth)
        .send({ server_id: s.id, name: 'held' })
        .expect(201);
      const before = await api.prisma.action.count();
      const refused = await power(s.id, 'stop');
      expectProblem(refused, 400, 'invalid_server_state');
      expect(refused.body).toMatchObject({
        server_id: s.id,
        action: { id: created.body.action_id, kind: 'create_snapshot' },
      });
      expect(refused.body.detail).toMatch(/^Bad Request - Server is not in a valid state for power action/);
      const cy = await power(s.id, 'stop').set('Accept-Language', 'cy');
      expect(cy.body.detail).toMatch(/^Cais Gwael - .*gweithred pŵer/);
      expect(await api.prisma.action.count()).toBe(before);
      await ended(created.body.action_id);
    } finally {
      driver.clearFailures();
    }

    const t = await server(true);
    driver.injectFailure({ method: 'shutdown', mode: 'delay', ms: 3_000 });
    try {
      const held = (await power(t.id, 'shutdown').expect(201)).body as ActionBody;
      const snap = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(auth)
        .send({ server_id: t.id, name: 'refused' });
      expectProblem(snap, 400, 'invalid_server_state');
      expect(snap.body.action).toMatchObject({ id: held.id, kind: 'shutdown_server' });
      const second = await power(t.id, 'start');
      expectProblem(second, 400, 'invalid_server_state');
      expect(second.body.action).toMatchObject({ id: held.id, kind: 'shutdown_server' });
      expect(await ended(held.id)).toMatchObject({ status: 'succeeded' });
    } finally {
      driver.clearFailures();
    }
  });

  it('an Idempotency-Key retry answers the same action; another body with it is refused', async () => {
    const s = await server(true);
    const key = { ...auth, 'Idempotency-Key': `pa-${s.id}` };
    const first = await power(s.id, 'reboot', key).expect(201);
    const retry = await power(s.id, 'reboot', key).expect(201);
    expect(retry.body.id).toBe(first.body.id);
    expect(await api.prisma.action.count({ where: { serverId: s.id } })).toBe(1);
    expectProblem(await power(s.id, 'stop', key), 400, 'idempotency_key_reused');
    await ended(first.body.id);
  });

  it('refuses a bad type (400), a server of another account or none (404), writing nothing', async () => {
    const s = await server(true);
    for (const body of [{ type: 'hibernate' }, {}, { type: 1 }]) {
      const res = await request(api.url).post(`/api/v1/servers/${s.id}/actions/`).set(auth).send(body);
      expectProblem(res, 400, 'validation_failed');
    }
    expectProblem(await power(s.id, 'stop', otherAuth), 404, 'server_not_found');
    expectProblem(await power(999_999, 'stop'), 404, 'server_not_found');
    expect(await api.prisma.action.count({ where: { serverId: s.id } })).toBe(0);
    const refusedAudit = await api.prisma.auditEvent.findFirst({
      where: { action: 'server.power', targetId: s.id, outcome: 'refused', statusCode: 404 },
    });
    expect(refusedAudit).not.toBeNull();
  });
});
