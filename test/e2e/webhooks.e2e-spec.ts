/**
 * Webhooks and the events list, on real Postgres: endpoints (secret shown once, sealed at rest, other
 * tenants' 404), target rules (no SSRF: refused schemes and addresses, after DNS and at connect), the
 * events list's cursor, and the sender driven by a simulated clock — Standard Webhooks signatures
 * verified with the `standardwebhooks` package, retries byte-identical under one webhook-id,
 * exponential back-off, and an endpoint disabled (saying why) after failing for the whole window.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Clock } from '../../src/common/clock';
import { ActionReads } from '../../src/actions/action-reads';
import { EventBodies } from '../../src/events/event-bodies';
import { NodeWebhookHttp } from '../../src/events/webhook-http';
import { WebhookSecretRotation } from '../../src/events/webhook-secret-rotation';
import { WebhookSender } from '../../src/events/webhook-sender';
import { TargetRefused, WebhookTargets } from '../../src/events/webhook-target';
import { createAccount, createNode, createServer, createToken } from '../factories';
import { expectProblem } from '../support/problem-assertions';
import {
  createTestDatabase,
  startApi,
  TEST_WEBHOOK_SECRET_KEY,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { Receiver, startReceiver } from '../support/webhook-receiver';

class SimulatedClock extends Clock {
  t = Date.now();
  override now(): Date {
    return new Date(this.t);
  }
}

describe('webhooks and events (real Postgres)', () => {
  let db: TestDatabase;
  let strict: TestApi; // production rules: https to public addresses only
  let dev: TestApi; // as `npm run local`: loopback http allowed
  let receiver: Receiver;
  let nodeId: number;
  const DEV_ENV = {
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_ADDRESSES: '127.0.0.0/8,::1/128',
    WEBHOOKS_PER_ACCOUNT_MAX: '3',
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    strict = await startApi(testConfig(db, 'api'));
    dev = await startApi(testConfig(db, 'api', DEV_ENV));
    receiver = await startReceiver();
    nodeId = (await createNode(dev.prisma)).id;
  });
  afterAll(async () => {
    await receiver?.close();
    await strict?.close();
    await dev?.close();
    await db?.drop();
  });

  async function tenant() {
    const account = await createAccount(dev.prisma);
    const { token } = await createToken(dev.prisma, account.id);
    const server = await createServer(dev.prisma, account.id, nodeId);
    return { account, server, auth: { Authorization: `Bearer ${token}` } };
  }
  type Tenant = Awaited<ReturnType<typeof tenant>>;
  const create = (api: TestApi, t: Tenant, body: object) =>
    request(api.url).post('/api/v1/webhooks/').set(t.auth).send(body);

  /** A snapshot of the tenant's server whose create action ends now (the trigger records the event). */
  async function snapshotEvent(t: Tenant, outcome: 'succeeded' | 'failed' = 'succeeded') {
    const snapshot = await dev.prisma.snapshot.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        name: `s${Date.now() % 100000}`,
        status: outcome === 'succeeded' ? 'completed' : 'failed',
      },
    });
    const action = await dev.prisma.action.create({
      data: {
        kind: 'create_snapshot',
        status: 'running',
        accountId: t.account.id,
        serverId: t.server.id,
        snapshotId: snapshot.id,
      },
    });
    await dev.prisma.action.update({
      where: { id: action.id },
      data: { status: outcome, finishedAt: new Date() },
    });
    return snapshot;
  }

  function newSender(clock: Clock, env: Record<string, string> = {}) {
    const config = testConfig(db, 'webhooks', { ...DEV_ENV, ...env });
    const targets = new WebhookTargets({ allowHttp: true, allowedRanges: config.webhookAllowedRanges });
    return new WebhookSender(
      dev.prisma,
      config,
      clock,
      new EventBodies(dev.prisma, dev.app.get(ActionReads)),
      new NodeWebhookHttp(targets),
    );
  }

  describe('endpoints', () => {
    it('the secret is shown once; list and detail never show it; another tenant gets 404; delete stops it', async () => {
      const t = await tenant();
      const other = await tenant();
      const res = await create(dev, t, { url: receiver.url, event_types: ['backup.failed'] });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        url: receiver.url,
        event_types: ['backup.failed'],
        status: 'enabled',
        disabled_reason: null,
      });
      expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(res.body.secret.startsWith(res.body.secret_prefix)).toBe(true);
      const id = res.body.id as number;

      const list = await request(dev.url).get('/api/v1/webhooks/').set(t.auth);
      const detail = await request(dev.url).get(`/api/v1/webhooks/${id}/`).set(t.auth);
      for (const body of [list.body.results[0], detail.body]) {
        expect(body).toMatchObject({ id, url: receiver.url });
        expect(JSON.stringify(body)).not.toContain(res.body.secret);
        expect(body).not.toHaveProperty('secret');
      }
      // Stored only sealed: the database does not hold it in clear.
      const row = await dev.prisma.webhook.findUniqueOrThrow({ where: { id } });
      expect(Buffer.from(row.secretSealed).toString('latin1')).not.toContain(res.body.secret.slice(6));

      expectProblem(
        await request(dev.url).get(`/api/v1/webhooks/${id}/`).set(other.auth),
        404,
        'webhook_not_found',
      );
      expectProblem(
        await request(dev.url).delete(`/api/v1/webhooks/${id}/`).set(other.auth),
        404,
        'webhook_not_found',
      );
      const cy = await request(dev.url).get('/api/v1/webhooks/abc/').set(t.auth).set('Accept-Language', 'cy');
      expectProblem(cy, 404, 'webhook_not_found');
      expect(cy.body.detail).toMatch(/bachyn gwe/);

      const audit = await dev.prisma.auditEvent.findFirst({
        where: { action: 'webhook.create', targetId: id },
      });
      expect(audit?.detail).toMatchObject({ url: receiver.url, event_types: ['backup.failed'] });
      expect((await request(dev.url).delete(`/api/v1/webhooks/${id}/`).set(t.auth)).status).toBe(204);
      expectProblem(
        await request(dev.url).get(`/api/v1/webhooks/${id}/`).set(t.auth),
        404,
        'webhook_not_found',
      );
    });

    it('bad input is a 400 naming the field; the account limit holds, also under racing creates', async () => {
      const t = await tenant();
      const bad = await create(dev, t, { url: 'not a url', event_types: ['backup.exploded'] });
      expectProblem(bad, 400, 'validation_failed');
      expect((bad.body.errors as { field: string }[]).map((e) => e.field).sort()).toEqual([
        'event_types',
        'url',
      ]);
      const results = await Promise.all([1, 2, 3, 4, 5].map(() => create(dev, t, { url: receiver.url })));
      expect(results.map((r) => r.status).sort()).toEqual([201, 201, 201, 400, 400]);
      expectProblem(
        results.find((r) => r.status === 400)!,
        400,
        'webhook_limit_reached',
      );
      expect(await dev.prisma.webhook.count({ where: { accountId: t.account.id } })).toBe(3);
    });

    it('refuses http and every private, loopback, link-local or reserved target in production (no SSRF)', async () => {
      const t = await tenant();
      const refused: [string, string][] = [
        ['http://hooks.example.com/x', 'scheme'],
        ['https://127.0.0.1/x', 'address'],
        ['https://localhost:8443/x', 'address'], // a name, refused after DNS resolution
        ['https://10.1.2.3/x', 'address'],
        ['https://172.20.0.1/x', 'address'],
        ['https://192.168.1.1/x', 'address'],
        ['https://169.254.169.254/latest/meta-data', 'address'],
        ['https://100.64.0.1/x', 'address'],
        ['https://0.0.0.0/x', 'address'],
        ['https://[::1]/x', 'address'],
        ['https://[fd00::1]/x', 'address'],
        ['https://[fe80::1]/x', 'address'],
        ['https://[::ffff:127.0.0.1]/x', 'address'],
        ['https://[::ffff:a9fe:a9fe]/x', 'address'],
        ['https://no-such-host.invalid/x', 'unresolved'],
      ];
      for (const [url, reason] of refused) {
        const res = await create(strict, t, { url });
        expect({ url, status: res.status, code: res.body.code, reason: res.body.reason }).toEqual({
          url,
          status: 400,
          code: 'webhook_url_not_allowed',
          reason,
        });
      }
      expect(await strict.prisma.webhook.count({ where: { accountId: t.account.id } })).toBe(0);
      // The same loopback target is accepted where the operator allows it (npm run local).
      expect((await create(dev, t, { url: receiver.url })).status).toBe(201);
    });

    it('checks again at connect time: a name that re-resolves to a private address (DNS rebinding) is not reached', async () => {
      let lookups = 0;
      const rebinding = new WebhookTargets({ allowHttp: true, allowedRanges: [] }, async () =>
        ++lookups === 1 ? [{ address: '93.184.215.14', family: 4 }] : [{ address: '127.0.0.1', family: 4 }],
      );
      const url = new URL(receiver.url.replace('127.0.0.1', 'rebind.example'));
      await expect(rebinding.check(url)).resolves.toHaveLength(1);
      const before = receiver.received.length;
      const sent = new NodeWebhookHttp(rebinding).post(url, {}, '{}', 2000);
      await expect(sent).rejects.toBeInstanceOf(TargetRefused);
      await expect(sent).rejects.toMatchObject({ reason: 'address', address: '127.0.0.1' });
      // A literal private address is refused before any socket is opened.
      await expect(
        new NodeWebhookHttp(rebinding).post(new URL(receiver.url), {}, '{}', 2000),
      ).rejects.toMatchObject({
        reason: 'address',
      });
      expect(receiver.received.length).toBe(before);
    });
  });

  describe('delivery', () => {
    it('signed as Standard Webhooks says; data is the resource as its endpoint shows it; the events list has the same body', async () => {
      const t = await tenant();
      const created = await create(dev, t, { url: receiver.url, event_types: ['snapshot.completed'] });
      const snapshot = await snapshotEvent(t);
      await snapshotEvent(t, 'failed'); // not a type this endpoint asked for
      receiver.received.length = 0;
      const sender = newSender(new Clock());
      expect(await sender.sendDue()).toBe(1);
      expect(receiver.received).toHaveLength(1);
      const [hook] = receiver.received;
      const verified = new StandardWebhook(created.body.secret as string).verify(hook.body, hook.headers);
      const snapshotBody = (await request(dev.url).get(`/api/v1/snapshots/${snapshot.id}/`).set(t.auth)).body;
      expect(verified).toEqual({
        type: 'snapshot.completed',
        timestamp: expect.any(String),
        // The server it concerns carries its labels too (none here).
        data: { ...snapshotBody, server: { ...snapshotBody.server, labels: {} } },
      });
      expect(hook.headers['webhook-id']).toMatch(/^evt_\d+$/);
      // A wrong secret does not verify.
      expect(() =>
        new StandardWebhook('whsec_' + Buffer.alloc(32).toString('base64')).verify(hook.body, hook.headers),
      ).toThrow();

      const events = await request(dev.url).get('/api/v1/events/').set(t.auth);
      expect(events.status).toBe(200);
      expect(events.body.results.map((e: { type: string }) => e.type)).toEqual([
        'snapshot.completed',
        'snapshot.failed',
      ]);
      const listed = events.body.results[0];
      expect(`evt_${listed.id}`).toBe(hook.headers['webhook-id']);
      const { id: _id, ...listedBody } = listed;
      expect(JSON.stringify(listedBody)).toBe(hook.body);
      expect(await sender.sendDue()).toBe(0);
    });

    it('a change of delete protection is an event with the protection it set; the same value again is none', async () => {
      const t = await tenant();
      const created = await create(dev, t, {
        url: receiver.url,
        event_types: ['snapshot.protection_changed', 'backup.protection_changed'],
      });
      const data = { accountId: t.account.id, serverId: t.server.id, status: 'completed' as const };
      const snapshot = await dev.prisma.snapshot.create({ data: { ...data, name: 'kept' } });
      const backup = await dev.prisma.backup.create({ data: { ...data, name: 'kept', store: 'default' } });
      const protect = (path: string, on: boolean) =>
        request(dev.url).post(`/api/v1/${path}/actions/change_protection/`).set(t.auth).send({ delete: on });
      expect((await protect(`snapshots/${snapshot.id}`, true)).status).toBe(200);
      expect((await protect(`snapshots/${snapshot.id}`, true)).status).toBe(200); // unchanged: no event
      expect((await protect(`backups/${backup.id}`, true)).status).toBe(200);
      expect((await protect(`snapshots/${snapshot.id}`, false)).status).toBe(200);

      // Rendered after the last change, each event still shows the protection it set.
      const events = await request(dev.url).get('/api/v1/events/').set(t.auth);
      expect(events.status).toBe(200);
      expect(
        events.body.results.map((e: { type: string; data: { id: number; protection: unknown } }) => [
          e.type,
          e.data.id,
          e.data.protection,
        ]),
      ).toEqual([
        ['snapshot.protection_changed', snapshot.id, { delete: true }],
        ['backup.protection_changed', backup.id, { delete: true }],
        ['snapshot.protection_changed', snapshot.id, { delete: false }],
      ]);
      const snapshotBody = (await request(dev.url).get(`/api/v1/snapshots/${snapshot.id}/`).set(t.auth)).body;
      expect(events.body.results[2].data).toEqual({
        ...snapshotBody,
        server: { ...snapshotBody.server, labels: {} },
      });

      receiver.received.length = 0;
      const sender = newSender(new Clock());
      expect(await sender.sendDue()).toBe(3);
      const delivered = receiver.received.map(
        (hook) =>
          new StandardWebhook(created.body.secret as string).verify(hook.body, hook.headers) as {
            type: string;
            data: { protection: unknown };
          },
      );
      // Delivered concurrently, so in any order.
      const seen = delivered.map((d) => JSON.stringify([d.type, d.data.protection]));
      expect(seen.sort()).toEqual(
        events.body.results
          .map((e: { type: string; data: { protection: unknown } }) =>
            JSON.stringify([e.type, e.data.protection]),
          )
          .sort(),
      );
    });

    it('every event carries labels: the snapshot’s or backup’s own, and its server’s in data.server', async () => {
      const t = await tenant();
      await dev.prisma.server.update({ where: { id: t.server.id }, data: { labels: { env: 'prod' } } });
      const base = { accountId: t.account.id, serverId: t.server.id, status: 'completed' as const };
      const snapshot = await dev.prisma.snapshot.create({
        data: { ...base, name: 'l', labels: { tier: 'db' } },
      });
      const backup = await dev.prisma.backup.create({
        data: { ...base, name: 'l', store: 'default', labels: { keep: 'yes' } },
      });
      const ended = async (
        kind: 'create_snapshot' | 'create_backup' | 'restore_snapshot' | 'stop_server',
      ) => {
        const action = await dev.prisma.action.create({
          data: {
            kind,
            status: 'running',
            accountId: t.account.id,
            serverId: t.server.id,
            snapshotId: kind.endsWith('snapshot') ? snapshot.id : null,
            backupId: kind === 'create_backup' ? backup.id : null,
          },
        });
        await dev.prisma.action.update({
          where: { id: action.id },
          data: { status: 'succeeded', finishedAt: new Date() },
        });
      };
      await ended('create_snapshot');
      await ended('create_backup');
      await ended('restore_snapshot');
      await ended('stop_server');
      await dev.prisma
        .$executeRaw`SELECT emit_event(${t.account.id}, 'backup_policy.missed', ${JSON.stringify({ server_id: t.server.id, late: true })}::jsonb)`;
      await request(dev.url)
        .post(`/api/v1/backups/${backup.id}/actions/change_protection/`)
        .set(t.auth)
        .send({ delete: true })
        .expect(200);

      const events = await request(dev.url).get('/api/v1/events/').set(t.auth).expect(200);
      const server = { id: t.server.id, name: t.server.name, labels: { env: 'prod' } };
      expect(
        events.body.results.map((e: { type: string; data: { labels?: object; server: object } }) => [
          e.type,
          e.data.labels ?? null,
          e.data.server,
        ]),
      ).toEqual([
        ['snapshot.completed', { tier: 'db' }, server],
        ['backup.completed', { keep: 'yes' }, server],
        ['restore.completed', null, server],
        ['power_action.completed', null, server],
        ['backup_policy.missed', null, server],
        ['backup.protection_changed', { keep: 'yes' }, server],
      ]);
      // A bare subject keeps its members; the server is added beside them.
      expect(events.body.results[4].data).toEqual({ server_id: t.server.id, late: true, server });
    });

    it('the events list is the account’s only, oldest first, paged by cursor', async () => {
      const a = await tenant();
      const b = await tenant();
      for (let i = 0; i < 5; i++) await snapshotEvent(a);
      await snapshotEvent(b);
      const seen: number[] = [];
      let next: string | null = `${dev.url}/api/v1/events/?page_size=2`;
      while (next) {
        const page: request.Response = await request(next).get('').set(a.auth);
        expect(page.status).toBe(200);
        expect(page.body.count).toBe(page.body.results.length);
        seen.push(...page.body.results.map((e: { id: number }) => e.id));
        next = page.body.next;
      }
      const mine = await dev.prisma.event.findMany({
        where: { accountId: a.account.id },
        orderBy: { id: 'asc' },
      });
      expect(seen).toEqual(mine.map((e) => Number(e.id)));
      const after = await request(dev.url).get(`/api/v1/events/?since=${seen[2]}`).set(a.auth);
      expect(after.body.results.map((e: { id: number }) => e.id)).toEqual(seen.slice(3));
      expectProblem(
        await request(dev.url).get('/api/v1/events/?since=-1').set(a.auth),
        400,
        'validation_failed',
      );
      expectProblem(
        await request(dev.url).get('/api/v1/events/?page_size=0').set(a.auth),
        400,
        'validation_failed',
      );
    });

    it('retries with exponential back-off, byte-identical under one webhook-id; a success clears the failing state', async () => {
      const t = await tenant();
      const webhookId = (await create(dev, t, { url: receiver.url })).body.id as number;
      await snapshotEvent(t);
      const clock = new SimulatedClock();
      const sender = newSender(clock, { WEBHOOK_BACKOFF_BASE_MS: '1000' });
      receiver.received.length = 0;
      receiver.answer = () => 500;
      const gaps: number[] = [];
      let last = clock.t;
      for (let attempt = 1; attempt <= 4; attempt++) {
        expect(await sender.sendDue()).toBe(1);
        expect(await sender.sendDue()).toBe(0); // not due again before its back-off
        const d = await dev.prisma.webhookDelivery.findFirstOrThrow({ where: { webhookId } });
        expect(d).toMatchObject({ attempts: attempt, lastStatus: 500, status: 'pending' });
        gaps.push(d.nextAttemptAt.getTime() - clock.t);
        last = d.nextAttemptAt.getTime();
        clock.t = last;
      }
      expect(gaps).toEqual([1000, 2000, 4000, 8000]);
      const failing = (await request(dev.url).get(`/api/v1/webhooks/${webhookId}/`).set(t.auth)).body;
      expect(failing).toMatchObject({
        status: 'enabled',
        last_error: 'HTTP 500',
        failing_since: expect.any(String),
      });
      receiver.answer = () => 204;
      expect(await sender.sendDue()).toBe(1);
      expect(new Set(receiver.received.map((h) => h.headers['webhook-id'])).size).toBe(1);
      expect(new Set(receiver.received.map((h) => h.body)).size).toBe(1);
      expect(receiver.received).toHaveLength(5);
      const healed = (await request(dev.url).get(`/api/v1/webhooks/${webhookId}/`).set(t.auth)).body;
      expect(healed).toMatchObject({ status: 'enabled', last_error: null, failing_since: null });
      expect(await dev.prisma.webhookDelivery.findFirstOrThrow({ where: { webhookId } })).toMatchObject({
        status: 'delivered',
        attempts: 5,
      });
      receiver.answer = () => 200;
    });

    it('an endpoint failing every attempt for 3 days is disabled and says why; its events stop; nothing new is owed', async () => {
      const t = await tenant();
      const webhookId = (await create(dev, t, { url: receiver.url })).body.id as number;
      await snapshotEvent(t);
      const clock = new SimulatedClock();
      const sender = newSender(clock);
      receiver.answer = () => 503;
      let attempts = 0;
      for (; attempts < 100; attempts++) {
        const d = await dev.prisma.webhookDelivery.findFirstOrThrow({ where: { webhookId } });
        if (d.status !== 'pending') break;
        clock.t = Math.max(clock.t, d.nextAttemptAt.getTime());
        expect(await sender.sendDue()).toBe(1);
      }
      const event = await dev.prisma.event.findFirstOrThrow({ where: { accountId: t.account.id } });
      const hours = (clock.t - event.createdAt.getTime()) / 3_600_000;
      expect(hours).toBeGreaterThan(66);
      expect(hours).toBeLessThanOrEqual(72);
      expect(attempts).toBeLessThan(40);
      const shown = (await request(dev.url).get(`/api/v1/webhooks/${webhookId}/`).set(t.auth)).body;
      expect(shown).toMatchObject({
        status: 'disabled',
        disabled_at: expect.any(String),
        disabled_reason: 'every delivery failed for 72 hours; last: HTTP 503',
      });
      expect(await dev.prisma.webhookDelivery.findFirstOrThrow({ where: { webhookId } })).toMatchObject({
        status: 'abandoned',
      });
      await snapshotEvent(t);
      expect(await dev.prisma.webhookDelivery.count({ where: { webhookId } })).toBe(1);
      receiver.answer = () => 200;
    });
  });

  describe('rotating WEBHOOK_SECRET_KEY (operator CLI: webhooks rotate-secret-key)', () => {
    it('re-seals every secret under the new key, reading the previous one; idempotent; a sender with only the new key signs as before', async () => {
      const t = await tenant();
      const created = await create(dev, t, { url: receiver.url });
      const secret = created.body.secret as string;
      const newKey = randomBytes(32).toString('base64');
      const rotation = (env: Record<string, string>) =>
        new WebhookSecretRotation(dev.prisma, testConfig(db, 'cli', env));
      const total = await dev.prisma.webhook.count();

      // Without the previous key nothing opens: every secret reported, none changed.
      const blind = await rotation({ WEBHOOK_SECRET_KEY: newKey }).run();
      expect(blind).toMatchObject({ webhooks: total, resealed: 0 });
      expect(blind.failures).toHaveLength(total);

      const rotated = await rotation({
        WEBHOOK_SECRET_KEY: newKey,
        WEBHOOK_SECRET_KEY_PREVIOUS: TEST_WEBHOOK_SECRET_KEY,
      }).run();
      expect(rotated).toEqual({ webhooks: total, resealed: total, failures: [] });
      const again = await rotation({ WEBHOOK_SECRET_KEY: newKey }).run();
      expect(again).toEqual({ webhooks: total, resealed: 0, failures: [] });

      // A sender holding only the new key delivers, signed with the secret shown at creation.
      await dev.prisma
        .$executeRaw`SELECT emit_event(${t.account.id}, 'backup.pruned', '{"backup_id": 1}'::jsonb)`;
      const clock = new SimulatedClock();
      clock.t = Date.now() + 60_000;
      const sender = newSender(clock, { WEBHOOK_SECRET_KEY: newKey });
      const before = receiver.received.length;
      while ((await sender.sendDue()) > 0);
      const hook = receiver.received.slice(before).find((h) => h.body.includes('"backup.pruned"'));
      expect(hook).toBeDefined();
      expect(() => new StandardWebhook(secret).verify(hook!.body, hook!.headers)).not.toThrow();

      // And back, so the rest of the database is as the other tests left it.
      const back = await rotation({
        WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
        WEBHOOK_SECRET_KEY_PREVIOUS: newKey,
      }).run();
      expect(back.failures).toEqual([]);
    });

    it('WEBHOOK_SECRET_KEY_PREVIOUS needs WEBHOOK_SECRET_KEY, and another key', () => {
      const key = randomBytes(32).toString('base64');
      expect(() =>
        testConfig(db, 'cli', { WEBHOOK_SECRET_KEY: '', WEBHOOK_SECRET_KEY_PREVIOUS: key }),
      ).toThrow(/WEBHOOK_SECRET_KEY_PREVIOUS is set without WEBHOOK_SECRET_KEY/);
      expect(() =>
        testConfig(db, 'cli', { WEBHOOK_SECRET_KEY: key, WEBHOOK_SECRET_KEY_PREVIOUS: key }),
      ).toThrow(/WEBHOOK_SECRET_KEY_PREVIOUS must differ/);
    });
  });
});
