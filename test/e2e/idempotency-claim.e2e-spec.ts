/**
 * Idempotency-Key claim / complete / release as plain SQL statements (no interactive transaction): the
 * less common paths of the claim (an expired key, a first request that died, a retry waiting for a first
 * request still running) and release with and without a linked action. The common ones (replay, reuse,
 * racing retries, a refused first request) are in hardening.e2e-spec.ts and the idempotency fault tests.
 */
import request from 'supertest';
import { IdempotencyService } from '../../src/idempotency/idempotency.service';
import { createNode, createTenant } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

type Tenant = Awaited<ReturnType<typeof createTenant>>;

describe('Idempotency-Key claim, complete and release (real Postgres)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;
  let idempotency: IdempotencyService;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    nodeId = (await createNode(api.prisma)).id; // no worker: actions stay pending
    idempotency = api.app.get(IdempotencyService);
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const create = (t: Tenant, key: string, name: string) =>
    request(api.url)
      .post('/api/v1/snapshots/')
      .set({ ...t.auth, 'Idempotency-Key': key })
      .send({ server_id: t.server.id, name });
  const keyRow = (t: Tenant, key: string) =>
    api.prisma.idempotencyKey.findUnique({ where: { accountId_key: { accountId: t.account.id, key } } });

  it('an expired key is claimed anew: the new request runs (even with another body), its first action unlinked', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const first = await create(t, 'old-key', 'first');
    expect(first.status).toBe(201);
    const old = (await keyRow(t, 'old-key'))!;
    await api.prisma.idempotencyKey.update({
      where: { id: old.id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    // Frees the server for the second create.
    await api.prisma.action.update({ where: { id: first.body.action_id }, data: { status: 'succeeded' } });
    const second = await create(t, 'old-key', 'second');
    expect(second.status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
    expect(second.body).toMatchObject({ name: 'second' });
    expect(second.body.action_id).not.toBe(first.body.action_id);
    const renewed = (await keyRow(t, 'old-key'))!;
    expect(renewed.id).not.toBe(old.id);
    expect(renewed).toMatchObject({ statusCode: 201, lockedUntil: null, response: second.body });
    expect(renewed.expiresAt.getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    const firstAction = await api.prisma.action.findUniqueOrThrow({ where: { id: first.body.action_id } });
    expect(firstAction.idempotencyKeyId).toBeNull();
  });

  it('a key whose first request died before acting is taken over by the retry, which runs once', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const dead = await idempotency.claim(t.account.id, 'dead-first', 'f'.repeat(64));
    expect(dead.kind).toBe('execute');
    // The real request's fingerprint: make the dead claim look like it came from the same request.
    const probe = await create(t, 'probe', 'same');
    const probeFingerprint = (await keyRow(t, 'probe'))!.fingerprint;
    await api.prisma.action.update({ where: { id: probe.body.action_id }, data: { status: 'succeeded' } });
    await api.prisma.idempotencyKey.updateMany({
      where: { accountId: t.account.id, key: 'dead-first' },
      data: { fingerprint: probeFingerprint, lockedUntil: new Date(Date.now() - 1000) },
    });
    const retry = await create(t, 'dead-first', 'same');
    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    const row = (await keyRow(t, 'dead-first'))!;
    expect(row.id).toBe((dead as { keyId: number }).keyId); // the same key, taken over
    expect(row).toMatchObject({ statusCode: 201, lockedUntil: null, response: retry.body });
    expect(await api.prisma.action.count({ where: { idempotencyKeyId: row.id } })).toBe(1);
  });

  it('a retry waits for a first request still running and replays its answer once stored', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const probe = await create(t, 'probe-2', 'waiting');
    const fingerprint = (await keyRow(t, 'probe-2'))!.fingerprint;
    const running = await idempotency.claim(t.account.id, 'running-first', fingerprint);
    expect(running.kind).toBe('execute');
    const retry = create(t, 'running-first', 'waiting').then((r) => r);
    await new Promise((r) => setTimeout(r, 300)); // the retry polls meanwhile
    const stored = { ...probe.body, description: 'stored by the first request — ünïcödé' };
    await idempotency.complete((running as { keyId: number }).keyId, 201, stored);
    const res = await retry;
    expect(res.status).toBe(201);
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(res.body).toEqual(stored);
  });

  it('release deletes a key without an action, and only unlocks a key whose action committed', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const free = (await idempotency.claim(t.account.id, 'free-me', 'a'.repeat(64))) as { keyId: number };
    await idempotency.release(free.keyId);
    expect(await keyRow(t, 'free-me')).toBeNull();

    const kept = (await idempotency.claim(t.account.id, 'keep-me', 'b'.repeat(64))) as { keyId: number };
    await api.prisma.action.create({
      data: {
        kind: 'create_snapshot',
        accountId: t.account.id,
        serverId: t.server.id,
        idempotencyKeyId: kept.keyId,
        status: 'failed',
      },
    });
    expect((await keyRow(t, 'keep-me'))!.lockedUntil).not.toBeNull();
    await idempotency.release(kept.keyId);
    expect(await keyRow(t, 'keep-me')).toMatchObject({ id: kept.keyId, lockedUntil: null, statusCode: null });

    // A completed key is never deleted by a late release.
    const done = (await idempotency.claim(t.account.id, 'done', 'c'.repeat(64))) as { keyId: number };
    await idempotency.complete(done.keyId, 201, { ok: true });
    await idempotency.release(done.keyId);
    expect(await keyRow(t, 'done')).toMatchObject({ statusCode: 201, response: { ok: true } });
  });
});
