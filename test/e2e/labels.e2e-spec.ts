/**
 * Labels on snapshots, backups and servers: set on create and by PATCH (the whole map replaced), refused
 * with field errors when they break the rules (no row written), and filtered by `label_selector` on every
 * list — each operator against rows written straight to the database, the count included, a bad selector
 * 400 `invalid_label_selector` (Welsh too), other tenants' resources 404, and the snapshot list's answer
 * cache and ETags following a change of labels. No worker: creates stay pending.
 */
import request from 'supertest';
import { createNode, createTenant } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';
import { expectProblem } from '../support/problem-assertions';
import { Prisma } from '../../src/generated/prisma/client';

type Json = Record<string, unknown>;

describe('labels and label_selector (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const http = () => request(api.url);
  const tenant = () => createTenant(api.prisma, nodeId);
  const LABELLED: Record<string, Prisma.InputJsonValue> = {
    a: { env: 'prod', tier: 'db' },
    b: { env: 'prod', tier: 'cache', temp: '' },
    c: { env: 'dev', tier: 'web' },
    d: {},
  };
  /** Which of LABELLED each selector keeps. */
  const SELECTIONS: [string, string[]][] = [
    ['env=prod', ['a', 'b']],
    ['env==prod', ['a', 'b']],
    ['env!=prod', ['c', 'd']],
    ['tier in (db,cache)', ['a', 'b']],
    ['tier notin (db, cache)', ['c', 'd']],
    ['temp', ['b']],
    ['!temp', ['a', 'c', 'd']],
    ['env=prod,!temp', ['a']],
    ['env = prod , tier in (cache)', ['b']],
    ['', ['a', 'b', 'c', 'd']],
    ['nothing=here', []],
  ];

  async function names(
    path: string,
    auth: Json,
    selector: string,
  ): Promise<{ count: number; names: string[] }> {
    const res = await http()
      .get(path)
      .query({ label_selector: selector, page_size: 100 })
      .set(auth as Record<string, string>);
    expect(res.status).toBe(200);
    const results = res.body.results as { name: string }[];
    return { count: res.body.count as number, names: results.map((r) => r.name).sort() };
  }

  it('creates a snapshot and a backup with labels, and shows them on get and list', async () => {
    const t = await tenant();
    const labels = { env: 'prod', 'example.com/owner': 'db-team', empty: '' };
    const snap = await http()
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .send({ server_id: t.server.id, name: 'labelled', labels });
    expect(snap.status).toBe(201);
    expect(snap.body.labels).toEqual(labels);
    const got = await http().get(`/api/v1/snapshots/${snap.body.id}/`).set(t.auth);
    expect(got.body.labels).toEqual(labels);
    await api.prisma.action.updateMany({ where: { serverId: t.server.id }, data: { status: 'succeeded' } });
    const backup = await http()
      .post('/api/v1/backups/')
      .set(t.auth)
      .send({ server_id: t.server.id, name: 'labelled', labels: { env: 'prod' } });
    expect(backup.status).toBe(201);
    expect(backup.body.labels).toEqual({ env: 'prod' });
    const listed = await http().get('/api/v1/backups/').set(t.auth);
    expect(listed.body.results[0].labels).toEqual({ env: 'prod' });
    // Omitted labels are none.
    const server = await http().get(`/api/v1/servers/${t.server.id}/`).set(t.auth);
    expect(server.body.labels).toEqual({});
  });

  it.each([
    [{ env: 'pr od' }],
    [{ '-bad': 'x' }],
    [{ env: 1 }],
    [['env']],
    [null],
    [Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))],
  ])('refuses labels %j on create and PATCH with field errors, writing nothing', async (labels) => {
    const t = await tenant();
    const created = await http()
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .send({ server_id: t.server.id, name: 'x', labels });
    expectProblem(created, 400, 'validation_failed');
    expect(created.body.errors).toEqual([{ field: 'labels', message: expect.any(String) }]);
    expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(0);
    const patched = await http().patch(`/api/v1/servers/${t.server.id}/`).set(t.auth).send({ labels });
    expectProblem(patched, 400, 'validation_failed');
    expect((await api.prisma.server.findUniqueOrThrow({ where: { id: t.server.id } })).labels).toEqual({});
  });

  it('PATCH replaces the whole map, on snapshots, backups and servers; others’ are 404', async () => {
    const t = await tenant();
    const other = await tenant();
    const snap = await api.prisma.snapshot.create({
      data: { accountId: t.account.id, serverId: t.server.id, name: 's', labels: { old: 'x', keep: 'y' } },
    });
    const backup = await api.prisma.backup.create({
      data: { accountId: t.account.id, serverId: t.server.id, name: 'b', labels: { old: 'x' } },
    });
    for (const path of [
      `/api/v1/snapshots/${snap.id}/`,
      `/api/v1/backups/${backup.id}/`,
      `/api/v1/servers/${t.server.id}/`,
    ]) {
      const res = await http()
        .patch(path)
        .set(t.auth)
        .send({ labels: { keep: 'z', new: '' } });
      expect(res.status).toBe(200);
      expect(res.body.labels).toEqual({ keep: 'z', new: '' });
      expect((await http().get(path).set(t.auth)).body.labels).toEqual({ keep: 'z', new: '' });
      expectProblem(await http().patch(path).set(other.auth).send({ labels: {} }), 404, expect.any(String));
      // A PATCH without labels changes nothing and says so.
      expectProblem(await http().patch(path).set(t.auth).send({}), 400, 'validation_failed');
    }
    expect((await api.prisma.snapshot.findUniqueOrThrow({ where: { id: snap.id } })).labels).toEqual({
      keep: 'z',
      new: '',
    });
    await api.prisma.snapshot.update({ where: { id: snap.id }, data: { deletedAt: new Date() } });
    expectProblem(
      await http().patch(`/api/v1/snapshots/${snap.id}/`).set(t.auth).send({ labels: {} }),
      404,
      'snapshot_not_found',
    );
    const audited = await api.prisma.auditEvent.findMany({
      where: {
        action: { in: ['snapshot.update', 'backup.update', 'server.update'] },
        accountId: t.account.id,
        outcome: 'accepted',
      },
    });
    const set = { labels: { keep: 'z', new: '' } };
    expect(audited.map((e) => [e.action, e.detail]).sort()).toEqual([
      ['backup.update', expect.objectContaining(set)],
      ['server.update', expect.objectContaining(set)],
      ['snapshot.update', expect.objectContaining(set)],
    ]);
  });

  it('filters every list by label_selector, counting only matches', async () => {
    const t = await tenant();
    const other = await tenant();
    for (const [name, labels] of Object.entries(LABELLED)) {
      await api.prisma.snapshot.create({
        data: { accountId: t.account.id, serverId: t.server.id, name, labels },
      });
      await api.prisma.backup.create({
        data: { accountId: t.account.id, serverId: t.server.id, name, labels },
      });
      await api.prisma.server.create({
        data: {
          accountId: t.account.id,
          nodeId,
          name,
          labels,
          domain: `lbl-${t.account.id}-${name}`,
          diskPath: `/var/lib/libvirt/images/lbl-${t.account.id}-${name}.qcow2`,
        },
      });
      // Another tenant's with the same labels never shows.
      await api.prisma.snapshot.create({
        data: { accountId: other.account.id, serverId: other.server.id, name, labels },
      });
    }
    // A deleted one never shows.
    await api.prisma.snapshot.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        name: 'gone',
        labels: { env: 'prod' },
        deletedAt: new Date(),
      },
    });
    for (const [selector, expected] of SELECTIONS) {
      for (const path of ['/api/v1/snapshots/', '/api/v1/backups/']) {
        expect({ path, selector, ...(await names(path, t.auth, selector)) }).toEqual({
          path,
          selector,
          count: expected.length,
          names: expected,
        });
      }
      // The tenant's own server (no labels) is kept by the negations alone.
      const servers = await names('/api/v1/servers/', t.auth, selector);
      const own = t.server.name;
      const keepsOwn = expected.includes('d');
      expect(servers.names).toEqual([...expected, ...(keepsOwn ? [own] : [])].sort());
      expect(servers.count).toBe(servers.names.length);
    }
    // With the other filters.
    const filtered = await http()
      .get('/api/v1/snapshots/')
      .query({ label_selector: 'env=prod', server_id: t.server.id, ordering: 'name' })
      .set(t.auth);
    expect(filtered.body.results.map((r: Json) => r.name)).toEqual(['a', 'b']);
  });

  it.each([['/api/v1/snapshots/'], ['/api/v1/backups/'], ['/api/v1/servers/']])(
    '%s: a bad selector is 400 invalid_label_selector, in Welsh too',
    async (path) => {
      const t = await tenant();
      for (const selector of ['env=prod,', 'tier in (db', '=x', 'a'.repeat(2000), 'env=prod;drop']) {
        const res = await http().get(path).query({ label_selector: selector }).set(t.auth);
        expectProblem(res, 400, 'invalid_label_selector');
        expect(res.body.label_selector).toEqual({ position: expect.any(Number), error: expect.any(String) });
      }
      const twice = await http().get(`${path}?label_selector=a&label_selector=b`).set(t.auth);
      expectProblem(twice, 400, 'invalid_label_selector');
      const cy = await http()
        .get(path)
        .query({ label_selector: 'env in' })
        .set(t.auth)
        .set('Accept-Language', 'cy');
      expectProblem(cy, 400, 'invalid_label_selector');
      expect(cy.body.detail).toMatch(/^Cais Gwael - Mae label_selector yn annilys wrth nod 6/);
    },
  );

  it('the snapshot list’s cached answers and ETags follow a change of labels', async () => {
    const t = await tenant();
    const snap = await api.prisma.snapshot.create({
      data: { accountId: t.account.id, serverId: t.server.id, name: 'cached', labels: { env: 'dev' } },
    });
    const url = '/api/v1/snapshots/?label_selector=env%3Dprod';
    const before = await http().get(url).set(t.auth);
    expect(before.body.count).toBe(0);
    const etag = before.headers.etag as string;
    expect(etag).toBeTruthy();
    expect((await http().get(url).set(t.auth).set('If-None-Match', etag)).status).toBe(304);
    const patched = await http()
      .patch(`/api/v1/snapshots/${snap.id}/`)
      .set(t.auth)
      .send({ labels: { env: 'prod' } });
    expect(patched.status).toBe(200);
    const after = await http().get(url).set(t.auth).set('If-None-Match', etag);
    expect(after.status).toBe(200);
    expect(after.body.results.map((r: Json) => r.name)).toEqual(['cached']);
    // Another selector is another answer.
    const other = await http().get('/api/v1/snapshots/?label_selector=env%3Ddev').set(t.auth);
    expect(other.body.count).toBe(0);
  });
});
