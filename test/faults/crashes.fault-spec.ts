/**
 * "Crashes", with real processes.
 *
 * - The worker is killed with SIGKILL in the middle of copies: a new worker takes them up (BullMQ
 *   stalled-job recovery) or fails them after their attempts; every snapshot ends `completed` (with its
 *   size) or `failed` (with its error), never stuck `in_progress`; its action agrees.
 * - The API is killed with SIGKILL while 20 creates and 5 restores are in flight: nothing is
 *   half-written (every snapshot has exactly one create action and every action its snapshot, no server
 *   is `restoring` without an open restore), every acknowledged operation is in the database, and a
 *   worker finishes every committed one — also one whose statement commits after the API died (sent,
 *   still waiting in Postgres at the kill): no read taken after the kill is the last word on what was
 *   committed, so "every action finished" is asked of the database again until it holds.
 */
import pg from 'pg';
import {
  AppProcess,
  createSnapshot,
  eventually,
  FaultLab,
  http,
  HttpResult,
  recordFigures,
  restoreSnapshot,
  shown,
  sleep,
} from './support/fault-env';
import { createCompletedSnapshot } from '../factories';

const FILE = 'test/faults/crashes.fault-spec.ts';

/**
 * Waits until no action of `servers` is open, reading them afresh each time (a statement a killed API
 * had sent may commit after any earlier read, and its action must finish like the others); answers the
 * ids of those actions that `known` did not list.
 */
async function everyActionFinished(
  lab: FaultLab,
  servers: number[],
  known: number[],
  timeoutMs: number,
): Promise<number[]> {
  await eventually(async () => {
    const open = await lab.prisma.action.findMany({
      where: { serverId: { in: servers }, status: { in: ['pending', 'running'] } },
      select: { id: true },
    });
    return open.length === 0;
  }, timeoutMs).catch(async (e: unknown) => {
    const open = await lab.prisma.action.findMany({
      where: { serverId: { in: servers }, status: { in: ['pending', 'running'] } },
      select: { id: true },
    });
    const described = await Promise.all(open.map((a) => lab.describeAction(a.id)));
    throw new Error(`actions still open: ${String(e)}\n${described.join('\n')}`);
  });
  const all = await lab.prisma.action.findMany({
    where: { serverId: { in: servers } },
    select: { id: true },
  });
  return all.map((a) => a.id).filter((id) => !known.includes(id));
}

/**
 * Waits until the action's job has left the queue's `active`, `waiting` and `delayed` states, and
 * answers the state it is in. A worker acknowledges a job after it has written the action's outcome
 * (acknowledging first would lose the outcome with a crash in between), so just after an action ends
 * its job may still be `active` for a few round trips; one that stays there is stuck.
 */
async function settledJobState(lab: FaultLab, actionId: number): Promise<string> {
  return eventually(async () => {
    const job = await lab.nodeQueue().getJob(`action-${actionId}`);
    const state = job ? await job.getState() : 'removed';
    return /^(active|waiting|delayed)$/.test(state) ? null : state;
  }, 10_000).catch(async (e: unknown) => {
    throw new Error(`job not settled: ${String(e)}\n${await lab.describeAction(actionId)}`);
  });
}

