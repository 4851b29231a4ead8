import http from 'node:http';
import { createNode, createServer, createTenant, createToken } from '../factories';
import { ListingCompactor } from '../../src/read-path/listing-compactor';
import { ServersService } from '../../src/servers/servers.service';
import { TokenStore } from '../../src/auth/token-store';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

/**
 * The hot read path (src/read-path): batched token and rate-limit checks, identical polls answered
 * once, answers cached against the account's listing version. Every answer must be the pipeline's
 * answer, byte for byte, and must reflect every change committed before its request was sent.
 */
interface Answer {
  status: number;
  raw: [string, string][];
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function get(base: string, path: string, headers: Record<string, string>): Promise<Answer> {
  return send('GET', base, path, headers);
}

function send(
  method: string,
  base: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const sent: Record<string, string> = payload
      ? { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(payload)) }
      : {};
    // One Host for every instance: the paging links are built from it.
    const req = http.request(
      `${base}${path}`,
      { method, headers: { Host: 'api.test', ...sent, ...headers }, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw: [string, string][] = [];
          for (let i = 0; i < res.rawHeaders.length; i += 2)
            raw.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
          resolve({ status: res.statusCode ?? 0, raw, headers: res.headers, body: Buffer.concat(chunks) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const many = (n: number, f: (i: number) => Promise<Answer>) =>
  Promise.all(Array.from({ length: n }, (_, i) => f(i)));

/** Header names in order and values, without what differs per request or per moment. */
function shape(a: Answer): [string, string][] {
  return a.raw
    .filter(([n]) => !['date', 'connection', 'keep-alive'].includes(n.toLowerCase()))
    .map(([n, v]) => [
      n,
      ['x-request-id', 'ratelimit-remaining', 'ratelimit-reset'].includes(n.toLowerCase()) ? '*' : v,
    ]);
}

async function notNearMinuteEnd(): Promise<void> {
  const s = new Date().getSeconds();
  if (s >= 54) await new Promise((r) => setTimeout(r, (61 - s) * 1000));
}

describe('hot read path: batched checks, shared and cached answers (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let replica: TestApi;
  let plain: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    replica = await startApi(testConfig(db, 'api'));
    plain = await startApi(testConfig(db, 'api', { HOT_READ_PATH: 'false' }));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    agent.destroy();
    await plain?.close();
    await replica?.close();
    await api?.close();
    await db?.drop();
  });

  async function addSnapshot(accountId: number, serverId: number, name: string) {
    return api.prisma.snapshot.create({
      data: {
        accountId,
        serverId,
        name,
        status: 'completed',
        progress: 100,
        sizeBytes: 5n * 1048576n,
        consistency: 'stopped',
      },
    });
  }

  it('answers byte for byte as the Nest pipeline does: leader, shared, cached, 304', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const other = await createServer(api.prisma, t.account.id, nodeId, { name: 'second' });
    for (let i = 0; i < 4; i++) await addSnapshot(t.account.id, i % 2 ? other.id : t.server.id, `s-${i}`);
    const first = await api.prisma.snapshot.findFirstOrThrow({ where: { accountId: t.account.id } });
    const paths = [
      `/api/v1/snapshots/?server_id=${t.server.id}`,
      `/api/v1/snapshots?server_id=${other.id}`,
      '/api/v1/snapshots/',
      '/api/v1/snapshots/?page_size=2&page=2&ordering=name',
      `/api/v1/snapshots/${first.id}/`,
      `/api/v1/snapshots/${first.id}`,
    ];
    const auth = { Authorization: `Bearer ${t.token}`, 'Accept-Language': 'cy' };
    for (const path of paths) {
      const expected = await get(plain.url, path, { ...auth, 'X-Request-Id': 'plain-1' });
      expect(expected.status).toBe(200);
      // Twelve at once (one leads, the others share its answer), then twelve more (from the cache).
      for (let round = 0; round < 2; round++) {
        const answers = await many(12, (i) =>
          get(api.url, path, { ...auth, 'X-Request-Id': `hot-${round}-${i}` }),
        );
        answers.forEach((a, i) => {
          expect(a.status).toBe(200);
          expect(shape(a)).toEqual(shape(expected));
          expect(a.body.equals(expected.body)).toBe(true);
          expect(a.headers['x-request-id']).toBe(`hot-${round}-${i}`);
        });
      }
      const conditional = await many(6, () =>
        get(api.url, path, { ...auth, 'If-None-Match': String(expected.headers.etag) }),
      );
      const plain304 = await get(plain.url, path, {
        ...auth,
        'If-None-Match': String(expected.headers.etag),
      });
      expect(plain304.status).toBe(304);
      for (const c of conditional) {
        expect(c.status).toBe(304);
        expect(c.body.length).toBe(0);
        expect(shape(c)).toEqual(shape(plain304));
      }
    }
    // Without a request id of the caller's, each answer gets its own.
    const ids = (await many(8, () => get(api.url, paths[0], auth))).map((a) => a.headers['x-request-id']);
    expect(new Set(ids).size).toBe(8);
  });

  it('every authenticated GET is batched and shared, byte for byte; only listing reads are cached', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const action = await api.prisma.action.create({
      data: { kind: 'create_snapshot', status: 'running', accountId: t.account.id, serverId: t.server.id },
    });
    const paths = [
      '/api/v1/servers/',
      `/api/v1/servers/${t.server.id}/`,
      `/api/v1/actions/${action.id}/`,
      '/api/v1/tokens/',
    ];
    const handled = jest.spyOn(api.app.get(ServersService), 'get');
    const auth = { Authorization: `Bearer ${t.token}` };
    for (const path of paths) {
      const expected = await get(plain.url, path, { ...auth, 'X-Request-Id': 'plain-1' });
      expect(expected.status).toBe(200);
      expect(expected.headers.etag).toBeUndefined();
      const answers = await many(12, (i) => get(api.url, path, { ...auth, 'X-Request-Id': `hot-${i}` }));
      answers.forEach((a, i) => {
        expect(shape(a)).toEqual(shape(expected));
        expect(a.body.equals(expected.body)).toBe(true);
        expect(a.headers['x-request-id']).toBe(`hot-${i}`);
      });
    }
    // Twelve identical requests that arrived together: the pipeline answered fewer than twelve.
    expect(handled.mock.calls.length).toBeLessThan(12);
    handled.mockRestore();
    // Not a listing read: never answered from the cache. A change the listing version does not
    // follow (an action's progress) shows at once.
    await api.prisma.action.update({ where: { id: action.id }, data: { progress: 42 } });
    const after = await get(api.url, `/api/v1/actions/${action.id}/`, auth);
    expect((JSON.parse(after.body.toString()) as { progress: number }).progress).toBe(42);
  });

  it('a request the front hands on is looked up once; the pipeline alone batches its lookups too', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const admin = await createToken(api.prisma, t.account.id, { scopes: ['admin'] });
    for (const [instance, n] of [
      [api, 1],
      [plain, 8],
    ] as const) {
      const store = instance.app.get(TokenStore);
      const lookup = store.findByHashes.bind(store);
      // Slow lookups (as under load): requests arriving meanwhile wait and form one batch.
      const lookups = jest
        .spyOn(store, 'findByHashes')
        .mockImplementation((hashes, v) =>
          new Promise((r) => setTimeout(r, 100)).then(() => lookup(hashes, v)),
        );
      // An admin token: the front looks it up, then hands the request to the pipeline.
      const answers = await many(n, () =>
        get(instance.url, '/api/v1/snapshots/', { Authorization: `Bearer ${admin.token}` }),
      );
      for (const a of answers) expect(a.status).toBe(200);
      // One request, one lookup; eight at once through the guards alone: at most three batches.
      if (n === 1) expect(lookups).toHaveBeenCalledTimes(1);
      else expect(lookups.mock.calls.length).toBeLessThanOrEqual(3);
      lookups.mockRestore();
    }
  });

