/**
 * True power state on a real hypervisor: a worker serving a libvirt node shows what `virsh` does to a
 * domain behind the API's back — stopped, started, suspended, undefined — within its interval.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
  createTestDatabase,
} from '../support/test-env';
import { describeLibvirt, domainUuid, Lab, virsh } from './support/lab';

jest.setTimeout(180_000);

const INTERVAL_MS = 1_000;

describeLibvirt('power state reconciliation on libvirt', () => {
  let lab: Lab;
  let db: TestDatabase;
  let api: TestApi;
  let worker: INestApplicationContext;
  let auth: Record<string, string>;
  let serverId: number;
  let domain: string;

  beforeAll(async () => {
    lab = await Lab.create('power');
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma, {
      driver: 'libvirt',
      imageRoots: [lab.dir],
      snapshotDir: await lab.mkdir('snapshots'),
    });
    domain = lab.uniqueName('pwr');
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
        status: 'stopped', // wrong on purpose: the first pass corrects it
      })
    ).id;
    worker = await startWorker(
      testConfig(db, 'worker', { WORKER_NODE: node.name, POWER_STATE_INTERVAL_MS: String(INTERVAL_MS) }),
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

  /** Waits until the API shows `want`; how long that took (ms). */
  async function shows(want: string): Promise<number> {
    const t0 = Date.now();
    await eventually(async () => (await statusOf()) === want, 15_000, 50);
    return Date.now() - t0;
  }

  it('virsh destroy, start, suspend and undefine show within the interval', async () => {
    await shows('running');
    const seen: Record<string, number> = {};
    await virsh('destroy', '--domain', domain);
    seen.stopped = await shows('stopped');
    await virsh('start', '--domain', domain);
    seen.running = await shows('running');
    await virsh('suspend', '--domain', domain);
    seen.paused = await shows('paused');
    await virsh('destroy', '--domain', domain);
    await virsh('undefine', '--domain', domain);
    seen.missing = await shows('missing');
    // Two intervals at most (a pass may have looked just before the change) plus two virsh calls.
    for (const [state, ms] of Object.entries(seen))
      expect({ state, ms: Math.min(ms, 2 * INTERVAL_MS + 1_500) }).toEqual({ state, ms });
  });
});
