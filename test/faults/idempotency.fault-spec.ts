/**
 * `Idempotency-Key` on create and restore, against two real API processes (replicas
 * behind one load balancer share nothing but Postgres and Redis).
 *
 * - The same key and body replays the first response (same status, same body) without a second
 *   operation, on either replica.
 * - Identical requests racing on both replicas: one operation, every caller gets the same answer.
 * - The same key with another body → 400 `idempotency_key_reused`, nothing written.
 * - Keys are scoped per account: another account's identical key is its own operation.
 */
import {
  AppProcess,
  createSnapshot,
  FaultLab,
  HttpResult,
  recordFigures,
  restoreSnapshot,
  shown,
} from './support/fault-env';
import { createCompletedSnapshot } from '../factories';

const FILE = 'test/faults/idempotency.fault-spec.ts';

describe('Idempotency-Key (two real API processes)', () => {
  let lab: FaultLab;
  let a: AppProcess;
  let b: AppProcess;

  beforeAll(async () => {
    lab = await FaultLab.create();
    [a, b] = await Promise.all([lab.startApi(), lab.startApi()]);
  });
  afterAll(async () => {
    await lab?.close();
  });

  const same = (r: HttpResult) => ({ status: r.status, body: r.body });
  const key = () => `key-${Math.random().toString(36).slice(2)}-${Date.now()}`;

  it('create: the same key and body replays the first response (status and body) on both replicas, one snapshot', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const k = key();
    const first = await createSnapshot(a, t, t.serverId, { name: 'idem', headers: { 'Idempotency-Key': k } });
    expect(shown(first)).toMatchObject({ status: 201 });
    const replays = [
      await createSnapshot(a, t, t.serverId, { name: 'idem', headers: { 'Idempotency-Key': k } }),
      await createSnapshot(b, t, t.serverId, { name: 'idem', headers: { 'Idempotency-Key': k } }),
    ];
    for (const r of replays) expect(same(r)).toEqual(same(first));
    expect(await lab.prisma.snapshot.count({ where: { serverId: t.serverId } })).toBe(1);
    expect(await lab.prisma.action.count({ where: { serverId: t.serverId } })).toBe(1);

    recordFigures({
      guarantee: 'Idempotency-Key replay (create)',
      file: FILE,
      test: 'create: the same key and body replays the first response …',
      faults: 2,
      checked: 3,
      lost: 0,
      ms: Date.now() - started,
      note: '2 replays (one per replica); 1 snapshot, 1 action',
    });
  });

  it('create: identical requests racing on both replicas make one snapshot, and every caller gets the same answer', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const k = key();
    const racers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        createSnapshot(i % 2 ? b : a, t, t.serverId, { name: 'race', headers: { 'Idempotency-Key': k } }),
      ),
    );
    expect(shown(racers[0])).toMatchObject({ status: 201 });
    for (const r of racers) expect(same(r)).toEqual(same(racers[0]));
    expect(await lab.prisma.snapshot.count({ where: { serverId: t.serverId } })).toBe(1);
    expect(await lab.prisma.action.count({ where: { serverId: t.serverId } })).toBe(1);

    recordFigures({
      guarantee: 'Idempotency-Key under a race',
      file: FILE,
      test: 'create: identical requests racing on both replicas make one snapshot …',
      faults: 6,
      checked: 6,
      lost: 0,
      ms: Date.now() - started,
      note: '6 concurrent identical requests over 2 replicas; 1 snapshot',
    });
  });

  it('the same key with another body is 400 idempotency_key_reused and writes nothing', async () => {
    const t = await lab.tenant();
    const other = await lab.addServer(t);
    const k = key();
    const first = await createSnapshot(a, t, t.serverId, { name: 'one', headers: { 'Idempotency-Key': k } });
    expect(shown(first)).toMatchObject({ status: 201 });
    for (const [api, serverId, name] of [
      [a, t.serverId, 'two'],
      [b, other, 'one'],
    ] as const) {
      const reused = await createSnapshot(api, t, serverId, { name, headers: { 'Idempotency-Key': k } });
      expect(shown(reused)).toMatchObject({
        status: 400,
        body: { status: 400, code: 'idempotency_key_reused' },
      });
      expect(reused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect(await lab.prisma.snapshot.count({ where: { serverId: { in: [t.serverId, other] } } })).toBe(1);
  });

  it('restore: replayed with the same answer and one restore action; keys are scoped per account', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const snap = await createCompletedSnapshot(lab.prisma, { accountId: t.accountId, serverId: t.serverId });
    const k = key();
    const first = await restoreSnapshot(a, t, snap.id, { 'Idempotency-Key': k });
    expect(shown(first)).toMatchObject({ status: 200, body: { server: { status: 'restoring' } } });
    const replay = await restoreSnapshot(b, t, snap.id, { 'Idempotency-Key': k });
    expect(same(replay)).toEqual(same(first));
    expect(await lab.prisma.action.count({ where: { serverId: t.serverId, kind: 'restore_snapshot' } })).toBe(
      1,
    );

    // Another account sending the very same key and body gets its own operation, not a replay.
    const u = await lab.tenant();
    const mine = await createSnapshot(a, t, await lab.addServer(t), {
      name: 'scoped',
      headers: { 'Idempotency-Key': k + '-c' },
    });
    const theirs = await createSnapshot(a, u, u.serverId, {
      name: 'scoped',
      headers: { 'Idempotency-Key': k + '-c' },
    });
    expect(shown(mine)).toMatchObject({ status: 201 });
    expect(shown(theirs)).toMatchObject({ status: 201 });
    expect(theirs.body.id).not.toBe(mine.body.id);
    expect(await lab.prisma.snapshot.count({ where: { serverId: u.serverId } })).toBe(1);

    recordFigures({
      guarantee: 'Idempotency-Key replay (restore), per-account scope',
      file: FILE,
      test: 'restore: replayed with the same answer and one restore action; keys are scoped per account',
      faults: 1,
      checked: 4,
      lost: 0,
      ms: Date.now() - started,
    });
  });
});