  it('every answer shows every change committed before its request was sent, on every replica', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const auth = { Authorization: `Bearer ${t.token}` };
    const path = '/api/v1/snapshots/?page_size=100';
    let polling = true;
    // Pollers keep groups in flight and the cache warm while the changes land.
    const pollers = Promise.all(
      [api, replica].flatMap((a) =>
        Array.from({ length: 6 }, async () => {
          while (polling) await get(a.url, path, auth);
        }),
      ),
    );
    try {
      for (let i = 0; i < 15; i++) {
        const snap = await addSnapshot(t.account.id, t.server.id, `n-${i}`);
        for (const a of [api, replica]) {
          const seen = await many(6, () => get(a.url, path, auth));
          for (const s of seen) {
            const body = JSON.parse(s.body.toString()) as { count: number; results: { id: number }[] };
            expect(body.count).toBe(i + 1);
            expect(body.results.map((r) => r.id)).toContain(snap.id);
          }
        }
        // An update the worker would make, written straight to the database.
        await api.prisma.$executeRaw`UPDATE snapshots SET description = ${`d-${i}`} WHERE id = ${snap.id}`;
        const detail = await many(4, () => get(replica.url, `/api/v1/snapshots/${snap.id}/`, auth));
        for (const d of detail) expect(JSON.parse(d.body.toString()).description).toBe(`d-${i}`);
      }
      // A server renamed by hand shows its new name in the list at once.
      await api.prisma.$executeRaw`UPDATE servers SET name = 'renamed' WHERE id = ${t.server.id}`;
      for (const s of await many(6, () => get(api.url, path, auth))) {
        expect(JSON.parse(s.body.toString()).results[0].server.name).toBe('renamed');
      }
      // Deleted rows leave at once, soft or hard.
      await api.prisma
        .$executeRaw`UPDATE snapshots SET deleted_at = now() WHERE account_id = ${t.account.id} AND name = 'n-0'`;
      await api.prisma.$executeRaw`DELETE FROM snapshots WHERE account_id = ${t.account.id} AND name = 'n-1'`;
      for (const s of await many(6, () => get(replica.url, path, auth))) {
        expect(JSON.parse(s.body.toString()).count).toBe(13);
      }
    } finally {
      polling = false;
      await pollers;
    }
  });

  it('a revoked token is refused at once by every replica, though its answers were cached', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const auth = { Authorization: `Bearer ${t.token}` };
    for (const a of [api, replica]) {
      for (const r of await many(8, () => get(a.url, '/api/v1/snapshots/', auth))) expect(r.status).toBe(200);
    }
    await api.prisma.$executeRaw`UPDATE api_tokens SET revoked_at = now() WHERE account_id = ${t.account.id}`;
    for (const a of [api, replica]) {
      for (const r of await many(8, () => get(a.url, '/api/v1/snapshots/', auth))) {
        expect(r.status).toBe(401);
        expect(JSON.parse(r.body.toString()).code).toBe('unauthorized');
      }
    }
  });

  it('rate limits count every request exactly, batched or not', async () => {
    const limited = await startApi(testConfig(db, 'api', { RATE_LIMIT_PER_MINUTE: '10' }));
    try {
      const t = await createTenant(api.prisma, nodeId);
      const auth = { Authorization: `Bearer ${t.token}` };
      await notNearMinuteEnd();
      const answers = await many(16, () => get(limited.url, '/api/v1/snapshots/', auth));
      const ok = answers.filter((a) => a.status === 200);
      const refused = answers.filter((a) => a.status === 429);
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(6);
      expect(ok.map((a) => Number(a.headers['ratelimit-remaining'])).sort((x, y) => x - y)).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
      for (const r of refused) {
        expect(JSON.parse(r.body.toString()).code).toBe('rate_limited');
        expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
        expect(r.headers['ratelimit-remaining']).toBe('0');
      }
    } finally {
      await limited.close();
    }
  });

  it('snapshot writes: token lookups and write rate limits batched, answers as the pipeline gives them', async () => {
    const limited = await startApi(testConfig(db, 'api', { RATE_LIMIT_WRITES_PER_MINUTE: '10' }));
    try {
      const t = await createTenant(api.prisma, nodeId);
      const servers = [t.server];
      for (let i = 1; i < 16; i++) servers.push(await createServer(api.prisma, t.account.id, nodeId));
      const auth = { Authorization: `Bearer ${t.token}` };
      await notNearMinuteEnd();
      const answers = await Promise.all(
        servers.map((s, i) =>
          send('POST', limited.url, '/api/v1/snapshots/', auth, { server_id: s.id, name: `w${i}` }),
        ),
      );
      const ok = answers.filter((a) => a.status === 201);
      const refused = answers.filter((a) => a.status === 429);
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(6);
      expect(ok.map((a) => Number(a.headers['ratelimit-remaining'])).sort((x, y) => x - y)).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
      for (const r of refused) expect(JSON.parse(r.body.toString()).code).toBe('rate_limited');
      expect(await api.prisma.snapshot.count({ where: { accountId: t.account.id } })).toBe(10);
      // Their audit rows, written together, one per accepted create, each with its own request id.
      const audited = await api.prisma.auditEvent.findMany({
        where: { accountId: t.account.id, action: 'snapshot.create', outcome: 'accepted' },
      });
      expect(audited).toHaveLength(10);
      expect(new Set(audited.map((a) => a.requestId)).size).toBe(10);
      expect(new Set(audited.map((a) => a.targetId)).size).toBe(10);

      // The same create on an instance without the path: the same status, headers (in order) and body.
      const u = await createTenant(api.prisma, nodeId);
      const other = await createServer(api.prisma, u.account.id, nodeId);
      const uAuth = { Authorization: `Bearer ${u.token}`, 'Accept-Language': 'de' };
      const mine = await send('POST', api.url, '/api/v1/snapshots/', uAuth, {
        server_id: u.server.id,
        name: 'x',
      });
      const theirs = await send('POST', plain.url, '/api/v1/snapshots/', uAuth, {
        server_id: other.id,
        name: 'x',
      });
      expect(mine.status).toBe(201);
      expect(shape(mine)).toEqual(shape(theirs));
      const strip = (a: Answer) => {
        const b = JSON.parse(a.body.toString()) as Record<string, unknown>;
        return {
          ...b,
          id: 0,
          action_id: 0,
          created_at: '',
          server: { ...(b.server as object), id: 0, name: '' },
        };
      };
      expect(strip(mine)).toEqual(strip(theirs));

      // Tokens the front does not serve: the pipeline answers (401, 403, validation) as always.
      const bad = await send(
        'POST',
        api.url,
        '/api/v1/snapshots/',
        { Authorization: `Bearer vps_${'x'.repeat(40)}` },
        {
          server_id: u.server.id,
          name: 'y',
        },
      );
      expect(bad.status).toBe(401);
      const reader = await createToken(api.prisma, u.account.id, { scopes: ['read'] });
      const ro = await send(
        'POST',
        api.url,
        '/api/v1/snapshots/',
        { Authorization: `Bearer ${reader.token}` },
        {
          server_id: u.server.id,
          name: 'y',
        },
      );
      expect(ro.status).toBe(403);
      expect(JSON.parse(ro.body.toString()).code).toBe('forbidden');
      const invalid = await send('POST', api.url, '/api/v1/snapshots/', uAuth, {
        server_id: 'one',
        name: '',
      });
      const invalidPlain = await send('POST', plain.url, '/api/v1/snapshots/', uAuth, {
        server_id: 'one',
        name: '',
      });
      expect(invalid.status).toBe(400);
      expect(shape(invalid)).toEqual(shape(invalidPlain));
      const noId = (a: Answer) => ({ ...(JSON.parse(a.body.toString()) as object), request_id: '' });
      expect(noId(invalid)).toEqual(noId(invalidPlain));
      // A revoked token is refused at once.
      await api.prisma.apiToken.update({ where: { id: reader.row.id }, data: { revokedAt: new Date() } });
      const writer = await createToken(api.prisma, u.account.id, { scopes: ['read', 'write'] });
      await api.prisma.apiToken.update({ where: { id: writer.row.id }, data: { revokedAt: new Date() } });
      const revoked = await send('DELETE', api.url, '/api/v1/snapshots/1/', {
        Authorization: `Bearer ${writer.token}`,
      });
      expect(revoked.status).toBe(401);
    } finally {
      await limited.close();
    }
  });

  it('tokens the path does not serve get the pipeline’s answers: bad, write-only, admin', async () => {
    const t = await createTenant(api.prisma, nodeId);
    await addSnapshot(t.account.id, t.server.id, 'mine');
    const u = await createTenant(api.prisma, nodeId);
    await addSnapshot(u.account.id, u.server.id, 'theirs');
    const bad = await many(4, () =>
      get(api.url, '/api/v1/snapshots/', { Authorization: `Bearer vps_${'x'.repeat(40)}` }),
    );
    for (const r of bad) expect(r.status).toBe(401);
    const writer = await createToken(api.prisma, t.account.id, { scopes: ['write'] });
    const w = await many(4, () =>
      get(api.url, '/api/v1/snapshots/', { Authorization: `Bearer ${writer.token}` }),
    );
    for (const r of w) {
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body.toString()).code).toBe('forbidden');
    }
    // The account's reader warms the cache; an admin of the same account still sees every account.
    await many(4, () =>
      get(api.url, '/api/v1/snapshots/?page_size=100', { Authorization: `Bearer ${t.token}` }),
    );
    const admin = await createToken(api.prisma, t.account.id, { scopes: ['admin'] });
    const seen = await many(4, () =>
      get(api.url, '/api/v1/snapshots/?page_size=100', { Authorization: `Bearer ${admin.token}` }),
    );
    for (const r of seen) {
      expect(r.status).toBe(200);
      const names = (JSON.parse(r.body.toString()) as { results: { name: string }[] }).results.map(
        (s) => s.name,
      );
      expect(names).toEqual(expect.arrayContaining(['mine', 'theirs']));
    }
    // Another tenant's snapshot is a 404, not a cached answer of someone else's.
    const theirs = await api.prisma.snapshot.findFirstOrThrow({ where: { accountId: u.account.id } });
    for (const r of await many(4, () =>
      get(api.url, `/api/v1/snapshots/${theirs.id}/`, { Authorization: `Bearer ${t.token}` }),
    )) {
      expect(r.status).toBe(404);
    }
  });

  it('listing versions: every change moves them, compaction and concurrent writers do not lose any', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const version = async () =>
      (
        await api.prisma.$queryRaw<{ v: string }[]>`
          SELECT (SELECT last_value FROM listing_epoch)::text || ':' ||
                 (SELECT coalesce(sum(weight), 0) FROM listing_changes WHERE account_id = ${t.account.id})::text AS v`
      )[0].v;
    const v0 = await version();
    const s = await addSnapshot(t.account.id, t.server.id, 'v');
    const v1 = await version();
    expect(v1).not.toBe(v0);
    await api.prisma.$executeRaw`UPDATE snapshots SET progress = progress WHERE id = ${s.id}`; // no change
    expect(await version()).toBe(v1);
    // Twenty writers at once, with compactions running between them: the sum grows by exactly 20.
    const compactor = api.app.get(ListingCompactor);
    const [, before] = v1.split(':').map(Number);
    await Promise.all([
      ...Array.from(
        { length: 20 },
        (_, i) => api.prisma.$executeRaw`UPDATE snapshots SET description = ${`w-${i}`} WHERE id = ${s.id}`,
      ),
      compactor.compact(),
      compactor.compact(),
    ]);
    await compactor.compact();
    const [, after] = (await version()).split(':').map(Number);
    expect(after - before).toBe(20);
    const rows = await api.prisma.listingChange.count({ where: { accountId: t.account.id } });
    expect(rows).toBe(1);
  });
});
