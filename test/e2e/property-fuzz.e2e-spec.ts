import fc from 'fast-check';
import request from 'supertest';
import { createNode, createTenant } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

/**
 * Property: whatever body, query string or path id a client sends to any endpoint, the answer is never
 * a 5xx, is problem details when it is an error, and a refused request writes nothing.
 */
describe('generated input at every endpoint (fast-check)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let auth: Record<string, string>;
  let serverId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    const node = await createNode(api.prisma);
    const t = await createTenant(api.prisma, node.id);
    auth = t.auth;
    serverId = t.server.id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const counts = async () => ({
    snapshots: await api.prisma.snapshot.count(),
    actions: await api.prisma.action.count(),
    tokens: await api.prisma.apiToken.count(),
    nodes: await api.prisma.node.count(),
    servers: await api.prisma.server.count(),
  });

  const expectSafe = (res: request.Response) => {
    expect(res.status).toBeLessThan(500);
    if (res.status >= 400) {
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(typeof res.body.code).toBe('string');
    }
  };

  // Arbitrary path segments: digits, huge numbers, signs, unicode, dots, percent-escapes.
  const pathId = fc.oneof(
    fc.integer({ min: -5, max: 5 }).map(String),
    fc.bigInt({ min: 2n ** 31n - 2n, max: 2n ** 70n }).map(String),
    fc.constantFrom('0x10', '1e3', '1.0', ' 1', '%00', '..', '%2e%2e', 'null', '-0', '٣'),
    fc.string({ minLength: 1, maxLength: 12 }).map(encodeURIComponent),
  );
  const queryValue = fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String), fc.constant(''));
  const query = fc.dictionary(
    fc.constantFrom('server_id', 'page', 'page_size', 'ordering', 'x', 'account_id'),
    queryValue,
    { maxKeys: 4 },
  );
  const body = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.record(
      {
        server_id: fc.oneof(
          fc.integer(),
          fc.string(),
          fc.double(),
          fc.constant(null),
          fc.bigInt().map(String),
        ),
        name: fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null)),
        description: fc.oneof(fc.string({ maxLength: 1200 }), fc.constant(null), fc.array(fc.string())),
        extra: fc.jsonValue({ maxDepth: 3 }),
      },
      { requiredKeys: [] },
    ),
  );

  it('GET lists and details with generated queries and ids: never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/api/v1/snapshots/', '/api/v1/servers/', '/api/v1/tokens/'),
        query,
        async (path, q) => {
          expectSafe(await request(api.url).get(path).query(q).set(auth));
        },
      ),
      { numRuns: 60 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/api/v1/snapshots/', '/api/v1/servers/', '/api/v1/actions/'),
        pathId,
        async (base, id) => {
          expectSafe(await request(api.url).get(`${base}${id}/`).set(auth));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('POST/DELETE with generated bodies and ids: never 5xx, refused requests write nothing', async () => {
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const before = await counts();
        const res = await request(api.url)
          .post('/api/v1/snapshots/')
          .set(auth)
          .set('Content-Type', 'application/json')
          .send(JSON.stringify(b) ?? 'null');
        expectSafe(res);
        if (res.status >= 400) expect(await counts()).toEqual(before);
        if (res.status === 201) {
          // A valid generated body was accepted: clean up so the next run starts from a free server.
          await api.prisma.action.deleteMany({ where: { serverId } });
          await api.prisma.snapshot.deleteMany({ where: { serverId } });
        }
      }),
      { numRuns: 80 },
    );
    await fc.assert(
      fc.asyncProperty(pathId, body, async (id, b) => {
        const before = await counts();
        const restore = await request(api.url)
          .post(`/api/v1/snapshots/${id}/restore/`)
          .set(auth)
          .set('Content-Type', 'application/json')
          .send(JSON.stringify(b) ?? 'null');
        expectSafe(restore);
        const del = await request(api.url).delete(`/api/v1/snapshots/${id}/`).set(auth);
        expectSafe(del);
        expect(await counts()).toEqual(before);
      }),
      { numRuns: 60 },
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const before = await counts();
        const res = await request(api.url)
          .post('/api/v1/tokens/')
          .set(auth)
          .set('Content-Type', 'application/json')
          .send(JSON.stringify(b) ?? 'null');
        expectSafe(res);
        if (res.status >= 400) expect(await counts()).toEqual(before);
      }),
      { numRuns: 40 },
    );
  });

  it('raw bytes as JSON bodies: never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (raw) => {
        const before = await counts();
        const res = await request(api.url)
          .post('/api/v1/snapshots/')
          .set(auth)
          .set('Content-Type', 'application/json')
          .send(raw);
        expectSafe(res);
        if (res.status >= 400) expect(await counts()).toEqual(before);
        if (res.status === 201) {
          await api.prisma.action.deleteMany({ where: { serverId } });
          await api.prisma.snapshot.deleteMany({ where: { serverId } });
        }
      }),
      { numRuns: 60 },
    );
  });
});
