/**
 * "Crashes", with real processes.
 *
 * - The worker is killed with SIGKILL in the middle of copies: a new worker takes them up (BullMQ
 *   stalled-job recovery) or fails them after their attempts; every snapshot ends `completed` (with its
 *   size) or `failed` (with its error), never stuck `in_progress`; its action agrees.
 * - The API is killed with SIGKILL while 20 creates and 5 restores are in flight: nothing is
 *   half-written (every snapshot has exactly one create action and every action its snapshot, no server
 *   is `restoring` without an open restore), every acknowledged operation is in the database, and a
 *   worker finishes every committed one.
 */
import {
  AppProcess,
  createSnapshot,
  eventually,
  FaultLab,
  HttpResult,
  recordFigures,
  restoreSnapshot,
  shown,
  sleep,
} from './support/fault-env';

const FILE = 'test/faults/crashes.fault-spec.ts';

describe('crashes (SIGKILL of real worker and API processes)', () => {
  let lab: FaultLab;
  let api: AppProcess;

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('worker SIGKILL mid-copy: a new worker takes the jobs up; every snapshot ends completed (with size) or failed, never stuck', async () => {
    const started = Date.now();
    // One account's three copies all run at once (its share is not what this test is about).
    const env = { FAKE_DRIVER_DELAY_MS: '4000', WORKER_ACCOUNT_CONCURRENCY: '3' };
    const first = await lab.startWorker(env);
    const t = await lab.tenant();
    const servers = [t.serverId, await lab.addServer(t), await lab.addServer(t, 'stopped')];
    const created: { snapshotId: number; actionId: number }[] = [];
    for (const serverId of servers) {
      const res = await createSnapshot(api, t, serverId, { name: 'crash' });
      expect(shown(res)).toMatchObject({ status: 201 });
      created.push({ snapshotId: res.body.id as number, actionId: res.body.action_id as number });
    }
    // Every copy has started on the first worker…
    await eventually(async () => {
      const running = await lab.prisma.action.count({
        where: { id: { in: created.map((c) => c.actionId) }, status: 'running' },
      });
      return running === created.length;
    }, 15_000);
    await sleep(1000);
    // …and is cut short: the process dies without any chance to clean up.
    expect(await first.kill()).toEqual({ code: null, signal: 'SIGKILL' });
    for (const c of created) {
      expect(await lab.actionStatus(c.actionId)).toBe('running');
    }

    const second = await lab.startWorker(env);
    const outcomes: string[] = [];
    for (const c of created) {
      const action = await lab.finishedAction(c.actionId, 25_000).catch(async (e: unknown) => {
        throw new Error(`stuck after the crash: ${String(e)}\n${await lab.describeAction(c.actionId)}`);
      });
      const snap = await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: c.snapshotId } });
      outcomes.push(`${action.status}/${snap.status}`);
      expect(['succeeded/completed', 'failed/failed']).toContain(`${action.status}/${snap.status}`);
      if (snap.status === 'completed') {
        expect(snap.sizeBytes !== null && snap.sizeBytes > 0n).toBe(true);
        expect(snap.progress).toBe(100);
        expect(snap.completedAt).not.toBeNull();
      } else {
        expect(typeof snap.error).toBe('string');
      }
      const job = await lab.nodeQueue().getJob(`action-${c.actionId}`);
      expect(job ? await job.getState() : 'removed').not.toMatch(/^(active|waiting|delayed)$/);
    }
    // Settled for good: nothing reopens or changes afterwards.
    const settled = await lab.prisma.snapshot.findMany({
      where: { id: { in: created.map((c) => c.snapshotId) } },
    });
    await sleep(1500);
    expect(
      await lab.prisma.snapshot.findMany({ where: { id: { in: created.map((c) => c.snapshotId) } } }),
    ).toEqual(settled);
    await second.kill();

    recordFigures({
      guarantee: 'Worker crash mid-copy',
      file: FILE,
      test: 'worker SIGKILL mid-copy: a new worker takes the jobs up …',
      faults: 1,
      checked: created.length,
      lost: 0,
      ms: Date.now() - started,
      note: `1 SIGKILL with ${created.length} copies in flight; outcomes: ${outcomes.join(', ')}`,
    });
  });

  it('API SIGKILL with 20 creates and 5 restores in flight: nothing half-written, nothing acknowledged lost, every committed action finishes', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const createServers = [t.serverId];
    for (let i = 1; i < 20; i++) createServers.push(await lab.addServer(t));
    // Servers with a completed snapshot to restore from (rows as a finished create leaves them).
    const restoreTargets: { serverId: number; snapshotId: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const serverId = await lab.addServer(t);
      const snap = await lab.prisma.snapshot.create({
        data: {
          accountId: t.accountId,
          serverId,
          name: 'base',
          status: 'completed',
          progress: 100,
          sizeBytes: 4096n,
          consistency: 'stopped',
          completedAt: new Date(),
        },
      });
      restoreTargets.push({ serverId, snapshotId: snap.id });
    }
    const allServers = [...createServers, ...restoreTargets.map((r) => r.serverId)];
    const baseline = await lab.prisma.action.count();

    type Outcome = { kind: 'create' | 'restore'; res?: HttpResult; err?: string };
    const inFlight: Promise<Outcome>[] = [
      ...createServers.map((serverId, i) =>
        createSnapshot(api, t, serverId, { name: `inflight-${i}` }).then(
          (res): Outcome => ({ kind: 'create', res }),
          (e: unknown): Outcome => ({ kind: 'create', err: String(e) }),
        ),
      ),
      ...restoreTargets.map((r) =>
        restoreSnapshot(api, t, r.snapshotId).then(
          (res): Outcome => ({ kind: 'restore', res }),
          (e: unknown): Outcome => ({ kind: 'restore', err: String(e) }),
        ),
      ),
    ];
    // Kill at the first answer, or once 20 of the 25 operations are committed, whichever comes first:
    // the others are somewhere between request and commit, or between commit and answer.
    const firstAnswer = Promise.race(
      inFlight.map((p) => p.then((o) => (o.res ? true : new Promise<boolean>(() => undefined)))),
    );
    await Promise.race([
      firstAnswer,
      eventually(async () => (await lab.prisma.action.count()) >= baseline + 20, 15_000, 2),
    ]);
    expect(await api.kill()).toEqual({ code: null, signal: 'SIGKILL' });
    const outcomes = await Promise.all(inFlight);
    const acknowledged = outcomes.filter((o) => o.res && (o.res.status === 201 || o.res.status === 200));
    const unexpected = outcomes.filter((o) => o.res && o.res.status !== 201 && o.res.status !== 200);
    expect(unexpected.map((o) => shown(o.res!))).toEqual([]);

    // Nothing half-written: snapshots and create actions pair up exactly; restores hold their server.
    // All read in one database snapshot: a statement the killed API had sent may still commit now.
    const [snapshots, actions, servers] = await lab.prisma.$transaction(
      [
        lab.prisma.snapshot.findMany({
          where: { serverId: { in: createServers } },
          include: { actions: true },
        }),
        lab.prisma.action.findMany({ where: { serverId: { in: allServers } } }),
        lab.prisma.server.findMany({ where: { id: { in: allServers } } }),
      ],
      { isolationLevel: 'RepeatableRead' },
    );
    for (const s of snapshots) {
      expect({ snapshot: s.id, actions: s.actions.map((a) => a.kind) }).toEqual({
        snapshot: s.id,
        actions: ['create_snapshot'],
      });
    }
    for (const a of actions) {
      expect(a.snapshotId).not.toBeNull();
      if (a.kind === 'create_snapshot') expect(snapshots.map((s) => s.id)).toContain(a.snapshotId);
    }
    const restoreActions = actions.filter((a) => a.kind === 'restore_snapshot');
    for (const s of servers) {
      const open = restoreActions.filter((a) => a.serverId === s.id && a.status === 'pending');
      expect({ server: s.id, status: s.status, openRestores: open.length }).toEqual({
        server: s.id,
        status: open.length ? 'restoring' : 'running',
        openRestores: open.length,
      });
    }
    // Everything acknowledged before the kill is committed.
    for (const o of acknowledged) {
      const actionId = o.res!.body.action_id as number;
      expect(actions.map((a) => a.id)).toContain(actionId);
    }
    const globalRestoring = await lab.prisma.server.findMany({ where: { status: 'restoring' } });
    for (const s of globalRestoring) {
      expect(
        await lab.prisma.action.count({
          where: { serverId: s.id, kind: 'restore_snapshot', status: { in: ['pending', 'running'] } },
        }),
      ).toBe(1);
    }

    // And every committed action is done by a worker (the API died before it could enqueue some).
    const worker = await lab.startWorker({ FAKE_DRIVER_DELAY_MS: '0' });
    for (const a of actions) {
      const done = await lab.finishedAction(a.id, 30_000).catch(async (e: unknown) => {
        throw new Error(`never finished: ${String(e)}\n${await lab.describeAction(a.id)}\n${worker.tail()}`);
      });
      if (a.kind === 'create_snapshot')
        expect({ id: a.id, status: done.status }).toEqual({ id: a.id, status: 'succeeded' });
    }
    expect(await lab.prisma.server.count({ where: { id: { in: allServers }, status: 'restoring' } })).toBe(0);
    api = await lab.startApi();

    recordFigures({
      guarantee: 'API crash mid-request',
      file: FILE,
      test: 'API SIGKILL with 20 creates and 5 restores in flight …',
      faults: 1,
      checked: outcomes.length,
      lost: 0,
      ms: Date.now() - started,
      note: `${outcomes.length} requests in flight, ${acknowledged.length} acknowledged, ${actions.length} committed (${snapshots.length} snapshots), ${outcomes.length - acknowledged.length} cut off; all committed actions finished`,
    });
  });
});
