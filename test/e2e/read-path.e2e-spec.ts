import request from 'supertest';
import { createNode, createServer, createTenant, createToken } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

/**
 * The polled read path: the one-round-trip list answers as before, ETag / If-None-Match gives
 * 304 to pollers, and token revocation takes effect at once on every API replica (tokens are not
 * cached: every request looks its token up in Postgres, which all replicas share).
 */
describe('read path: list, conditional GET, revocation across replicas (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let replica: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    replica = await startApi(testConfig(db, 'api'));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await replica?.close();
    await api?.close();
    await db?.drop();
  });

  async function snapshotsOf(accountId: number, serverId: number, n: number) {
    for (let i = 0; i < n; i++) {
      await api.prisma.snapshot.create({
        data: {
          accountId,
          serverId,
          name: `s-${i}`,
          status: 'completed',
          progress: 100,
          sizeBytes: BigInt(1 + i) * 1048576n,
          consistency: 'stopped',
          createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
          completedAt: new Date(Date.UTC(2026, 0, 1, 0, 1, i)),
        },
      });
    }
  }

  it('list: count, order, paging links, server names, soft-deleted rows left out, 404s kept', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const other = await createServer(api.prisma, t.account.id, nodeId, { name: 'second' });
    await snapshotsOf(t.account.id, t.server.id, 3);
    await snapshotsOf(t.account.id, other.id, 2);
    const gone = await api.prisma.snapshot.findFirstOrThrow({ where: { serverId: other.id, name: 's-1' } });
    await api.prisma.snapshot.update({ where: { id: gone.id }, data: { deletedAt: new Date() } });

    const all = await request(api.url).get('/api/v1/snapshots/?page_size=2').set(t.auth);
    expect(all.status).toBe(200);
    expect(all.body.count).toBe(4);
    expect(all.body.results.map((s: { name: string }) => s.name)).toEqual(['s-2', 's-1']);
    expect(all.body.results[0].server).toEqual({ id: t.server.id, name: t.server.name });
    expect(all.body.next).toMatch(/[?&]page=2/);
    expect(all.body.previous).toBeNull();
    const last = await request(api.url)
      .get('/api/v1/snapshots/?page_size=2&page=2&ordering=-created_at')
      .set(t.auth);
    expect(last.body.results.map((s: { name: string }) => s.name)).toEqual(['s-0', 's-0']);
    expect(last.body.previous).not.toBeNull();

    const byName = await request(api.url)
      .get(`/api/v1/snapshots?server_id=${other.id}&ordering=name`)
      .set(t.auth);
    expect(byName.body.count).toBe(1);
    expect(byName.body.results[0]).toMatchObject({ name: 's-0', server: { id: other.id, name: 'second' } });

    const empty = await createServer(api.prisma, t.account.id, nodeId);
    const none = await request(api.url).get(`/api/v1/snapshots/?server_id=${empty.id}`).set(t.auth);
    expect(none.body).toEqual({ count: 0, next: null, previous: null, results: [] });

    const stranger = await createTenant(api.prisma, nodeId);
    const hidden = await request(api.url)
      .get(`/api/v1/snapshots/?server_id=${t.server.id}`)
      .set(stranger.auth);
    expect(hidden.status).toBe(404);
    expect(hidden.body.code).toBe('server_not_found');
    const past = await request(api.url).get('/api/v1/snapshots/?page=9').set(t.auth);
    expect(past.status).toBe(404);
    expect(past.body.code).toBe('page_not_found');
  });

  it('ETag on list and detail (with and without the slash); If-None-Match → 304 until the data changes', async () => {
    const t = await createTenant(api.prisma, nodeId);
    await snapshotsOf(t.account.id, t.server.id, 2);
    const list = `/api/v1/snapshots/?server_id=${t.server.id}`;
    const first = await request(api.url).get(list).set(t.auth);
    expect(first.status).toBe(200);
    const tag = first.headers.etag;
    expect(tag).toMatch(/^W\/"[0-9a-f]+-[A-Za-z0-9_-]{27}"$/);
    const noSlash = await request(api.url).get(`/api/v1/snapshots?server_id=${t.server.id}`).set(t.auth);
    expect(noSlash.headers.etag).toBe(tag);

    const same = await request(api.url).get(list).set(t.auth).set('If-None-Match', tag);
    expect(same.status).toBe(304);
    expect(same.text).toBe('');
    expect(same.headers.etag).toBe(tag);
    expect(same.headers['x-request-id']).toBeTruthy();
    // Any replica computes the same tag from the same data.
    const elsewhere = await request(replica.url).get(list).set(t.auth).set('If-None-Match', `"x", ${tag}`);
    expect(elsewhere.status).toBe(304);

    const id = first.body.results[0].id as number;
    const detail = await request(api.url).get(`/api/v1/snapshots/${id}/`).set(t.auth);
    expect(detail.headers.etag).toMatch(/^W\//);
    expect(
      (
        await request(api.url)
          .get(`/api/v1/snapshots/${id}`)
          .set(t.auth)
          .set('If-None-Match', detail.headers.etag)
      ).status,
    ).toBe(304);

    await api.prisma.snapshot.update({ where: { id }, data: { progress: 99 } });
    const changed = await request(api.url).get(list).set(t.auth).set('If-None-Match', tag);
    expect(changed.status).toBe(200);
    expect(changed.headers.etag).not.toBe(tag);
    expect(changed.body.results.find((s: { id: number }) => s.id === id).progress).toBe(99);

    // Errors carry no ETag and are never 304.
    const missing = await request(api.url)
      .get('/api/v1/snapshots/999999/')
      .set(t.auth)
      .set('If-None-Match', '*');
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(missing.headers.etag).toBeUndefined();
    // Other resources are untouched.
    expect((await request(api.url).get('/api/v1/servers/').set(t.auth)).headers.etag).toBeUndefined();
  });

  it('a revoked token is refused at once by every replica (no token cache to go stale)', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const mine = await request(api.url)
      .post('/api/v1/tokens/')
      .set(t.auth)
      .send({ name: 'poller', scopes: ['read'] });
    expect(mine.status).toBe(201);
    const poller = { Authorization: `Bearer ${mine.body.token}` };
    for (const base of [api.url, replica.url]) {
      for (let i = 0; i < 3; i++)
        expect((await request(base).get('/api/v1/snapshots/').set(poller)).status).toBe(200);
    }
    const revoked = await request(api.url).delete(`/api/v1/tokens/${mine.body.id}/`).set(t.auth);
    expect([200, 204]).toContain(revoked.status);
    // The very next request, on the replica that revoked it and on the other one.
    expect((await request(replica.url).get('/api/v1/snapshots/').set(poller)).status).toBe(401);
    expect((await request(api.url).get('/api/v1/snapshots/').set(poller)).status).toBe(401);
  });

  it('an action answers as published: its server, its snapshot or null, its error; 404 to other accounts', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const other = await createTenant(api.prisma, nodeId);
    const admin = await createToken(api.prisma, other.account.id, { scopes: ['admin'] });
    const snap = await api.prisma.snapshot.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        name: 'nightly',
        status: 'failed',
        consistency: 'stopped',
      },
    });
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
    const failed = await api.prisma.action.create({
      data: {
        kind: 'create_snapshot',
        status: 'failed',
        progress: 40,
        accountId: t.account.id,
        serverId: t.server.id,
        snapshotId: snap.id,
        errorCode: 'disk_full',
        errorMessage: 'The node ran out of space.',
        createdAt: at,
        startedAt: at,
        finishedAt: at,
      },
    });
    const pending = await api.prisma.action.create({
      data: { kind: 'restore_snapshot', accountId: t.account.id, serverId: t.server.id, createdAt: at },
    });
    const time = '2026-01-02T03:04:05Z';
    const a = await request(api.url).get(`/api/v1/actions/${failed.id}/`).set(t.auth);
    expect(a.status).toBe(200);
    expect(a.text).toBe(
      JSON.stringify({
        id: failed.id,
        kind: 'create_snapshot',
        status: 'failed',
        progress: 40,
        server: { id: t.server.id, name: t.server.name },
        snapshot: { id: snap.id, name: 'nightly' },
        backup: null,
        error: { code: 'disk_full', message: 'The node ran out of space.' },
        created_at: time,
        started_at: time,
        finished_at: time,
        // Undo of a restore (test/e2e/restore-undo): null on every other kind.
        safety_copy: null,
        undo_of: null,
      }),
    );
    const p = await request(api.url).get(`/api/v1/actions/${pending.id}/`).set(t.auth);
    expect(p.body).toMatchObject({
      status: 'pending',
      progress: 0,
      snapshot: null,
      backup: null,
      error: null,
      started_at: null,
    });
    const elsewhere = await request(api.url).get(`/api/v1/actions/${failed.id}/`).set(other.auth);
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body.code).toBe('action_not_found');
    const asAdmin = await request(api.url)
      .get(`/api/v1/actions/${failed.id}/`)
      .set({ Authorization: `Bearer ${admin.token}` });
    expect(asAdmin.text).toBe(a.text);
  });

  it('servers: quota used, the action holding the server before a background delete, pages, accounts', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const second = await createServer(api.prisma, t.account.id, nodeId, { name: 'second' });
    const other = await createTenant(api.prisma, nodeId);
    const admin = await createToken(api.prisma, other.account.id, { scopes: ['admin'] });
    for (const [status, deletedAt] of [
      ['completed', null],
      ['in_progress', null],
      ['failed', null],
      ['completed', new Date()],
    ] as const) {
      await api.prisma.snapshot.create({
        data: {
          accountId: t.account.id,
          serverId: t.server.id,
          name: `s-${status}`,
          status,
          consistency: 'stopped',
          deletedAt,
        },
      });
    }
    const action = (
      kind: 'create_snapshot' | 'delete_snapshot',
      status: 'pending' | 'running' | 'succeeded',
    ) => api.prisma.action.create({ data: { kind, status, accountId: t.account.id, serverId: t.server.id } });
    await action('create_snapshot', 'succeeded');
    await action('delete_snapshot', 'running');
    const holding = await action('create_snapshot', 'pending');
    const one = await request(api.url).get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
    expect(one.body).toMatchObject({
      id: t.server.id,
      snapshot_quota: { limit: 5, used: 2 },
      current_action: { id: holding.id, kind: 'create_snapshot', status: 'pending', progress: 0 },
    });
    const list = await request(api.url).get('/api/v1/servers/?page_size=1&page=2').set(t.auth);
    expect(list.body).toMatchObject({ count: 2, results: [{ id: second.id, current_action: null }] });
    expect(list.body.results[0].snapshot_quota.used).toBe(0);
    expect((await request(api.url).get('/api/v1/servers/?page=3&page_size=1').set(t.auth)).status).toBe(404);
    expect((await request(api.url).get(`/api/v1/servers/${t.server.id}/`).set(other.auth)).status).toBe(404);
    const adminAuth = { Authorization: `Bearer ${admin.token}` };
    expect((await request(api.url).get(`/api/v1/servers/${t.server.id}/`).set(adminAuth)).body).toEqual(
      one.body,
    );
    const mine = await request(api.url).get('/api/v1/servers/').set(other.auth);
    expect(mine.body.count).toBe(1);
  });
});
