/**
 * "Graceful shutdown", with real processes and real signals.
 *
 * - SIGTERM to the worker while a copy runs: the copy finishes and is recorded (`completed`), then the
 *   process exits 0.
 * - SIGTERM to the API while a slow request is in flight (the client is still sending its body): the
 *   request completes with its normal answer, then the process exits 0.
 */
import net from 'node:net';
import {
  AppProcess,
  createSnapshot,
  eventually,
  FaultLab,
  recordFigures,
  shown,
  sleep,
} from './support/fault-env';

const FILE = 'test/faults/graceful-shutdown.fault-spec.ts';

/** Sends a request's head and the first part of its body, and returns a function that sends the rest. */
function slowRequest(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string,
): { finish: () => void; response: Promise<{ status: number; raw: string }> } {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const head =
    `${method} ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n';
  const half = Math.floor(body.length / 2);
  socket.write(head + body.slice(0, half));
  const chunks: Buffer[] = [];
  const response = new Promise<{ status: number; raw: string }>((resolve, reject) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw });
    });
  });
  return { finish: () => socket.write(body.slice(half)), response };
}

describe('graceful shutdown (SIGTERM to real worker and API processes)', () => {
  let lab: FaultLab;
  let api: AppProcess;

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('worker SIGTERM during a copy: the copy completes and is recorded, then the process exits 0', async () => {
    const started = Date.now();
    const worker = await lab.startWorker({ FAKE_DRIVER_DELAY_MS: '3000', SHUTDOWN_TIMEOUT_MS: '20000' });
    const t = await lab.tenant();
    const res = await createSnapshot(api, t, t.serverId, { name: 'sigterm' });
    expect(shown(res)).toMatchObject({ status: 201 });
    const actionId = res.body.action_id as number;
    await eventually(async () => (await lab.actionStatus(actionId)) === 'running', 10_000);
    await sleep(500);
    const signalledAt = Date.now();
    worker.signal('SIGTERM');
    const exit = await worker.waitExit(25_000);
    const exitedAfterMs = Date.now() - signalledAt;
    // Recorded by the stopping worker itself: no other worker runs in this test.
    const action = await lab.prisma.action.findUniqueOrThrow({ where: { id: actionId } });
    const snap = await lab.prisma.snapshot.findUniqueOrThrow({ where: { id: res.body.id as number } });
    expect({ action: action.status, snapshot: snap.status, error: action.errorMessage }).toEqual({
      action: 'succeeded',
      snapshot: 'completed',
      error: null,
    });
    expect(snap.sizeBytes !== null && snap.sizeBytes > 0n).toBe(true);
    expect({ exit, output: exit.code === 0 ? '' : worker.tail() }).toEqual({
      exit: { code: 0, signal: null },
      output: '',
    });

    recordFigures({
      guarantee: 'Worker SIGTERM lets the copy finish',
      file: FILE,
      test: 'worker SIGTERM during a copy …',
      faults: 1,
      checked: 1,
      lost: 0,
      ms: Date.now() - started,
      note: `exited ${exitedAfterMs} ms after SIGTERM`,
    });
  });

  it('worker holding more jobs than hypervisor slots: only WORKER_CONCURRENCY run, the rest wait pending; SIGTERM puts those back, no attempt used', async () => {
    const started = Date.now();
    const env = {
      FAKE_DRIVER_DELAY_MS: '3000',
      SHUTDOWN_TIMEOUT_MS: '20000',
      WORKER_CONCURRENCY: '2',
      WORKER_JOBS_IN_FLIGHT: '8',
      // One account's five jobs: its share must not be what holds them back here (see fair-scheduling).
      WORKER_ACCOUNT_CONCURRENCY: '4',
    };
    const worker = await lab.startWorker(env);
    const t = await lab.tenant();
    const servers = [t.serverId];
    for (let i = 1; i < 5; i++) servers.push(await lab.addServer(t));
    const actions: number[] = [];
    for (const serverId of servers) {
      const res = await createSnapshot(api, t, serverId, { name: 'slots' });
      expect(shown(res)).toMatchObject({ status: 201 });
      actions.push(res.body.action_id as number);
    }
    const statuses = async () => Promise.all(actions.map((id) => lab.actionStatus(id)));
    // All five jobs are held by the worker (active in the queue), two run, three wait pending.
    await eventually(async () => {
      const active = await lab.nodeQueue().getActiveCount();
      const s = await statuses();
      return active === 5 && s.filter((x) => x === 'running').length === 2;
    }, 10_000);
    await sleep(500);
    expect((await statuses()).filter((x) => x === 'pending')).toHaveLength(3);
    worker.signal('SIGTERM');
    const exit = await worker.waitExit(25_000);
    expect({ exit, output: exit.code === 0 ? '' : worker.tail() }).toEqual({
      exit: { code: 0, signal: null },
      output: '',
    });
    // The two that ran were recorded; the three that waited are back in the queue, untouched.
    const after = await statuses();
    expect(after.filter((x) => x === 'succeeded')).toHaveLength(2);
    expect(after.filter((x) => x === 'pending')).toHaveLength(3);
    for (const [i, id] of actions.entries()) {
      if (after[i] !== 'pending') continue;
      const job = await lab.nodeQueue().getJob(`action-${id}`);
      // Waiting in priority order (every job has one: its place in its account's line).
      expect({ state: await job?.getState(), attemptsMade: job?.attemptsMade }).toEqual({
        state: 'prioritized',
        attemptsMade: 0,
      });
    }
    // The next worker runs them.
    const next = await lab.startWorker({ ...env, FAKE_DRIVER_DELAY_MS: '0' });
    for (const id of actions) expect((await lab.finishedAction(id, 20_000)).status).toBe('succeeded');
    next.signal('SIGTERM');
    await next.waitExit(15_000);
    recordFigures({
      guarantee: 'Worker SIGTERM returns jobs waiting for a hypervisor slot to the queue',
      file: FILE,
      test: 'worker holding more jobs than hypervisor slots …',
      faults: 1,
      checked: actions.length,
      lost: 0,
      ms: Date.now() - started,
      note: '2 of 5 ran, 3 back in the queue with no attempt used, then done by the next worker',
    });
  });

  it('API SIGTERM while a slow request is in flight: the request completes (201), then the process exits 0', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const body = JSON.stringify({ server_id: t.serverId, name: 'slow-client', description: 'x'.repeat(900) });
    const slow = slowRequest(api.url!, 'POST', '/api/v1/snapshots/', t.auth, body);
    await sleep(300);
    api.signal('SIGTERM');
    await sleep(700);
    expect(api.alive).toBe(true); // still draining
    slow.finish();
    const answer = await slow.response;
    expect({ status: answer.status, raw: answer.status === 201 ? '' : answer.raw }).toEqual({
      status: 201,
      raw: '',
    });
    const exit = await api.waitExit(15_000);
    const { id, action_id: actionId } = JSON.parse(answer.raw.slice(answer.raw.indexOf('\r\n\r\n') + 4)) as {
      id: number;
      action_id: number;
    };
    // Drained means handled like any other request, dependencies included: the draining API enqueued
    // the job itself (no worker runs in this test, so nothing else could have). One expectation, so a
    // failure shows every broken part at once.
    expect({
      exit,
      snapshotRows: await lab.prisma.snapshot.count({ where: { id } }),
      job: (await lab.nodeQueue().getJob(`action-${actionId}`))?.id ?? 'not enqueued',
      output: exit.code === 0 ? '' : api.tail(),
    }).toEqual({ exit: { code: 0, signal: null }, snapshotRows: 1, job: `action-${actionId}`, output: '' });

    recordFigures({
      guarantee: 'API SIGTERM drains in-flight requests',
      file: FILE,
      test: 'API SIGTERM while a slow request is in flight …',
      faults: 1,
      checked: 1,
      lost: 0,
      ms: Date.now() - started,
    });
  });
});
