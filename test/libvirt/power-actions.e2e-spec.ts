/**
 * Power actions on a real hypervisor: `stop` destroys a running domain, `start` starts it, and the
 * server's status says so as soon as each action ends (the reconciler is off here: only the action's
 * own outcome can show it); `shutdown` of a domain whose guest does not answer ACPI (the lab's domains
 * boot no operating system) fails `shutdown_timeout` after the grace period and leaves it running.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';
import { describeLibvirt, domainUuid, domState, Lab, virsh } from './support/lab';

jest.setTimeout(180_000);

interface ActionBody {
  id: number;
  kind: string;
  status: string;
  error: { code: string; message: string } | null;
}

describeLibvirt('power actions on libvirt', () => {
  let lab: Lab;
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let auth: Record<string, string>;
  let serverId: number;
  let domain: string;

  beforeAll(async () => {
    lab = await Lab.create('power-actions');
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma, {
      driver: 'libvirt',
      imageRoots: [lab.dir],
      snapshotDir: await lab.mkdir('snapshots'),
    });
    domain = lab.uniqueName('pa');
    const disk = await lab.makeDisk(`${domain}.qcow2`, 16);
    await lab.defineSimpleDomain(domain, disk);
    await virsh('start', '--domain', domain);
    const account = await createAccount(api.prisma);
    auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
    serverId = (
      await createServer(api.prisma, account.id, node.id, {
        domain,
        domainUuid: await domainUuid(domain),
        diskPath: disk,
        status: 'running',
      })
    ).id;
    worker = await startWorker(
      testConfig(db, 'worker', {
        WORKER_NODE: node.name,
        POWER_STATE_INTERVAL_MS: '0',
        STOP_GRACE_SECONDS: '2',
      }),
    );
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await db?.drop();
    await lab?.dispose();
  });

  const statusOf = async (): Promise<string> =>
    (
      (await request(api.url).get(`/api/v1/servers/${serverId}/`).set(auth).expect(200)).body as {
        status: string;
      }
    ).status;

  /** Asks for the power action and waits for it to end. */
  async function power(type: string): Promise<ActionBody> {
    const res = await request(api.url)
      .post(`/api/v1/servers/${serverId}/actions/`)
      .set(auth)
      .send({ type })
      .expect(201);
    const id = (res.body as ActionBody).id;
    let a: ActionBody | undefined;
    await eventually(
      async () => {
        a = (await request(api.url).get(`/api/v1/actions/${id}/`).set(auth).expect(200)).body as ActionBody;
        return a.status === 'succeeded' || a.status === 'failed';
      },
      60_000,
      100,
    );
    return a!;
  }

  it('stop destroys the running domain and start starts it; the status follows each at once', async () => {
    expect(await domState(domain)).toBe('running');
    expect(await power('stop')).toMatchObject({ kind: 'stop_server', status: 'succeeded' });
    expect(await domState(domain)).toBe('shut off');
    expect(await statusOf()).toBe('stopped');
    // Stopping it again changes nothing and succeeds.
    expect(await power('stop')).toMatchObject({ status: 'succeeded' });

    expect(await power('start')).toMatchObject({ kind: 'start_server', status: 'succeeded' });
    expect(await domState(domain)).toBe('running');
    expect(await statusOf()).toBe('running');
  });

  it('shutdown of a guest that ignores ACPI fails shutdown_timeout after the grace period, leaving it running', async () => {
    expect(await domState(domain)).toBe('running');
    const t0 = Date.now();
    const a = await power('shutdown');
    expect(a).toMatchObject({
      kind: 'shutdown_server',
      status: 'failed',
      error: { code: 'shutdown_timeout' },
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_000);
    expect(await domState(domain)).toBe('running');
    expect(await statusOf()).toBe('running');
  });
});
