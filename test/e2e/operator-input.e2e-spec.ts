/**
 * Operator input through the admin API and the operator CLI: nothing an operator (or a stolen admin
 * token) sends can make virsh run a program, point a server at a file outside its node's image roots,
 * or name another VM; node and server registration and every 401/403 are in the audit log at a
 * bounded cost; the worker pins a server's domain UUID before its first operation and refuses a UUID
 * that is not its domain's. Real Postgres + Redis, the API built as in production, an in-process
 * worker on a fake node, the CLI from dist/ (npm run build first).
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { AuthRefusalAudit } from '../../src/audit/auth-refusals';
import { FakeHypervisorDriver, fakeDomainUuid } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from '../../src/hypervisor/hypervisor-driver';
import { createAccount, createNode, createTenant, createToken } from '../factories';
import { expectProblem } from '../support/problem-assertions';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

type Auth = Record<string, string>;

const REFUSAL_SOURCES = 5;

describe('operator input (admin API, operator CLI, worker)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let admin: Auth;
  let adminAccountId: number;
  let adminTokenId: number;
  let seq = 0;
  const unique = (p: string) => `${p}-${process.pid}-${++seq}`;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(
      testConfig(db, 'api', { AUDIT_REFUSAL_SOURCES_PER_MINUTE: String(REFUSAL_SOURCES) }),
    );
    const account = await createAccount(api.prisma);
    const t = await createToken(api.prisma, account.id, { scopes: ['admin'] });
    admin = { Authorization: `Bearer ${t.token}` };
    adminAccountId = account.id;
    adminTokenId = t.row.id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const postNode = (body: Record<string, unknown>) =>
    request(api.url).post('/api/v1/admin/nodes/').set(admin).send(body);
  const postServer = (body: Record<string, unknown>) =>
    request(api.url).post('/api/v1/admin/servers/').set(admin).send(body);
  const fields = (res: request.Response) => (res.body.errors as { field: string }[]).map((e) => e.field);

  /** A node through the API (fake driver unless said), with its answer. */
  async function node(extra: Record<string, unknown> = {}) {
    const res = await postNode({
      name: unique('hv'),
      driver: 'fake',
      snapshot_dir: `/srv/${unique('snap')}`,
      ...extra,
    });
    expect(res.status).toBe(201);
    return res.body as { id: number; name: string; image_roots: string[]; snapshot_dir: string };
  }

  describe('nodes', () => {
    it('refuses connection URIs that run a program, name a socket or file, or use another transport', async () => {
      const before = await api.prisma.node.count();
      for (const uri of [
        'qemu+ext:///system?command=/bin/true',
        'qemu+ssh://hv1/system?command=/bin/true',
        'qemu+ssh://hv1/system?netcat=/tmp/evil',
        'qemu+ssh://hv1/system?keyfile=/root/.ssh/id_rsa',
        'qemu:///system?socket=/tmp/evil.sock',
        'qemu+unix:///system?socket=/tmp/evil.sock',
        'qemu+tls://hv1/system?no_verify=1',
        'qemu+tcp://hv1/system',
        'qemu+ssh://-oProxyCommand=id/system',
        'test:///default',
        'qemu:///system ',
      ]) {
        const res = await postNode({
          name: unique('bad-uri'),
          driver: 'libvirt',
          uri,
          snapshot_dir: '/srv/s',
        });
        expectProblem(res, 400, 'validation_failed');
        expect({ uri, fields: fields(res) }).toEqual({ uri, fields: ['uri'] });
      }
      expect(await api.prisma.node.count()).toBe(before);
      for (const uri of [
        'qemu:///system',
        'qemu:///session',
        'qemu+ssh://ops@hv1.example.com:2222/system',
        'qemu+tls://hv1.example.com/system',
      ]) {
        const res = await postNode({ name: unique('uri'), driver: 'libvirt', uri, snapshot_dir: '/srv/s' });
        expect({ uri, status: res.status }).toEqual({ uri, status: 201 });
        expect(res.body.uri).toBe(uri);
      }
    });

    it('image roots and the snapshot directory: absolute, in normal form, apart from each other', async () => {
      const dflt = await node();
      expect(dflt.image_roots).toEqual(['/var/lib/libvirt/images']);
      const two = await node({ image_roots: ['/srv/vm', '/data/images'] });
      expect(two.image_roots).toEqual(['/srv/vm', '/data/images']);
      const before = await api.prisma.node.count();
      const refused: [Record<string, unknown>, string][] = [
        [{ snapshot_dir: '/var/lib/libvirt/images/snapshots' }, 'snapshot_dir'],
        [{ snapshot_dir: '/var/lib' }, 'snapshot_dir'],
        [{ snapshot_dir: '/srv/a/../b' }, 'snapshot_dir'],
        [{ snapshot_dir: '/srv//b' }, 'snapshot_dir'],
        [{ snapshot_dir: '/srv/b/' }, 'snapshot_dir'],
        [{ snapshot_dir: 'relative' }, 'snapshot_dir'],
        [{ snapshot_dir: '/' }, 'snapshot_dir'],
        [{ image_roots: ['/srv/vm/../../etc'] }, 'image_roots'],
        [{ image_roots: ['/'] }, 'image_roots'],
        [{ image_roots: [] }, 'image_roots'],
        [{ image_roots: ['/srv/vm', '/srv/vm'] }, 'image_roots'],
        [{ image_roots: '/srv/vm' }, 'image_roots'],
        [{ image_roots: ['/srv/vm\n'] }, 'image_roots'],
      ];
      for (const [body, field] of refused) {
        const res = await postNode({
          name: unique('layout'),
          driver: 'fake',
          snapshot_dir: '/srv/s',
          ...body,
        });
        expectProblem(res, 400, 'validation_failed');
        expect({ body, fields: fields(res) }).toEqual({ body, fields: expect.arrayContaining([field]) });
      }
      expect(await api.prisma.node.count()).toBe(before);
    });
  });

  describe('servers', () => {
    let hv: { id: number; name: string };
    let account: { id: number };
    beforeAll(async () => {
      hv = await node({ image_roots: ['/srv/vm'] });
      account = await createAccount(api.prisma);
    });
    const server = (extra: Record<string, unknown>) =>
      postServer({
        account_id: account.id,
        node_id: hv.id,
        name: 'web',
        domain: unique('dom'),
        disk_path: `/srv/vm/${unique('disk')}.qcow2`,
        ...extra,
      });

    it('refuses domain names virsh would read as a domain id or a UUID', async () => {
      const before = await api.prisma.server.count();
      for (const domain of [
        '1',
        '12',
        '00042',
        randomUUID(),
        randomUUID().toUpperCase(),
        randomUUID().replace(/-/g, ''),
      ]) {
        const res = await server({ domain });
        expectProblem(res, 400, 'validation_failed');
        expect({ domain, fields: fields(res) }).toEqual({ domain, fields: ['domain'] });
      }
      expect(await api.prisma.server.count()).toBe(before);
      const ok = await server({ domain: unique('12-web') });
      expect(ok.status).toBe(201);
    });

    it("disk paths: in normal form, inside one of the node's image roots, never a restore file", async () => {
      const before = await api.prisma.server.count();
      for (const disk_path of [
        '/srv/vm/../../etc/shadow',
        '/srv/vm/./a.qcow2',
        '/srv/vm//a.qcow2',
        '/srv/vm/sub/',
        '/srv/vm',
        '/srv/vm-other/a.qcow2',
        '/etc/shadow',
        '/var/lib/libvirt/images/a.qcow2',
        '/srv/vm/a.qcow2.restoring',
        '/srv/vm/a.qcow2.replaced',
        'srv/vm/a.qcow2',
        '/srv/vm/a\u0000.qcow2',
      ]) {
        const res = await server({ disk_path });
        expectProblem(res, 400, 'validation_failed');
        expect({ disk_path, fields: fields(res) }).toEqual({ disk_path, fields: ['disk_path'] });
      }
      expect(await api.prisma.server.count()).toBe(before);
      expect((await server({ disk_path: '/srv/vm/tenant-7/web.qcow2' })).status).toBe(201);
    });

    it('a disk belongs to one server of a node (409), also when the registrations race', async () => {
      const disk = `/srv/vm/${unique('shared')}.qcow2`;
      expect((await server({ disk_path: disk })).status).toBe(201);
      const again = await server({ disk_path: disk });
      expectProblem(again, 409, 'conflict');
      expect(again.body.detail).toContain('disk');
      // Another node's disk may have the same path: it is another host.
      const other = await node({ image_roots: ['/srv/vm'] });
      expect((await server({ node_id: other.id, disk_path: disk })).status).toBe(201);
      // Ten registrations of one new disk at once: one wins, the others are 409, none 5xx.
      const raced = `/srv/vm/${unique('raced')}.qcow2`;
      const answers = await Promise.all(Array.from({ length: 10 }, () => server({ disk_path: raced })));
      expect(answers.map((r) => r.status).sort()).toEqual([201, ...Array(9).fill(409)]);
      expect(await api.prisma.server.count({ where: { nodeId: hv.id, diskPath: raced } })).toBe(1);
    });

    it('domain_uuid: optional, stored in canonical form, one server per UUID on a node', async () => {
      const without = await server({});
      expect(without.status).toBe(201);
      expect(without.body.domain_uuid).toBeNull();
      const uuid = randomUUID();
      const withUuid = await server({ domain_uuid: uuid.toUpperCase() });
      expect(withUuid.status).toBe(201);
      expect(withUuid.body.domain_uuid).toBe(uuid);
      expectProblem(await server({ domain_uuid: uuid }), 409, 'conflict');
      for (const domain_uuid of ['12', 'not-a-uuid', uuid.replace(/-/g, ''), 7]) {
        const res = await server({ domain_uuid });
        expectProblem(res, 400, 'validation_failed');
        expect(fields(res)).toEqual(['domain_uuid']);
      }
    });
  });

  describe('audit log', () => {
    const auditRows = (action: string) =>
      api.prisma.auditEvent.findMany({ where: { action }, orderBy: { id: 'asc' } });

    it('records node and server registration, accepted and refused, with what was asked', async () => {
      const name = unique('audited');
      const created = await postNode({
        name,
        driver: 'libvirt',
        uri: 'qemu:///system',
        snapshot_dir: '/srv/audited-snaps',
        image_roots: ['/srv/audited'],
      });
      expect(created.status).toBe(201);
      const refused = await postNode({
        name: unique('audited'),
        driver: 'libvirt',
        uri: 'qemu+ext:///system?command=/bin/true',
        snapshot_dir: '/srv/s',
      });
      expect(refused.status).toBe(400);
      const srv = await postServer({
        account_id: adminAccountId,
        node_id: created.body.id,
        name: 'audited-web',
        domain: 'audited-web',
        disk_path: '/srv/audited/web.qcow2',
      });
      expect(srv.status).toBe(201);
      const badSrv = await postServer({
        account_id: adminAccountId,
        node_id: created.body.id,
        name: 'x',
        domain: '12',
        disk_path: '/etc/shadow',
      });
      expect(badSrv.status).toBe(400);
      await eventually(async () => (await auditRows('server.create')).length >= 2);
      const nodes = (await auditRows('node.create')).slice(-2);
      expect(nodes[0]).toMatchObject({
        accountId: adminAccountId,
        tokenId: adminTokenId,
        actor: `token:${adminTokenId}`,
        targetType: 'node',
        targetId: created.body.id,
        outcome: 'accepted',
        statusCode: 201,
        requestId: created.headers['x-request-id'],
        detail: expect.objectContaining({ name, uri: 'qemu:///system', image_roots: ['/srv/audited'] }),
      });
      expect(nodes[1]).toMatchObject({
        outcome: 'refused',
        statusCode: 400,
        detail: expect.objectContaining({
          code: 'validation_failed',
          uri: 'qemu+ext:///system?command=/bin/true',
        }),
      });
      const servers = (await auditRows('server.create')).slice(-2);
      expect(servers[0]).toMatchObject({
        targetId: srv.body.id,
        outcome: 'accepted',
        detail: expect.objectContaining({ domain: 'audited-web', disk_path: '/srv/audited/web.qcow2' }),
      });
      expect(servers[1]).toMatchObject({
        outcome: 'refused',
        detail: expect.objectContaining({
          domain: '12',
          disk_path: '/etc/shadow',
          code: 'validation_failed',
        }),
      });
      // Readable by admins through the API.
      const listed = await request(api.url)
        .get('/api/v1/admin/audit-events/?action=server.create')
        .set(admin);
      expect(listed.body.results.map((e: { target: unknown }) => e.target)).toContainEqual({
        type: 'server',
        id: srv.body.id,
      });
    });

    /** How many refusals a row stands for: itself, or a summary's repeats. */
    const repeats = (r: { detail: unknown }) => (r.detail as { repeats?: number }).repeats ?? 1;

    it('records 401s and 403s; a flood of them writes a bounded number of rows that still count every refusal', async () => {
      const refusals = api.app.get(AuthRefusalAudit);
      await refusals.flush(); // a fresh window
      const startId = (await api.prisma.auditEvent.aggregate({ _max: { id: true } }))._max.id ?? 0;
      const FLOOD = 400;
      // Bad tokens, in groups at once, with a secret in the query string that must not be recorded.
      for (let i = 0; i < FLOOD; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            request(api.url)
              .get(`/api/v1/servers/?secret=s3cr3t-${i + j}`)
              .set('Authorization', `Bearer vps_${randomUUID().replace(/-/g, '').padEnd(40, 'x')}`)
              .expect(401),
          ),
        );
      }
      // Eight read-only tokens writing: eight sources of 403s, more than the REFUSAL_SOURCES followed.
      const tenant = await createTenant(api.prisma, (await createNode(api.prisma)).id);
      const readers = await Promise.all(
        Array.from({ length: 8 }, () => createToken(api.prisma, tenant.account.id, { scopes: ['read'] })),
      );
      for (const r of readers) {
        for (let k = 0; k < 3; k++) {
          await request(api.url)
            .post('/api/v1/tokens/')
            .set('Authorization', `Bearer ${r.token}`)
            .send({ name: 'x' })
            .expect(403);
        }
      }
      await refusals.flush();
      const rows = await eventually(async () => {
        const all = await api.prisma.auditEvent.findMany({
          where: { id: { gt: startId }, action: { in: ['auth.unauthorized', 'auth.forbidden'] } },
          orderBy: { id: 'asc' },
        });
        return all.reduce((n, r) => n + repeats(r), 0) >= FLOOD + 24 ? all : null;
      });
      const total = (action: string) =>
        rows.filter((r) => r.action === action).reduce((n, r) => n + repeats(r), 0);
      // Every refusal is counted: its own row, or a summary's repeats.
      expect(total('auth.unauthorized')).toBe(FLOOD);
      expect(total('auth.forbidden')).toBe(24);
      // Bounded: at most two rows per followed source, plus one overflow row per status.
      expect(rows.length).toBeLessThanOrEqual(2 * REFUSAL_SOURCES + 2);
      const first401 = rows.find((r) => r.action === 'auth.unauthorized')!;
      expect(first401).toMatchObject({
        accountId: null,
        tokenId: null,
        actor: 'anonymous',
        outcome: 'refused',
        statusCode: 401,
        ip: expect.stringMatching(/127\.0\.0\.1/),
        requestId: expect.any(String),
        detail: { code: 'unauthorized', method: 'GET', path: '/api/v1/servers/' },
      });
      expect(JSON.stringify(rows)).not.toContain('s3cr3t');
      const summary401 = rows.find((r) => r.action === 'auth.unauthorized' && r !== first401)!;
      expect(summary401.detail).toMatchObject({ repeats: FLOOD - 1, window_seconds: 60 });
      const first403 = rows.find((r) => r.action === 'auth.forbidden')!;
      expect(first403).toMatchObject({
        accountId: tenant.account.id,
        tokenId: readers[0].row.id,
        statusCode: 403,
        detail: { code: 'forbidden', method: 'POST', path: '/api/v1/tokens/' },
      });
      expect(rows.some((r) => (r.detail as { sources_over_limit?: boolean }).sources_over_limit)).toBe(true);
    });
  });

  describe('operator CLI', () => {
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.resolve(__dirname, '../../dist/cli/main.js'), ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url },
        encoding: 'utf8',
      });

    it('applies the same rules as the API, and its registrations are audited', async () => {
      const acct = unique('cli-acct');
      expect(cli(['account', 'create', acct]).status).toBe(0);
      const badUri = cli([
        'node',
        'create',
        unique('n'),
        '--driver',
        'libvirt',
        '--uri',
        'qemu+ext:///system?command=/bin/true',
      ]);
      expect(badUri.status).toBe(1);
      expect(badUri.stderr).toMatch(/uri: uri must be one of/);
      const badLayout = cli([
        'node',
        'create',
        unique('n'),
        '--driver',
        'fake',
        '--snapshot-dir',
        '/srv/cli-vm/snaps',
        '--image-root',
        '/srv/cli-vm',
      ]);
      expect(badLayout.status).toBe(1);
      expect(badLayout.stderr).toMatch(/snapshot_dir must be apart/);
      const hv = unique('cli-hv');
      const made = cli([
        'node',
        'create',
        hv,
        '--driver',
        'fake',
        '--snapshot-dir',
        '/srv/cli-snaps',
        '--image-root',
        '/srv/cli-vm',
        '--image-root',
        '/srv/cli-vm2',
      ]);
      expect(made.status).toBe(0);
      const nodeRow = await api.prisma.node.findUniqueOrThrow({ where: { name: hv } });
      expect(nodeRow.imageRoots).toEqual(['/srv/cli-vm', '/srv/cli-vm2']);
      const srv = (more: string[]) => cli(['server', 'create', '--account', acct, '--node', hv, ...more]);
      const digits = srv(['--name', 'w', '--domain', '12', '--disk', '/srv/cli-vm/w.qcow2']);
      expect(digits.status).toBe(1);
      expect(digits.stderr).toMatch(/all digits/);
      const outside = srv(['--name', 'w', '--domain', 'w-1', '--disk', '/srv/cli-vm/../../etc/shadow']);
      expect(outside.status).toBe(1);
      expect(outside.stderr).toMatch(/disk_path/);
      // Without --disk: a disk named after the domain in the node's first image root.
      const ok = srv(['--name', 'w', '--domain', 'w-1']);
      expect(ok.status).toBe(0);
      const uuid = randomUUID();
      const withUuid = srv(['--name', 'w2', '--domain', 'w-2', '--domain-uuid', uuid]);
      expect(withUuid.status).toBe(0);
      const rows = await api.prisma.server.findMany({
        where: { nodeId: nodeRow.id },
        orderBy: { id: 'asc' },
      });
      expect(rows.map((r) => [r.domain, r.domainUuid, r.diskPath])).toEqual([
        ['w-1', null, '/srv/cli-vm/w-1.qcow2'],
        ['w-2', uuid, '/srv/cli-vm/w-2.qcow2'],
      ]);
      const audited = await api.prisma.auditEvent.findMany({
        where: { actor: 'cli', action: { in: ['node.create', 'server.create'] } },
        orderBy: { id: 'asc' },
      });
      expect(audited.map((a) => [a.action, a.targetId])).toEqual([
        ['node.create', nodeRow.id],
        ['server.create', rows[0].id],
        ['server.create', rows[1].id],
      ]);
      expect(audited[2].detail).toMatchObject({ domain: 'w-2', domain_uuid: uuid });
    });
  });

  describe('the worker pins the domain UUID before the first operation', () => {
    let worker: INestApplicationContext;
    let driver: FakeHypervisorDriver;
    let hv: { id: number; name: string };
    let tenant: Awaited<ReturnType<typeof createTenant>>;

    beforeAll(async () => {
      hv = await node();
      worker = await startWorker(testConfig(db, 'worker', { WORKER_NODE: hv.name }));
      driver = worker.get<FakeHypervisorDriver>(HYPERVISOR_DRIVER);
      tenant = await createTenant(api.prisma, hv.id);
    });
    afterAll(async () => {
      await worker?.close();
    });

    const register = (domain: string, domainUuid?: string) =>
      postServer({
        account_id: tenant.account.id,
        node_id: hv.id,
        name: domain,
        domain,
        disk_path: `/var/lib/libvirt/images/${domain}.qcow2`,
        status: 'stopped',
        ...(domainUuid ? { domain_uuid: domainUuid } : {}),
      });
    const snapshot = async (serverId: number) => {
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(tenant.auth)
        .send({ server_id: serverId, name: 'pin' });
      expect(res.status).toBe(201);
      return eventually(async () => {
        const a = await request(api.url).get(`/api/v1/actions/${res.body.action_id}/`).set(tenant.auth);
        return ['succeeded', 'failed'].includes(a.body.status) ? a.body : null;
      });
    };

    it('a server registered without a UUID gets the UUID of the domain with its name', async () => {
      const domain = unique('pin-me');
      driver.defineDomain(domain, { diskPath: `/var/lib/libvirt/images/${domain}.qcow2` });
      const res = await register(domain);
      expect(res.body.domain_uuid).toBeNull();
      expect(await snapshot(res.body.id)).toMatchObject({ status: 'succeeded' });
      const row = await api.prisma.server.findUniqueOrThrow({ where: { id: res.body.id } });
      expect(row.domainUuid).toBe(fakeDomainUuid(domain));
    });

    it('a UUID another server of the node already claims is not pinned a second time', async () => {
      const domain = unique('claimed');
      driver.defineDomain(domain, { diskPath: `/var/lib/libvirt/images/${domain}.qcow2` });
      // Another server was registered (wrongly) with this domain's UUID.
      expect((await register(unique('claimer'), fakeDomainUuid(domain))).status).toBe(201);
      const res = await register(domain);
      expect(await snapshot(res.body.id)).toMatchObject({
        status: 'failed',
        error: { code: 'domain_not_found' },
      });
      const row = await api.prisma.server.findUniqueOrThrow({ where: { id: res.body.id } });
      expect(row.domainUuid).toBeNull();
    });

    it("a UUID that is another domain's is refused: the operation fails, neither domain is touched", async () => {
      const mine = unique('mine');
      const theirs = unique('theirs');
      driver.defineDomain(mine, { diskPath: `/var/lib/libvirt/images/${mine}.qcow2` });
      driver.defineDomain(theirs, { running: true });
      const res = await register(mine, fakeDomainUuid(theirs));
      expect(res.status).toBe(201);
      const calls = driver.callCount('createSnapshot');
      const action = await snapshot(res.body.id);
      expect(action).toMatchObject({ status: 'failed', error: { code: 'domain_not_found' } });
      expect(driver.callCount('createSnapshot')).toBe(calls + 1); // refused by the driver's check
      expect(
        await driver.getPowerState({
          id: 0,
          domain: theirs,
          domainUuid: fakeDomainUuid(theirs),
          diskPath: '',
        }),
      ).toBe('running');
    });
  });
});
