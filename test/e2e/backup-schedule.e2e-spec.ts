/**
 * Automatic backups, retention and verification (src/backup-schedule), driven by a simulated clock
 * through schedulers built on the API's own database and queue, with a worker running the jobs on the
 * fake driver and the real data path (the directory store of BACKUP_DIR).
 */
import { INestApplicationContext } from '@nestjs/common';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { BackupScheduler } from '../../src/backup-schedule/backup-scheduler';
import { Clock } from '../../src/common/clock';
import { JobQueue } from '../../src/jobs/job-queue';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TEST_BACKUP_DIR,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

const DAY = 86_400_000;

/** The time the schedulers see; the test moves it. */
class SimulatedClock extends Clock {
  constructor(private at: Date) {
    super();
  }
  override now(): Date {
    return new Date(this.at);
  }
  set(at: Date): void {
    this.at = at;
  }
}

const dateOf = (d: Date) => d.toISOString().slice(0, 10);
/** Just before the 01:00-05:00 window of `date` closes: after every server's slot in it, not late. */
const inWindow = (date: string) => new Date(`${date}T04:59:59.500Z`);

describe('backup schedule (real Postgres + Redis + worker, fake driver, simulated clock)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let nodeId: number;
  const closing: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    nodeId = node.id;
    worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: node.name }));
  });
  // Each test's schedulers see every enabled policy in the database: leave none behind.
  afterEach(() => api.prisma.backupPolicy.updateMany({ data: { enabled: false } }));
  afterAll(async () => {
    for (const c of closing) await c();
    await worker?.close();
    await api?.close();
    await db?.drop();
  });

  const schedulerOf = (a: TestApi, clock: Clock, env: Record<string, string> = {}) =>
    new BackupScheduler(a.prisma, a.app.get(JobQueue), clock, testConfig(db, 'api', env));

  /** A tenant with one stopped server on the node (or `node`). */
  async function tenant(node = nodeId) {
    const account = await createAccount(api.prisma);
    const auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
    const server = await createServer(api.prisma, account.id, node, { status: 'stopped' });
    return { account, auth, server };
  }

  /** A backup made through the API, completed. */
  async function manualBackup(t: { auth: Record<string, string>; server: { id: number } }, name: string) {
    const created = await request(api.url)
      .post('/api/v1/backups/')
      .set(t.auth)
      .send({ server_id: t.server.id, name });
    expect(created.status).toBe(201);
    await settled(t.server.id);
    return created.body as { id: number };
  }

  /** A tenant whose server has a daily policy (window 01:00-05:00 UTC) that began at `since`. */
  async function serverWithPolicy(
    since: Date,
    policy: { node?: number; retention?: { daily: number; weekly: number; monthly: number } } = {},
  ) {
    const { account, auth, server } = await tenant(policy.node);
    const put = await request(api.url)
      .put(`/api/v1/servers/${server.id}/backup-policy/`)
      .set(auth)
      .send({
        enabled: true,
        schedule: { frequency: 'daily', weekday: null, hour: 1 },
        retention: policy.retention ?? { daily: 7, weekly: 4, monthly: 0 },
      });
    expect(put.status).toBe(200);
    // The API wrote the policy at the real time; the simulation's policy began at its own start.
    await api.prisma.backupPolicy.update({ where: { serverId: server.id }, data: { scheduleSince: since } });
    return { account, auth, server };
  }

  /** Waits until none of the server's backups is being created. */
  const settled = (serverId: number) =>
    eventually(
      async () => (await api.prisma.backup.count({ where: { serverId, status: 'in_progress' } })) === 0,
      60_000,
      20,
    );

  it('400 simulated days of a daily policy (retention 7 daily, 4 weekly, 2 monthly): every slot once, the kept set by hand, manual untouched', async () => {
    const start = new Date('2026-01-01T00:00:00Z'); // a Thursday
    const clock = new SimulatedClock(start);
    const { server, auth, account } = await serverWithPolicy(start, {
      retention: { daily: 7, weekly: 4, monthly: 2 },
    });
    const manual = await manualBackup({ auth, server }, 'keep-me');
    const scheduler = schedulerOf(api, clock);
    const keptDates = async () =>
      (
        await api.prisma.backup.findMany({
          where: { serverId: server.id, kind: 'automatic', deletedAt: null },
          select: { createdAt: true },
        })
      )
        .map((b) => dateOf(b.createdAt))
        .sort();
    let kept15June: string[] = [];
    for (let day = 0; day < 400; day++) {
      const date = dateOf(new Date(start.getTime() + day * DAY));
      clock.set(new Date(`${date}T00:30:00Z`)); // before the window: nothing due
      expect(await scheduler.runDueSlots()).toEqual([]);
      clock.set(inWindow(date));
      const runs = await scheduler.runDueSlots();
      expect(runs).toMatchObject([{ serverId: server.id, outcome: 'started', late: false, missed: 0 }]);
      expect(dateOf(runs[0].slotAt)).toBe(date);
      await settled(server.id);
      await scheduler.applyRetention();
      clock.set(new Date(`${date}T13:00:00Z`)); // later the same day: the slot is not taken again
      expect(await scheduler.runDueSlots()).toEqual([]);
      if (date === '2026-06-15') kept15June = await keptDates();
    }
    // Written out by hand (see src/backup-schedule/retention.spec.ts for the reasoning): the last 7 days,
    // the Sundays of the 4 weeks before, and the last Sunday of each of the 2 months before those.
    expect(kept15June).toEqual([
      '2026-03-29',
      '2026-04-26',
      '2026-05-17',
      '2026-05-24',
      '2026-05-31',
      '2026-06-07',
      '2026-06-09',
      '2026-06-10',
      '2026-06-11',
      '2026-06-12',
      '2026-06-13',
      '2026-06-14',
      '2026-06-15',
    ]);
    expect(await keptDates()).toEqual([
      '2026-11-29',
      '2026-12-27',
      '2027-01-03',
      '2027-01-10',
      '2027-01-17',
      '2027-01-24',
      '2027-01-29',
      '2027-01-30',
      '2027-01-31',
      '2027-02-01',
      '2027-02-02',
      '2027-02-03',
      '2027-02-04',
    ]);
    // Every slot ran once and made one backup, which completed.
    const runs = await api.prisma.backupRun.findMany({ where: { serverId: server.id } });
    expect(runs).toHaveLength(400);
    expect(new Set(runs.map((r) => dateOf(r.slotAt))).size).toBe(400);
    const automatic = await api.prisma.backup.findMany({ where: { serverId: server.id, kind: 'automatic' } });
    expect(automatic).toHaveLength(400);
    expect(automatic.every((b) => b.status === 'completed')).toBe(true);
    // The manual backup was never touched; every prune was audited and announced.
    expect(await api.prisma.backup.findUniqueOrThrow({ where: { id: manual.id } })).toMatchObject({
      status: 'completed',
      deletedAt: null,
    });
    const pruned = 400 - 13;
    expect(await api.prisma.event.count({ where: { accountId: account.id, type: 'backup.pruned' } })).toBe(
      pruned,
    );
    expect(
      await api.prisma.auditEvent.count({ where: { accountId: account.id, action: 'backup.prune' } }),
    ).toBe(pruned);
  }, 600_000);

  it('BACKUP_WINDOW_MINUTES=1: a slot in each 6-minute schedule day, inside its minute, never late', async () => {
    const start = new Date('2026-01-01T00:00:00Z');
    const clock = new SimulatedClock(start);
    const { server } = await serverWithPolicy(start);
    const scheduler = schedulerOf(api, clock, { BACKUP_WINDOW_MINUTES: '1' });
    const taken: Date[] = [];
    // 30 simulated minutes ticked every 10 s: five schedule days, whose windows open at 00:15 of each.
    for (let at = start.getTime(); at < start.getTime() + 30 * 60_000; at += 10_000) {
      clock.set(new Date(at));
      for (const r of await scheduler.runDueSlots()) {
        expect(r).toMatchObject({ serverId: server.id, outcome: 'started', late: false, missed: 0 });
        taken.push(r.slotAt);
        await settled(server.id);
      }
    }
    expect(taken).toHaveLength(5);
    taken.forEach((slot, day) => {
      const windowStart = start.getTime() + day * 6 * 60_000 + 15_000; // schedule hour 1 = 15 s
      expect(slot.getTime()).toBeGreaterThanOrEqual(windowStart);
      expect(slot.getTime()).toBeLessThan(windowStart + 60_000);
    });
    expect(await api.prisma.backup.count({ where: { serverId: server.id, status: 'completed' } })).toBe(5);
  }, 120_000);

  it('two API replicas with two schedulers each, racing every tick: no slot runs twice', async () => {
    const start = new Date('2026-05-01T00:00:00Z');
    const clock = new SimulatedClock(start);
    const other = await startApi(testConfig(db, 'api'));
    closing.push(() => other.close());
    const servers = [];
    for (let i = 0; i < 4; i++) servers.push((await serverWithPolicy(start)).server);
    const schedulers = [api, api, other, other].map((a) => schedulerOf(a, clock));
    const taken: string[] = [];
    for (let round = 0; round < 40; round++) {
      // Ticks every 3 hours of simulated time: some land inside a window, some after it.
      clock.set(new Date(start.getTime() + round * 3 * 3_600_000));
      const runs = (await Promise.all(schedulers.map((s) => s.runDueSlots()))).flat();
      taken.push(...runs.map((r) => `${r.serverId}@${r.slotAt.toISOString()}`));
    }
    // 40 ticks × 3 h = 5 days: every server's 5 slots, each taken by exactly one scheduler.
    expect(new Set(taken).size).toBe(taken.length);
    const rows = await api.prisma.backupRun.findMany({
      where: { serverId: { in: servers.map((s) => s.id) } },
    });
    expect(rows.length).toBe(taken.length);
    for (const s of servers) {
      const mine = rows
        .filter((r) => r.serverId === s.id)
        .map((r) => dateOf(r.slotAt))
        .sort();
      expect(mine).toEqual(['2026-05-01', '2026-05-02', '2026-05-03', '2026-05-04', '2026-05-05']);
    }
    // One automatic backup per run that started one; no create's statement let a second one in.
    const started = rows.filter((r) => r.outcome === 'started');
    expect(await api.prisma.backup.count({ where: { serverId: { in: servers.map((s) => s.id) } } })).toBe(
      started.length,
    );
    for (const s of servers) await settled(s.id);
  }, 120_000);

  it('a server whose previous automatic backup is still running skips the slot and says so', async () => {
    const start = new Date('2026-05-01T00:00:00Z');
    const clock = new SimulatedClock(start);
    // A node without a worker: its backups stay in progress.
    const idle = await createNode(api.prisma);
    const { server, auth } = await serverWithPolicy(start, { node: idle.id });
    const scheduler = schedulerOf(api, clock);
    clock.set(inWindow('2026-05-01'));
    const [first] = await scheduler.runDueSlots();
    expect(first).toMatchObject({ serverId: server.id, outcome: 'started' });
    clock.set(inWindow('2026-05-02'));
    const [second] = await scheduler.runDueSlots();
    expect(second).toMatchObject({
      serverId: server.id,
      outcome: 'skipped_previous_running',
      backupId: null,
    });
    const shown = (await request(api.url).get(`/api/v1/servers/${server.id}/`).set(auth)).body;
    expect(shown.backup_policy.last_run).toMatchObject({ outcome: 'skipped_previous_running', late: false });
    expect(await api.prisma.backup.count({ where: { serverId: server.id } })).toBe(1);
  }, 60_000);

  it('down for three slots, then back: one run, marked late, and backup_policy.missed recorded', async () => {
    const start = new Date('2026-05-01T00:00:00Z');
    const clock = new SimulatedClock(start);
    const { server, auth, account } = await serverWithPolicy(start);
    const scheduler = schedulerOf(api, clock);
    clock.set(inWindow('2026-05-01'));
    expect(await scheduler.runDueSlots()).toMatchObject([{ outcome: 'started', late: false, missed: 0 }]);
    await settled(server.id);
    // Down through the slots of May 2, 3 and 4; back on May 4 after its window (01:00-05:00) closed.
    clock.set(new Date('2026-05-04T07:00:00Z'));
    const [late] = await scheduler.runDueSlots();
    expect(late).toMatchObject({ outcome: 'started', late: true, missed: 2 });
    expect(dateOf(late.slotAt)).toBe('2026-05-04');
    expect(await scheduler.runDueSlots()).toEqual([]); // once
    await settled(server.id);
    const events = await api.prisma.event.findMany({
      where: { accountId: account.id, type: 'backup_policy.missed' },
    });
    expect(events).toHaveLength(1);
    expect(events[0].subject).toMatchObject({ server_id: server.id, late: true, missed_slots: 2 });
    const shown = (await request(api.url).get(`/api/v1/servers/${server.id}/`).set(auth)).body;
    expect(shown.backup_policy).toMatchObject({
      enabled: true,
      last_run: { late: true, outcome: 'completed', backup_id: late.backupId },
    });
    // The API's clock is the real one (December 2026): the next slot it shows is the one due now.
    expect(typeof shown.backup_policy.next_run_at).toBe('string');
  }, 120_000);

  it('verification: new backups verified, a flipped byte in a stored chunk reported by the next weekly one', async () => {
    const start = new Date('2026-05-01T00:00:00Z');
    const clock = new SimulatedClock(start);
    const { account, auth, server } = await tenant();
    const created = { body: await manualBackup({ auth, server }, 'to-verify') };
    const scheduler = schedulerOf(api, clock);
    const verdict = (id: number) =>
      eventually(async () => {
        const open = await api.prisma.action.count({
          where: { backupId: id, kind: 'verify_backup', status: { in: ['pending', 'running'] } },
        });
        return open === 0 ? api.prisma.backup.findUniqueOrThrow({ where: { id } }) : null;
      }, 60_000);

    // New: verified by the next tick.
    expect(await scheduler.startVerifications()).toContain(created.body.id);
    expect((await verdict(created.body.id)).verifiedAt).not.toBeNull();
    expect(await scheduler.startVerifications()).not.toContain(created.body.id); // not again before a week

    // A byte of one stored chunk flips on the storage.
    const chunks = path.join(TEST_BACKUP_DIR, 'accounts', String(account.id), 'chunks');
    const dir = path.join(chunks, readdirSync(chunks)[0]);
    const file = path.join(dir, readdirSync(dir)[0]);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(file, bytes);

    clock.set(new Date(Date.now() + 7 * DAY)); // the weekly re-verification is due
    expect(await scheduler.startVerifications()).toContain(created.body.id);
    const corrupt = await verdict(created.body.id);
    expect(corrupt).toMatchObject({ status: 'corrupt', errorCode: 'backup_corrupt' });
    const shown = (await request(api.url).get(`/api/v1/backups/${created.body.id}/`).set(auth)).body;
    expect(shown).toMatchObject({ status: 'corrupt', error: 'The backup is damaged and cannot be used.' });
    const events = await api.prisma.event.findMany({
      where: { accountId: account.id, type: 'backup.corrupt' },
    });
    expect(events.map((e) => e.subject)).toEqual([expect.objectContaining({ backup_id: created.body.id })]);

    // Never restored, never verified as new again, never the base of an incremental backup.
    const verifyAgain = await request(api.url).post(`/api/v1/backups/${created.body.id}/verify/`).set(auth);
    expect(verifyAgain.status).toBe(400);
    expect(verifyAgain.body).toMatchObject({ code: 'invalid_backup_state', backup_status: 'corrupt' });
    const next = await request(api.url)
      .post('/api/v1/backups/')
      .set(auth)
      .send({ server_id: server.id, name: 'after-corrupt' });
    await settled(server.id);
    expect(await api.prisma.backup.findUniqueOrThrow({ where: { id: next.body.id } })).toMatchObject({
      status: 'completed',
      mode: 'full',
      modeReason: 'no_previous_backup',
    });
  }, 120_000);

  it('POST /backups/{id}/verify/: an action, the open one again, 404 for other tenants, Welsh', async () => {
    const { account, auth, server } = await tenant();
    const created = { body: await manualBackup({ auth, server }, 'v') };
    const first = await request(api.url).post(`/api/v1/backups/${created.body.id}/verify/`).set(auth);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      status: 'success',
      message:
        'Backup is being verified: every stored chunk is read back and checked. This may take a few minutes.',
      backup: { id: created.body.id, name: 'v' },
      action_id: expect.any(Number),
    });
    const done = await eventually(async () => {
      const a = await request(api.url).get(`/api/v1/actions/${first.body.action_id}/`).set(auth);
      return a.body.status === 'succeeded' ? a.body : null;
    }, 60_000);
    expect(done.kind).toBe('verify_backup');
    const shown = (await request(api.url).get(`/api/v1/backups/${created.body.id}/`).set(auth)).body;
    expect(shown.verified_at).toEqual(expect.any(String));

    // On a node without a worker the verification stays open: asking again answers the same action.
    const idle = await createNode(api.prisma);
    const parked = await createServer(api.prisma, account.id, idle.id, { status: 'stopped' });
    const b = await api.prisma.backup.create({
      data: {
        accountId: account.id,
        serverId: parked.id,
        name: 'parked',
        kind: 'manual',
        status: 'completed',
      },
    });
    const open = await request(api.url).post(`/api/v1/backups/${b.id}/verify/`).set(auth);
    const again = await request(api.url)
      .post(`/api/v1/backups/${b.id}/verify/`)
      .set(auth)
      .set('Accept-Language', 'cy');
    expect(again.body.action_id).toBe(open.body.action_id);
    expect(again.body.message).toMatch(/^Mae'r copi wrth gefn yn cael ei wirio/);
    // Verifications hold no server: a create on it is still accepted.
    const create = await request(api.url)
      .post('/api/v1/backups/')
      .set(auth)
      .send({ server_id: parked.id, name: 'x' });
    expect(create.status).toBe(201);

    const stranger = await createAccount(api.prisma);
    const strangerAuth = { Authorization: `Bearer ${(await createToken(api.prisma, stranger.id)).token}` };
    const theirs = await request(api.url)
      .post(`/api/v1/backups/${created.body.id}/verify/`)
      .set(strangerAuth);
    expect(theirs.status).toBe(404);
    expect(theirs.body.code).toBe('backup_not_found');
    const inProgress = await api.prisma.backup.findFirstOrThrow({
      where: { serverId: parked.id, name: 'x' },
    });
    const refused = await request(api.url).post(`/api/v1/backups/${inProgress.id}/verify/`).set(auth);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: 'invalid_backup_state', backup_status: 'in_progress' });
  }, 120_000);
});
