import { spawnSync } from 'node:child_process';
import path from 'node:path';
import request from 'supertest';
import { createAccount, createNode, createServer, createTenant, createToken } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';
import { expectProblem } from '../support/problem-assertions';

const PUBLISHED_401 = 'Unauthorized - Invalid or missing authentication token';

describe('foundation: auth, servers, plumbing (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { BODY_LIMIT: '2kb' }));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  describe('401 for every bad token', () => {
    it.each([
      ['missing', undefined],
      ['not bearer', 'Basic dXNlcjpwYXNz'],
      ['malformed', 'Bearer not-a-token'],
      ['unknown', 'Bearer vps_0000000000000000000000000000000000000000'],
    ])('%s', async (_label, header) => {
      const req = request(api.url).get('/api/v1/servers/');
      const res = await (header ? req.set('Authorization', header) : req);
      expectProblem(res, 401, 'unauthorized');
      expect(res.body.detail).toBe(PUBLISHED_401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    });

    it('expired and revoked tokens', async () => {
      const account = await createAccount(api.prisma);
      const expired = await createToken(api.prisma, account.id, { expiresAt: new Date(Date.now() - 1000) });
      const revoked = await createToken(api.prisma, account.id, { revokedAt: new Date() });
      for (const t of [expired.token, revoked.token]) {
        const res = await request(api.url).get('/api/v1/servers/').set('Authorization', `Bearer ${t}`);
        expectProblem(res, 401, 'unauthorized');
      }
    });

    it('Welsh with Accept-Language: cy', async () => {
      const res = await request(api.url).get('/api/v1/servers/').set('Accept-Language', 'cy');
      expect(res.body.detail).toBe('Heb awdurdod - Tocyn dilysu annilys neu ar goll');
    });
  });

  describe('servers', () => {
    it('lists and shows only the own account, other accounts are 404', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const b = await createTenant(api.prisma, nodeId);
      const list = await request(api.url).get('/api/v1/servers/').set(a.auth);
      expect(list.status).toBe(200);
      expect(list.body).toEqual({
        count: 1,
        next: null,
        previous: null,
        results: [
          {
            id: a.server.id,
            name: a.server.name,
            status: 'running',
            created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
            snapshot_quota: { limit: 5, used: 0 },
            current_action: null,
            backup_quota: { limit: 10, used: 0 },
            backup_policy: { enabled: false, next_run_at: null, last_run: null },
            labels: {},
          },
        ],
      });
      for (const p of [`/api/v1/servers/${a.server.id}/`, `/api/v1/servers/${a.server.id}`]) {
        const own = await request(api.url).get(p).set(a.auth);
        expect(own.status).toBe(200);
        expect(own.body.id).toBe(a.server.id);
        expect(JSON.stringify(own.body)).not.toContain(a.server.diskPath);
        expect(JSON.stringify(own.body)).not.toContain(a.server.domain);
      }
      const other = await request(api.url).get(`/api/v1/servers/${b.server.id}/`).set(a.auth);
      expectProblem(other, 404, 'server_not_found');
      expect(other.body.detail).toBe('Not Found - Server does not exist');
    });

    it.each(['abc', '-1', '0', '99999999999999999999', '1.5'])('path id %s is 404', async (id) => {
      const a = await createTenant(api.prisma, nodeId);
      const res = await request(api.url).get(`/api/v1/servers/${id}/`).set(a.auth);
      expectProblem(res, 404, 'server_not_found');
    });

    it('paginates with next/previous', async () => {
      const account = await createAccount(api.prisma);
      const { token } = await createToken(api.prisma, account.id);
      for (let i = 0; i < 3; i++) await createServer(api.prisma, account.id, nodeId);
      const p1 = await request(api.url)
        .get('/api/v1/servers/?page_size=2')
        .set('Authorization', `Bearer ${token}`);
      expect(p1.body.count).toBe(3);
      expect(p1.body.results).toHaveLength(2);
      expect(p1.body.previous).toBeNull();
      expect(p1.body.next).toMatch(/\/api\/v1\/servers\/\?page_size=2&page=2$/);
      const p2 = await request(api.url)
        .get(new URL(p1.body.next).pathname + new URL(p1.body.next).search)
        .set('Authorization', `Bearer ${token}`);
      expect(p2.body.results).toHaveLength(1);
      expect(p2.body.next).toBeNull();
      expect(p2.body.previous).toMatch(/page_size=2$/);
      const bad = await request(api.url)
        .get('/api/v1/servers/?page=0')
        .set('Authorization', `Bearer ${token}`);
      expectProblem(bad, 400, 'validation_failed');
      expect(bad.body.errors).toEqual([{ field: 'page', message: expect.any(String) }]);
      const past = await request(api.url)
        .get('/api/v1/servers/?page=9')
        .set('Authorization', `Bearer ${token}`);
      expectProblem(past, 404, 'page_not_found');
    });
  });

  describe('admin endpoints', () => {
    it('refuse account tokens (403) and work for admin tokens', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const body = { name: `n-${Date.now()}`, driver: 'fake', snapshot_dir: '/srv/snaps' };
      const refused = await request(api.url).post('/api/v1/admin/nodes/').set(a.auth).send(body);
      expectProblem(refused, 403, 'forbidden');
      const admin = await createToken(api.prisma, a.account.id, { scopes: ['admin'] });
      const created = await request(api.url)
        .post('/api/v1/admin/nodes/')
        .set('Authorization', `Bearer ${admin.token}`)
        .send(body);
      expect(created.status).toBe(201);
      const server = await request(api.url)
        .post('/api/v1/admin/servers/')
        .set('Authorization', `Bearer ${admin.token}`)
        .send({
          account_id: a.account.id,
          node_id: created.body.id,
          name: 'db-01',
          domain: 'vm-db-01',
          disk_path: '/var/lib/libvirt/images/x.qcow2',
        });
      expect(server.status).toBe(201);
      // An admin acts across accounts.
      const seen = await request(api.url)
        .get(`/api/v1/servers/${a.server.id}/`)
        .set('Authorization', `Bearer ${admin.token}`);
      expect(seen.status).toBe(200);
    });

    it('validation failures name the fields', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const admin = await createToken(api.prisma, a.account.id, { scopes: ['admin'] });
      const res = await request(api.url)
        .post('/api/v1/admin/nodes/')
        .set('Authorization', `Bearer ${admin.token}`)
        .send({ name: 'Bad Name!', driver: 'xen', snapshot_dir: 'relative', extra: 1 });
      expectProblem(res, 400, 'validation_failed');
      const fields = (res.body.errors as { field: string }[]).map((e) => e.field).sort();
      expect(fields).toEqual(expect.arrayContaining(['driver', 'extra', 'name', 'snapshot_dir']));
    });

    it('a read-only token cannot write', async () => {
      const account = await createAccount(api.prisma);
      const ro = await createToken(api.prisma, account.id, { scopes: ['read'] });
      const res = await request(api.url)
        .post('/api/v1/tokens/')
        .set('Authorization', `Bearer ${ro.token}`)
        .send({ name: 'x' });
      expectProblem(res, 403, 'forbidden');
    });
  });

  describe('tokens', () => {
    it('create shows the secret once, it works, list hides it, revoke takes effect at once', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const created = await request(api.url)
        .post('/api/v1/tokens/')
        .set(a.auth)
        .send({ name: 'ci', scopes: ['read'], expires_in_days: 30 });
      expect(created.status).toBe(201);
      expect(created.body.token).toMatch(/^vps_[0-9A-Za-z]{40}$/);
      expect(created.body.prefix).toBe(created.body.token.slice(0, 12));
      const fresh = { Authorization: `Bearer ${created.body.token}` };
      expect((await request(api.url).get('/api/v1/servers/').set(fresh)).status).toBe(200);
      const list = await request(api.url).get('/api/v1/tokens/').set(a.auth);
      expect(JSON.stringify(list.body)).not.toContain(created.body.token);
      expect(
        list.body.results.find((t: { id: number }) => t.id === created.body.id).last_used_at,
      ).not.toBeNull();
      const stored = await api.prisma.apiToken.findUniqueOrThrow({ where: { id: created.body.id } });
      expect(stored.hash).not.toContain(created.body.token.slice(4));
      expect((await request(api.url).delete(`/api/v1/tokens/${created.body.id}/`).set(a.auth)).status).toBe(
        204,
      );
      expectProblem(await request(api.url).get('/api/v1/servers/').set(fresh), 401, 'unauthorized');
    });

    it("an account token cannot mint an admin token, nor revoke another account's token", async () => {
      const a = await createTenant(api.prisma, nodeId);
      const b = await createTenant(api.prisma, nodeId);
      const res = await request(api.url)
        .post('/api/v1/tokens/')
        .set(a.auth)
        .send({ name: 'x', scopes: ['admin'] });
      expectProblem(res, 400, 'validation_failed');
      const bTok = await api.prisma.apiToken.findFirstOrThrow({ where: { accountId: b.account.id } });
      expectProblem(
        await request(api.url).delete(`/api/v1/tokens/${bTok.id}/`).set(a.auth),
        404,
        'token_not_found',
      );
    });
  });

  describe('plumbing', () => {
    it('unknown route is a 404 problem', async () => {
      const a = await createTenant(api.prisma, nodeId);
      expectProblem(await request(api.url).get('/api/v1/nope/').set(a.auth), 404, 'not_found');
    });

    it('malformed JSON is 400, wrong content type 415, too large 413', async () => {
      const a = await createTenant(api.prisma, nodeId);
      const bad = await request(api.url)
        .post('/api/v1/tokens/')
        .set(a.auth)
        .set('Content-Type', 'application/json')
        .send('{"name": ');
      expectProblem(bad, 400, 'malformed_json');
      const form = await request(api.url)
        .post('/api/v1/tokens/')
        .set(a.auth)
        .set('Content-Type', 'text/plain')
        .send('name=x');
      expectProblem(form, 415, 'unsupported_media_type');
      const big = await request(api.url)
        .post('/api/v1/tokens/')
        .set(a.auth)
        .send({ name: 'x'.repeat(5000) });
      expectProblem(big, 413, 'payload_too_large');
    });

    it('echoes a given X-Request-Id and makes one otherwise', async () => {
      const given = await request(api.url).get('/healthz').set('X-Request-Id', 'abc-123');
      expect(given.headers['x-request-id']).toBe('abc-123');
      const made = await request(api.url).get('/healthz').set('X-Request-Id', 'bad id with spaces');
      expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('health endpoints need no token', async () => {
      expect((await request(api.url).get('/healthz')).body).toEqual({ status: 'ok' });
      const ready = await request(api.url).get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.checks).toEqual({ postgres: 'up', redis: 'up' });
    });
  });

  it('/readyz reports Redis down with a 503 problem', async () => {
    const down = await startApi(testConfig(db, 'api', { REDIS_URL: 'redis://127.0.0.1:1' }));
    try {
      const res = await request(down.url).get('/readyz');
      expectProblem(res, 503, 'service_unavailable');
      expect(res.body.checks).toEqual({ postgres: 'up', redis: 'down' });
      expect(res.body.detail).toContain('Redis');
    } finally {
      await down.close();
    }
  });

  describe('process start-up', () => {
    const main = path.resolve(__dirname, '../../dist/main.js');

    it('a missing or malformed variable stops the process naming it', () => {
      const res = spawnSync(process.execPath, [main, 'api'], {
        env: { PATH: process.env.PATH, DATABASE_URL: 'mysql://x', PORT: 'eighty' },
        encoding: 'utf8',
      });
      expect(res.status).toBe(78);
      expect(res.stderr).toContain('DATABASE_URL');
      expect(res.stderr).toContain('REDIS_URL is required');
      expect(res.stderr).toContain('PORT must be an integer');
    });

    it('the worker role requires WORKER_NODE and BACKUP_MASTER_KEY', () => {
      const res = spawnSync(process.execPath, [main, 'worker'], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url, REDIS_URL: process.env.REDIS_URL },
        encoding: 'utf8',
      });
      expect(res.status).toBe(78);
      expect(res.stderr).toContain('WORKER_NODE is required');
      expect(res.stderr).toContain('BACKUP_MASTER_KEY is required');
    });
  });

  describe('operator CLI', () => {
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.resolve(__dirname, '../../dist/cli/main.js'), ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url },
        encoding: 'utf8',
      });

    it('creates an account, a token, a node and a server, printing only the values', async () => {
      const acct = cli(['account', 'create', 'cli-co']);
      expect(acct.status).toBe(0);
      expect(acct.stdout).toMatch(/^\d+\n$/);
      const token = cli([
        'token',
        'create',
        '--account',
        'cli-co',
        '--scopes',
        'read',
        '--expires-in',
        '30d',
      ]);
      expect(token.stdout).toMatch(/^vps_[0-9A-Za-z]{40}\n$/);
      const node = cli(['node', 'create', 'cli-node', '--driver', 'fake', '--snapshot-dir', '/tmp/s']);
      expect(node.stdout).toMatch(/^\d+\n$/);
      const server = cli([
        'server',
        'create',
        '--account',
        'cli-co',
        '--node',
        'cli-node',
        '--name',
        'web-1',
      ]);
      expect(server.stdout).toMatch(/^\d+\n$/);
      const list = await request(api.url)
        .get('/api/v1/servers/')
        .set('Authorization', `Bearer ${token.stdout.trim()}`);
      expect(list.body.results.map((s: { id: number }) => s.id)).toEqual([Number(server.stdout)]);
      expect(cli(['server', 'list']).stdout).toContain('web-1');
      const prefix = token.stdout.trim().slice(0, 12);
      expect(cli(['token', 'revoke', prefix]).status).toBe(0);
      const after = await request(api.url)
        .get('/api/v1/servers/')
        .set('Authorization', `Bearer ${token.stdout.trim()}`);
      expect(after.status).toBe(401);
    });

    it('bad arguments give a clear message and a non-zero exit', () => {
      const res = cli(['token', 'create', '--account']);
      expect(res.status).not.toBe(0);
      expect(res.stderr).toContain('--account');
      const unknown = cli(['frobnicate']);
      expect(unknown.status).toBe(2);
      expect(unknown.stderr).toContain('unknown command');
      const dup = cli(['node', 'create', 'x', '--driver', 'xen']);
      expect(dup.status).toBe(2);
    });
  });
});