describe('crashes (SIGKILL of real worker and API processes)', () => {
  let lab: FaultLab;
  let api: AppProcess;
  /** Workers a test started: none outlives its test (a failed one would run the next test's jobs). */
  const workers: AppProcess[] = [];
  const startWorker = async (env: Record<string, string>) => {
    const w = await lab.startWorker(env);
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.kill()));
    if (!api.alive) api = await lab.startApi();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('worker SIGKILL mid-copy: a new worker takes the jobs up; every snapshot ends completed (with size) or failed, never stuck', async () => {
    const started = Date.now();
    // One account's three copies all run at once (its share is not what this test is about).
    const env = { FAKE_DRIVER_DELAY_MS: '4000', WORKER_ACCOUNT_CONCURRENCY: '3' };
    const first = await startWorker(env);
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

    const second = await startWorker(env);
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
      await settledJobState(lab, c.actionId);
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

  it('worker SIGKILL mid power action: a new worker takes it up; it ends succeeded once and the server shows what was asked', async () => {
    const started = Date.now();
    const t = await lab.tenant({ serverStatus: 'stopped' });
    // The first worker's start hangs long enough to be killed inside it.
    const first = await startWorker({ FAKE_DRIVER_FAIL: 'start:delay:20000' });
    const res = await http(`${api.url}/api/v1/servers/${t.serverId}/actions/`, {
      headers: t.auth,
      body: { type: 'start' },
    });
    expect(shown(res)).toMatchObject({ status: 201, body: { kind: 'start_server' } });
    const actionId = res.body.id as number;
    await eventually(async () => (await lab.actionStatus(actionId)) === 'running', 15_000);
    await sleep(500);
    expect(await first.kill()).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await lab.actionStatus(actionId)).toBe('running');

    const second = await startWorker({});
    const action = await lab.finishedAction(actionId, 25_000).catch(async (e: unknown) => {
      throw new Error(`stuck after the crash: ${String(e)}\n${await lab.describeAction(actionId)}`);
    });
    expect(action.status).toBe('succeeded');
    await settledJobState(lab, actionId);
    const server = await lab.prisma.server.findUniqueOrThrow({ where: { id: t.serverId } });
    expect(server.status).toBe('running');
    // One action, run to its end once: nothing reopened or duplicated afterwards.
    await sleep(1500);
    const actions = await lab.prisma.action.findMany({ where: { serverId: t.serverId } });
    expect(actions.map((a) => [a.id, a.kind, a.status])).toEqual([[actionId, 'start_server', 'succeeded']]);
    await second.kill();

    recordFigures({
      guarantee: 'Worker crash mid power action',
      file: FILE,
      test: 'worker SIGKILL mid power action: a new worker takes it up …',
      faults: 1,
      checked: 1,
      lost: 0,
      ms: Date.now() - started,
      note: `1 SIGKILL during a start; taken up after ${action.attempts} attempt(s), succeeded, server running`,
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
      const snap = await createCompletedSnapshot(lab.prisma, { accountId: t.accountId, serverId });
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
    const worker = await startWorker({ FAKE_DRIVER_DELAY_MS: '0' });
    for (const a of actions) {
      const done = await lab.finishedAction(a.id, 30_000).catch(async (e: unknown) => {
        throw new Error(`never finished: ${String(e)}\n${await lab.describeAction(a.id)}\n${worker.tail()}`);
      });
      if (a.kind === 'create_snapshot')
        expect({ id: a.id, status: done.status }).toEqual({ id: a.id, status: 'succeeded' });
    }
    // And any the killed API's statements committed after the read above (never acknowledged).
    const late = await everyActionFinished(
      lab,
      allServers,
      actions.map((a) => a.id),
      30_000,
    );
    const acknowledgedIds = acknowledged.map((o) => o.res!.body.action_id as number);
    expect(late.filter((id) => acknowledgedIds.includes(id))).toEqual([]);
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
      note: `${outcomes.length} requests in flight, ${acknowledged.length} acknowledged, ${actions.length} committed (${snapshots.length} snapshots) by the read after the kill, ${late.length} more after it, ${outcomes.length - acknowledged.length} cut off; all committed actions finished`,
    });
  });

  it('API SIGKILL while its restore statement waits in Postgres: the restore commits after the API died, a worker runs it, and the server is released', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const snap = await createCompletedSnapshot(lab.prisma, { accountId: t.accountId, serverId: t.serverId });
    // Another transaction holds the server's row, so the API's restore statement is sent and waits.
    const holder = new pg.Client({ connectionString: lab.db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM servers WHERE id = $1 FOR UPDATE', [t.serverId]);
      const request = restoreSnapshot(api, t, snap.id).then(
        (res) => ({ res, err: undefined }),
        (e: unknown) => ({ res: undefined, err: String(e) }),
      );
      // The API's statement waits for the holder's lock: sent, not committed.
      await eventually(async () => {
        const { rows } = await holder.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND pg_backend_pid() = ANY (pg_blocking_pids(pid))`,
        );
        return rows[0].n === 1;
      }, 15_000);
      expect(await api.kill()).toEqual({ code: null, signal: 'SIGKILL' });
      expect((await request).res).toBeUndefined();
      // A read now: nothing committed, the server free.
      expect(await lab.prisma.action.count({ where: { serverId: t.serverId } })).toBe(0);
      expect((await lab.prisma.server.findUniqueOrThrow({ where: { id: t.serverId } })).status).toBe(
        'running',
      );
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    // The dead API's statement goes on and commits: the server is restoring, its restore pending.
    const restore = await eventually(
      () => lab.prisma.action.findFirst({ where: { serverId: t.serverId, kind: 'restore_snapshot' } }),
      15_000,
    );
    expect(restore.status).toBe('pending');
    expect((await lab.prisma.server.findUniqueOrThrow({ where: { id: t.serverId } })).status).toBe(
      'restoring',
    );
    // No job was enqueued for it (the API died first): the worker's dispatcher does, and it finishes.
    const worker = await startWorker({ FAKE_DRIVER_DELAY_MS: '0' });
    expect(await everyActionFinished(lab, [t.serverId], [], 30_000)).toEqual([restore.id]);
    // The snapshot is a row without data on the fake host, so the restore fails cleanly: what matters is
    // that it ended and released its server, whose disk it never touched.
    const done = await lab.prisma.action.findUniqueOrThrow({ where: { id: restore.id } });
    expect(['succeeded', 'failed']).toContain(done.status);
    expect((await lab.prisma.server.findUniqueOrThrow({ where: { id: t.serverId } })).status).toBe('running');
    await settledJobState(lab, restore.id);
    await worker.kill();
    api = await lab.startApi();

    recordFigures({
      guarantee: 'API crash mid-request',
      file: FILE,
      test: 'API SIGKILL while its restore statement waits in Postgres …',
      faults: 1,
      checked: 1,
      lost: 0,
      ms: Date.now() - started,
      note: 'the restore committed after the API died; the dispatcher enqueued it and a worker finished it',
    });
  });
});
