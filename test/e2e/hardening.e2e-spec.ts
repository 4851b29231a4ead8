import net from 'node:net';
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createNode, createTenant, createToken } from '../factories';
import { AuditService } from '../../src/audit/audit.service';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

/** Idempotency keys, rate limits, the audit log, body bounds, security headers, database down. */
describe('hardening (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    worker = await startWorker(
      testConfig(db, 'worker', { WORKER_NODE: node.name, FAKE_DRIVER_DELAY_MS: '300' }),
    );
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  const snapshotsOf = (serverId: number) => api.prisma.snapshot.count({ where: { serverId } });

  describe('Idempotency-Key', () => {
    it('replays the first response and starts nothing new', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const body = { server_id: t.server.id, name: 'idem-1' };
      const first = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Idempotency-Key', 'k-1')
        .send(body);
      expect(first.status).toBe(201);
      const again = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Idempotency-Key', 'k-1')
        .send(body);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(await snapshotsOf(t.server.id)).toBe(1);
      expect(await api.prisma.action.count({ where: { serverId: t.server.id } })).toBe(1);
    });

    it('the same key with another body is 400 idempotency_key_reused', async () => {
      const t = await createTenant(api.prisma, nodeId);
      await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Idempotency-Key', 'k-2')
        .send({ server_id: t.server.id, name: 'a' });
      const other = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Idempotency-Key', 'k-2')
        .send({ server_id: t.server.id, name: 'b' });
      expect(other.status).toBe(400);
      expect(other.body.code).toBe('idempotency_key_reused');
      expect(await snapshotsOf(t.server.id)).toBe(1);
    });

    it('racing identical requests make one snapshot and the same answer', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const body = { server_id: t.server.id, name: 'race' };
      const responses = await Promise.all(
        Array.from({ length: 8 }, () =>
          request(api.url).post('/api/v1/snapshots/').set(t.auth).set('Idempotency-Key', 'k-race').send(body),
        ),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(8).fill(201));
      expect(new Set(responses.map((r) => r.body.id)).size).toBe(1);
      expect(await snapshotsOf(t.server.id)).toBe(1);
    });

    it('keys are per account, and a refused first request frees its key', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const b = await createTenant(api.prisma, nodeId);
      const ra = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(a.auth)
        .set('Idempotency-Key', 'shared')
        .send({ server_id: a.server.id, name: 'x' });
      const rb = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(b.auth)
        .set('Idempotency-Key', 'shared')
        .send({ server_id: b.server.id, name: 'x' });
      expect([ra.status, rb.status]).toEqual([201, 201]);
      expect(rb.body.id).not.toBe(ra.body.id);
      // Refused (server busy restoring): the key is released, so the same request can succeed later.
      await api.prisma.server.update({ where: { id: b.server.id }, data: { status: 'restoring' } });
      const send = () =>
        request(api.url)
          .post('/api/v1/snapshots/')
          .set(b.auth)
          .set('Idempotency-Key', 'later')
          .send({ server_id: b.server.id, name: 'y' });
      const busy = await send();
      expect(busy.status).toBe(400);
      expect(busy.body.code).toBe('invalid_server_state');
      await eventually(
        async () =>
          (await api.prisma.action.count({
            where: { serverId: b.server.id, status: { in: ['pending', 'running'] } },
          })) === 0,
      );
      await api.prisma.server.update({ where: { id: b.server.id }, data: { status: 'running' } });
      const ok = await send();
      expect(ok.status).toBe(201);
    });

    it('restore honours the key too, and a malformed key is 400', async () => {
      const t = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .send({ server_id: t.server.id, name: 's' });
      await eventually(
        async () =>
          (await api.prisma.snapshot.findUnique({ where: { id: created.body.id } }))?.status === 'completed',
      );
      const path = `/api/v1/snapshots/${created.body.id}/restore/`;
      const r1 = await request(api.url).post(path).set(t.auth).set('Idempotency-Key', 'restore-1');
      const r2 = await request(api.url).post(path).set(t.auth).set('Idempotency-Key', 'restore-1');
      expect([r1.status, r2.status]).toEqual([200, 200]);
      expect(r2.body).toEqual(r1.body);
      expect(
        await api.prisma.action.count({ where: { kind: 'restore_snapshot', serverId: t.server.id } }),
      ).toBe(1);
      const bad = await request(api.url).post(path).set(t.auth).set('Idempotency-Key', 'has space');
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('validation_failed');
    });
  });

  describe('rate limits', () => {
    it('429 with Retry-After past the limit, shared by API replicas through Redis', async () => {
      const cfg = testConfig(db, 'api', { RATE_LIMIT_PER_MINUTE: '4', RATE_LIMIT_WRITES_PER_MINUTE: '2' });
      const a = await startApi(cfg);
      const b = await startApi(cfg);
      try {
        const t = await createTenant(api.prisma, nodeId);
        const r1 = await request(a.url).get('/api/v1/servers/').set(t.auth);
        expect(r1.status).toBe(200);
        expect(r1.headers['ratelimit-limit']).toBe('4');
        expect(r1.headers['ratelimit-remaining']).toBe('3');
        expect(Number(r1.headers['ratelimit-reset'])).toBeGreaterThan(0);
        await request(b.url).get('/api/v1/servers/').set(t.auth);
        await request(a.url).get('/api/v1/servers/').set(t.auth);
        await request(b.url).get('/api/v1/servers/').set(t.auth);
        const over = await request(a.url).get('/api/v1/servers/').set(t.auth);
        // The window may have rolled over between requests; then the fifth one is merely the first.
        if (over.status !== 429) expect(over.headers['ratelimit-remaining']).toBe('3');
        else {
          expect(over.body.code).toBe('rate_limited');
          expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
          expect(over.headers['content-type']).toMatch(/problem\+json/);
        }
        // Another token has its own budget.
        const other = await createToken(api.prisma, t.account.id);
        expect(
          (await request(a.url).get('/api/v1/servers/').set('Authorization', `Bearer ${other.token}`)).status,
        ).toBe(200);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe('audit log', () => {
    it('records snapshot create, refused deletes and token changes; admins read it', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const created = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('X-Request-Id', 'audit-req-1')
        .send({ server_id: t.server.id, name: 'audited' });
      expect(created.status).toBe(201);
      await request(api.url).delete('/api/v1/snapshots/999999/').set(t.auth);
      const tok = await request(api.url).post('/api/v1/tokens/').set(t.auth).send({ name: 'audited-token' });
      await request(api.url).delete(`/api/v1/tokens/${tok.body.id}/`).set(t.auth);
      const admin = await createToken(api.prisma, t.account.id, { scopes: ['admin'] });
      const refused = await request(api.url).get('/api/v1/admin/audit-events/').set(t.auth);
      expect(refused.status).toBe(403);
      const res = await request(api.url)
        .get(`/api/v1/admin/audit-events/?account_id=${t.account.id}`)
        .set('Authorization', `Bearer ${admin.token}`);
      expect(res.status).toBe(200);
      const events = res.body.results as {
        action: string;
        outcome: string;
        request_id: string;
        target: { id: number } | null;
        actor: string;
        ip: string;
      }[];
      expect(events.map((e) => `${e.action}:${e.outcome}`)).toEqual(
        expect.arrayContaining([
          'snapshot.create:accepted',
          'snapshot.delete:refused',
          'token.create:accepted',
          'token.revoke:accepted',
        ]),
      );
      const create = events.find((e) => e.action === 'snapshot.create')!;
      expect(create.request_id).toBe('audit-req-1');
      expect(create.target).toEqual({ type: 'snapshot', id: created.body.id });
      expect(create.actor).toMatch(/^token:\d+$/);
      expect(create.ip).toBeTruthy();
      expect(JSON.stringify(res.body)).not.toContain(tok.body.token);
    });

    it('events recorded together are one INSERT, and one bad event does not lose the others', async () => {
      const audit = api.app.get(AuditService);
      const t = await createTenant(api.prisma, nodeId);
      const base = { accountId: t.account.id, tokenId: null, actor: 'test', targetType: 'snapshot' };
      // In one turn: one batch. The middle one cannot be stored (ip longer than its column).
      await Promise.all([
        audit.record({ ...base, action: 'batch.one', outcome: 'accepted', requestId: 'b-1' }),
        audit.record({ ...base, action: 'batch.bad', outcome: 'accepted', ip: 'x'.repeat(200) }),
        audit.record({
          ...base,
          action: 'batch.two',
          outcome: 'refused',
          requestId: 'b-2',
          detail: { n: 2 },
        }),
      ]);
      const rows = await api.prisma.auditEvent.findMany({
        where: { accountId: t.account.id, action: { startsWith: 'batch.' } },
        orderBy: { id: 'asc' },
      });
      expect(rows.map((r) => [r.action, r.outcome, r.requestId, r.detail])).toEqual([
        ['batch.one', 'accepted', 'b-1', null],
        ['batch.two', 'refused', 'b-2', { n: 2 }],
      ]);
    });
  });

  describe('bad input and headers', () => {
    it('deeply nested JSON is 400, never 500, and nothing is written', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const deep = '{"a":'.repeat(5000) + '1' + '}'.repeat(5000);
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Content-Type', 'application/json')
        .send(deep);
      expect([400, 413]).toContain(res.status);
      expect(await snapshotsOf(t.server.id)).toBe(0);
    });

    it('a slow client that never finishes its headers is cut off (HEADERS_TIMEOUT_MS)', async () => {
      const slow = await startApi(
        testConfig(db, 'api', { HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '1000' }),
      );
      try {
        const port = Number(new URL(slow.url).port);
        const started = Date.now();
        const outcome = await new Promise<string>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () => {
            socket.write('GET /api/v1/servers/ HTTP/1.1\r\nHost: x\r\n'); // headers never end
          });
          let reply = '';
          socket.on('data', (d) => (reply += d.toString()));
          socket.on('close', () => resolve(reply.split('\r\n')[0] || 'closed'));
          setTimeout(() => {
            socket.destroy();
            resolve('still open');
          }, 45_000).unref();
        });
        // Node checks these deadlines every 30 s (connectionsCheckingInterval), so the cut comes within that.
        expect(outcome).not.toBe('still open');
        expect(outcome).toMatch(/408|closed/);
        expect(Date.now() - started).toBeLessThan(45_000);
      } finally {
        await slow.close();
      }
    }, 60_000);

    it('security headers are set (helmet)', async () => {
      const res = await request(api.url).get('/healthz');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['content-security-policy']).toBeDefined();
      expect(res.headers['x-powered-by']).toBeUndefined();
    });
  });

  it('Postgres unreachable → 503 service_unavailable problem, /readyz 503', async () => {
    const broken = { ...db, url: db.url.replace(/:\d+\//, ':1/') };
    const down = await startApi(testConfig(broken, 'api'));
    try {
      const t = await createTenant(api.prisma, nodeId);
      const res = await request(down.url).get('/api/v1/servers/').set(t.auth);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('service_unavailable');
      expect(res.headers['content-type']).toMatch(/problem\+json/);
      const ready = await request(down.url).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.postgres).toBe('down');
    } finally {
      await down.close();
    }
  });
});
