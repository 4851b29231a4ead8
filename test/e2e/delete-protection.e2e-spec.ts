/**
 * Delete protection of snapshots and backups on real Postgres and Redis: the `protection` field, its
 * change action (200 with the resource, audited, Idempotency-Key, 404 for other tenants and deleted
 * ones), and every path that deletes refusing a protected one with 400 `protected`: the API's DELETEs,
 * retention, the SQL delete functions called directly, and plain SQL (the CHECK constraint).
 *
 * The node has no worker: delete actions stay pending, which these tests do not need to run.
 */
import request from 'supertest';
import { BackupScheduler } from '../../src/backup-schedule/backup-scheduler';
import { Clock } from '../../src/common/clock';
import { JobQueue } from '../../src/jobs/job-queue';
import { createNode, createTenant } from '../factories';
import { expectProblem } from '../support/problem-assertions';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

type Auth = Record<string, string>;
type Kind = 'snapshots' | 'backups';
const DAY = 86_400_000;

describe('delete protection (real Postgres + Redis)', () => {
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
  const tenant = () => createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
  type Tenant = Awaited<ReturnType<typeof tenant>>;

  /** A completed snapshot or backup of the tenant's server, as a finished job leaves it. */
  async function seeded(t: Tenant, kind: Kind, extra: { kind?: 'automatic'; createdAt?: Date } = {}) {
    const data = {
      accountId: t.account.id,
      serverId: t.server.id,
      name: 'seeded',
      status: 'completed' as const,
    };
    const row =
      kind === 'snapshots'
        ? await api.prisma.snapshot.create({ data: { ...data, sizeBytes: 1024n } })
        : await api.prisma.backup.create({
            data: {
              ...data,
              sizeBytes: 1024n,
              store: 'default',
              kind: extra.kind,
              createdAt: extra.createdAt,
            },
          });
    return row.id;
  }

  const change = (auth: Auth, kind: Kind, id: number, body: unknown, headers: Auth = {}) =>
    http()
      .post(`/api/v1/${kind}/${id}/actions/change_protection/`)
      .set(auth)
      .set(headers)
      .send(body as object);
  const remove = (auth: Auth, kind: Kind, id: number, headers: Auth = {}) =>
    http().delete(`/api/v1/${kind}/${id}/`).set(auth).set(headers);
  const live = async (kind: Kind, id: number) =>
    kind === 'snapshots'
      ? (await api.prisma.snapshot.findUniqueOrThrow({ where: { id } })).deletedAt === null
      : (await api.prisma.backup.findUniqueOrThrow({ where: { id } })).deletedAt === null;

  describe.each<Kind>(['snapshots', 'backups'])('%s', (kind) => {
    const one = kind === 'snapshots' ? 'snapshot' : 'backup';

    it('shows protection {delete: false} by default, in the list and on its own', async () => {
      const t = await tenant();
      const id = await seeded(t, kind);
      const got = await http().get(`/api/v1/${kind}/${id}/`).set(t.auth);
      expect(got.status).toBe(200);
      expect(got.body.protection).toEqual({ delete: false });
      const list = await http().get(`/api/v1/${kind}/`).query({ server_id: t.server.id }).set(t.auth);
      expect(list.body.results.map((r: { protection: unknown }) => r.protection)).toEqual([
        { delete: false },
      ]);
    });

    it('protects: DELETE is 400 `protected` (English and Welsh) and the row stays; unprotected, it deletes', async () => {
      const t = await tenant();
      const id = await seeded(t, kind);
      const protectedRes = await change(t.auth, kind, id, { delete: true });
      expect(protectedRes.status).toBe(200);
      expect(protectedRes.body).toMatchObject({ id, protection: { delete: true } });
      expect((await http().get(`/api/v1/${kind}/${id}/`).set(t.auth)).body.protection).toEqual({
        delete: true,
      });

      const refused = await remove(t.auth, kind, id);
      expectProblem(refused, 400, 'protected');
      expect(refused.body.detail).toBe(
        `Bad Request - ${kind === 'snapshots' ? 'Snapshot' : 'Backup'} ${id} is protected against deletion; change its protection first`,
      );
      const cy = await remove(t.auth, kind, id, { 'Accept-Language': 'cy' });
      expectProblem(cy, 400, 'protected');
      expect(cy.body.detail).toBe(
        `Cais Gwael - Mae ${kind === 'snapshots' ? 'ciplun' : 'copi wrth gefn'} ${id} wedi'i ddiogelu rhag cael ei ddileu; newidiwch ei ddiogelwch yn gyntaf`,
      );
      expect(await live(kind, id)).toBe(true);
      expect(await api.prisma.action.count({ where: { [`${one}Id`]: id } })).toBe(0);

      const lifted = await change(t.auth, kind, id, { delete: false });
      expect(lifted.status).toBe(200);
      expect(lifted.body.protection).toEqual({ delete: false });
      expect((await remove(t.auth, kind, id)).status).toBe(204);
      expect(await live(kind, id)).toBe(false);
    });

    it('audits each change, accepted or refused, with the value asked for', async () => {
      const t = await tenant();
      const id = await seeded(t, kind);
      expect((await change(t.auth, kind, id, { delete: true })).status).toBe(200);
      expect((await change(t.auth, kind, id, { delete: 'yes' })).status).toBe(400);
      const rows = await api.prisma.auditEvent.findMany({
        where: { action: `${one}.change_protection`, targetId: id },
        orderBy: { id: 'asc' },
      });
      expect(rows.map((r) => [r.outcome, r.statusCode, r.targetType, r.detail])).toEqual([
        ['accepted', 200, one, expect.objectContaining({ delete: true })],
        ['refused', 400, one, expect.objectContaining({ delete: 'yes' })],
      ]);
    });

    it('answers a retry with the same Idempotency-Key once; the key with another body is refused', async () => {
      const t = await tenant();
      const id = await seeded(t, kind);
      const key = { 'Idempotency-Key': `protect-${kind}-${id}` };
      const first = await change(t.auth, kind, id, { delete: true }, key);
      expect(first.status).toBe(200);
      await api.prisma.$executeRawUnsafe(`UPDATE ${kind} SET delete_protected = false WHERE id = $1`, id);
      const again = await change(t.auth, kind, id, { delete: true }, key);
      expect(again.status).toBe(200);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toEqual(first.body);
      // The replay did nothing: the protection lifted behind its back stays lifted.
      expect((await http().get(`/api/v1/${kind}/${id}/`).set(t.auth)).body.protection).toEqual({
        delete: false,
      });
      expectProblem(await change(t.auth, kind, id, { delete: false }, key), 400, 'idempotency_key_reused');
    });

    it("is 404 for another tenant's, a deleted one and a bad id; a bad body is 400 validation_failed", async () => {
      const t = await tenant();
      const other = await tenant();
      const id = await seeded(t, kind);
      expectProblem(await change(other.auth, kind, id, { delete: true }), 404, `${one}_not_found`);
      expect((await http().get(`/api/v1/${kind}/${id}/`).set(t.auth)).body.protection).toEqual({
        delete: false,
      });
      expectProblem(await change(t.auth, kind, 2_000_000_000, { delete: true }), 404, `${one}_not_found`);
      expectProblem(await change(t.auth, kind, 0, { delete: true }), 404, `${one}_not_found`);
      for (const body of [{}, { delete: 'true' }, { delete: null }, { delete: 1 }]) {
        const res = await change(t.auth, kind, id, body);
        expectProblem(res, 400, 'validation_failed');
        expect(res.body.errors).toEqual([{ field: 'delete', message: 'delete must be true or false' }]);
      }
      expect((await remove(t.auth, kind, id)).status).toBe(204);
      expectProblem(await change(t.auth, kind, id, { delete: true }), 404, `${one}_not_found`);
    });
  });

  it.each<Kind>(['snapshots', 'backups'])(
    '%s: a protection and a delete sent together never both win, and never fail with 500',
    async (kind) => {
      const t = await tenant();
      for (let round = 0; round < 12; round++) {
        const id = await seeded(t, kind);
        const [protect, del] = await Promise.all([
          change(t.auth, kind, id, { delete: true }),
          remove(t.auth, kind, id),
        ]);
        const isLive = await live(kind, id);
        const outcome = `${protect.status}/${del.status}/${isLive ? 'live' : 'deleted'}`;
        // Protection first: the delete is refused and the row stays. Delete first: the protection finds nothing.
        expect(['200/400/live', '404/204/deleted']).toContain(outcome);
        if (del.status === 400) expect(del.body.code).toBe('protected');
      }
    },
  );

  describe('in SQL, whatever the caller', () => {
    it('snapshot_delete_checked refuses a protected snapshot: nothing deleted, no action, `protected` true', async () => {
      const t = await tenant();
      const id = await seeded(t, 'snapshots');
      await api.prisma.snapshot.update({ where: { id }, data: { deleteProtected: true } });
      const [r] = await api.prisma.$queryRaw<
        { snapshot_id: number; action_id: number | null; protected: boolean }[]
      >`
        SELECT * FROM snapshot_delete_checked(${t.server.id}::int, ${t.account.id}::int, 'stopped', ${id}::int,
          NULL::int, NULL::int)`;
      expect(r).toMatchObject({ snapshot_id: id, action_id: null, protected: true });
      expect(await live('snapshots', id)).toBe(true);
    });

    it('backup_delete_checked and backup_prune_checked refuse a protected backup', async () => {
      const t = await tenant();
      const id = await seeded(t, 'backups', { kind: 'automatic' });
      await api.prisma.backup.update({ where: { id }, data: { deleteProtected: true } });
      const [r] = await api.prisma.$queryRaw<
        { backup_id: number; action_id: number | null; protected: boolean }[]
      >`
        SELECT * FROM backup_delete_checked(${id}::int, NULL::int)`;
      expect(r).toMatchObject({ backup_id: id, action_id: null, protected: true });
      const pruned = await api.prisma.$queryRaw<unknown[]>`
        SELECT * FROM backup_prune_checked(${id}::int, ${t.server.id}::int, now())`;
      expect(pruned).toEqual([]);
      expect(await live('backups', id)).toBe(true);
      expect(await api.prisma.auditEvent.count({ where: { action: 'backup.prune', targetId: id } })).toBe(0);
    });

    it.each(['snapshots', 'backups'])(
      'plain SQL cannot delete a protected row of %s (CHECK constraint)',
      async (table) => {
        const t = await tenant();
        const id = await seeded(t, table as Kind);
        await api.prisma.$executeRawUnsafe(`UPDATE ${table} SET delete_protected = true WHERE id = $1`, id);
        await expect(
          api.prisma.$executeRawUnsafe(`UPDATE ${table} SET deleted_at = now() WHERE id = $1`, id),
        ).rejects.toThrow(/protected_not_deleted/);
        expect(await live(table as Kind, id)).toBe(true);
      },
    );
  });

  it('retention skips a protected automatic backup and never counts it as pruned', async () => {
    const t = await tenant();
    const put = await http()
      .put(`/api/v1/servers/${t.server.id}/backup-policy/`)
      .set(t.auth)
      .send({
        enabled: true,
        schedule: { frequency: 'daily', weekday: null, hour: 1 },
        retention: { daily: 1, weekly: 0, monthly: 0 },
      });
    expect(put.status).toBe(200);
    const now = Date.now();
    const [oldest, middle, newest] = [
      await seeded(t, 'backups', { kind: 'automatic', createdAt: new Date(now - 3 * DAY) }),
      await seeded(t, 'backups', { kind: 'automatic', createdAt: new Date(now - 2 * DAY) }),
      await seeded(t, 'backups', { kind: 'automatic', createdAt: new Date(now - DAY) }),
    ];
    expect((await change(t.auth, 'backups', oldest, { delete: true })).status).toBe(200);

    const scheduler = new BackupScheduler(
      api.prisma,
      api.app.get(JobQueue),
      api.app.get(Clock),
      testConfig(db, 'api'),
    );
    const pruned = await scheduler.applyRetention();
    expect(pruned.filter((id) => [oldest, middle, newest].includes(id))).toEqual([middle]);
    expect([
      await live('backups', oldest),
      await live('backups', middle),
      await live('backups', newest),
    ]).toEqual([true, false, true]);
    // Nothing more to prune on the next pass: the protected one is skipped again, not retried as pruned.
    expect((await scheduler.applyRetention()).filter((id) => id === oldest)).toEqual([]);
  });
});
