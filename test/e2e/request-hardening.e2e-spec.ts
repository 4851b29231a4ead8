import request from 'supertest';
import { createNode, createTenant } from '../factories';
import { MAX_URL_BYTES } from '../../src/common/url-limit';
import { MAX_JSON_VALUES_PER_CONTAINER } from '../../src/common/body-parsing';
import { expectProblem } from '../support/problem-assertions';
import {
  createTestDatabase,
  eventually,
  startApi,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

const WELL_FORMED_TOKEN = `vps_${'a'.repeat(40)}`;
const HEADER_ONLY = /Authorization: Bearer <token>/;

/** Bodies and tokens where they do not belong, long URLs, odd media types, cache headers: both pipelines. */
describe.each(['true', 'false'])('request hardening with HOT_READ_PATH=%s', (hotReadPath) => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { HOT_READ_PATH: hotReadPath }));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  describe('the token goes in the Authorization header only', () => {
    it('a body access_token that is not a string is 401, not 500 (with or without a header)', async () => {
      const t = await createTenant(api.prisma, nodeId);
      for (const auth of [{}, t.auth]) {
        const res = await request(api.url)
          .post('/api/v1/snapshots/')
          .set(auth)
          .send({ access_token: [WELL_FORMED_TOKEN], server_id: t.server.id, name: 'x' });
        expectProblem(res, 401, 'unauthorized');
        expect(res.body.detail).toMatch(HEADER_ONLY);
        expect(res.body.detail).toMatch(/body/);
      }
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(0);
    });

    it('a body access_token with the right token is refused too, in Welsh when asked', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const res = await request(api.url)
        .post('/api/v1/snapshots/')
        .set('Accept-Language', 'cy')
        .send({ access_token: t.token, server_id: t.server.id, name: 'x' });
      expectProblem(res, 401, 'unauthorized');
      expect(res.body.detail).toMatch(/^Heb awdurdod - Anfonwch y tocyn ym mhennawd "Authorization: Bearer/);
    });

    it('?access_token= is 401 on the polled list and detail, even with a valid header and a warm cache', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const warm = await request(api.url).get('/api/v1/snapshots/').set(t.auth);
      expect(warm.status).toBe(200);
      for (const url of [
        `/api/v1/snapshots/?access_token=${t.token}`,
        `/api/v1/snapshots/?page=1&access%5Ftoken=${t.token}`,
        `/api/v1/snapshots/1/?access_token=${t.token}`,
        `/api/v1/servers/?access_token=${t.token}`,
      ]) {
        for (const auth of [{}, t.auth]) {
          const res = await request(api.url).get(url).set(auth);
          expectProblem(res, 401, 'unauthorized');
          expect(res.body.detail).toMatch(HEADER_ONLY);
          expect(res.body.detail).toMatch(/URL/);
        }
      }
      // The refusal's audit row keeps no query (so no token).
      const rows = await eventually(async () => {
        const found = await api.prisma.auditEvent.findMany({ where: { action: 'auth.unauthorized' } });
        return found.length > 0 ? found : null;
      });
      expect(JSON.stringify(rows)).not.toContain(t.token);
    });

    it('a write with ?access_token= is refused before it changes anything', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const res = await request(api.url)
        .post(`/api/v1/snapshots/?access_token=${t.token}`)
        .set(t.auth)
        .send({ server_id: t.server.id, name: 'x' });
      expectProblem(res, 401, 'unauthorized');
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(0);
    });
  });

  it(`a URL over ${MAX_URL_BYTES} bytes is 414 uri_too_long; one at the bound is read`, async () => {
    const t = await createTenant(api.prisma, nodeId);
    const base = '/api/v1/snapshots/?ordering=id&x=';
    const atBound = base + 'a'.repeat(MAX_URL_BYTES - base.length);
    expect((await request(api.url).get(atBound).set(t.auth)).status).toBe(200);
    const res = await request(api.url)
      .get(atBound + 'a')
      .set(t.auth);
    expectProblem(res, 414, 'uri_too_long');
    const slashes = await request(api.url)
      .get(`/api/v1/snapshots${'/'.repeat(MAX_URL_BYTES)}`)
      .set(t.auth);
    expectProblem(slashes, 414, 'uri_too_long');
  });

  it('trailing slashes are stripped: the list answers however many follow its path', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const res = await request(api.url)
      .get(`/api/v1/snapshots${'/'.repeat(200)}`)
      .set(t.auth);
    expect(res.status).toBe(200);
  });

  it('query brackets are names, not nested objects: a[b]=1 is an ignored parameter', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const res = await request(api.url).get('/api/v1/snapshots/?server_id[a][b]=1&page[0]=2').set(t.auth);
    expect(res.status).toBe(200);
    const repeated = await request(api.url).get('/api/v1/snapshots/?page=1&page=2').set(t.auth);
    expectProblem(repeated, 400, 'validation_failed');
  });

  describe('bodies', () => {
    it('a non-UTF-8 charset or an overlong Content-Type is 415', async () => {
      const t = await createTenant(api.prisma, nodeId);
      const body = JSON.stringify({ server_id: t.server.id, name: 'x' });
      for (const type of [
        'application/json; charset=utf-16',
        'application/json; charset=iso-8859-1',
        `application/json; x=${'a'.repeat(300)}`,
      ]) {
        const res = await request(api.url)
          .post('/api/v1/snapshots/')
          .set(t.auth)
          .set('Content-Type', type)
          .send(body);
        expectProblem(res, 415, 'unsupported_media_type');
      }
      const utf8 = await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .set('Content-Type', 'application/json; charset="UTF-8"')
        .send(body);
      expect(utf8.status).toBe(201);
    });

    it(`more than ${MAX_JSON_VALUES_PER_CONTAINER} values in an array or object is 400`, async () => {
      const t = await createTenant(api.prisma, nodeId);
      const wide = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]));
      for (const body of [{ server_id: t.server.id, name: 'x', ...wide }, { name: Array(300).fill(1) }]) {
        const res = await request(api.url).post('/api/v1/snapshots/').set(t.auth).send(body);
        expectProblem(res, 400, 'validation_failed');
        expect(res.body.errors[0].message).toMatch(/more than/);
      }
      expect(await api.prisma.snapshot.count({ where: { serverId: t.server.id } })).toBe(0);
    });
  });

  it('an answer with an ETag is private, no-cache, and varies by Authorization and Accept-Language', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await request(api.url).get('/api/v1/snapshots/').set(t.auth));
    const etag = answers[0].headers.etag as string;
    answers.push(await request(api.url).get('/api/v1/snapshots/').set(t.auth).set('If-None-Match', etag));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 304]);
    for (const res of answers) {
      expect(res.headers.etag).toBe(etag);
      expect(res.headers['cache-control']).toBe('private, no-cache');
      expect(res.headers.vary).toBe('Authorization, Accept-Language');
    }
    const health = await request(api.url).get('/healthz');
    expect(health.headers.vary).toBeUndefined();
  });
});

describe('TRUST_PROXY=1: the client IP is the one the ingress appended', () => {
  let db: TestDatabase;
  let api: TestApi;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { TRUST_PROXY: '1' }));
    nodeId = (await createNode(api.prisma)).id;
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  it('a forged left-most X-Forwarded-For is not the audited IP (refusals and changes)', async () => {
    const forged = '203.0.113.66';
    const real = '198.51.100.7';
    const refused = await request(api.url)
      .get('/api/v1/snapshots/')
      .set('Authorization', `Bearer ${WELL_FORMED_TOKEN}`)
      .set('X-Forwarded-For', `${forged}, ${real}`);
    expect(refused.status).toBe(401);
    const refusal = await eventually(() =>
      api.prisma.auditEvent.findFirst({ where: { requestId: refused.headers['x-request-id'] as string } }),
    );
    expect(refusal.ip).toBe(real);

    const t = await createTenant(api.prisma, nodeId);
    const created = await request(api.url)
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .set('X-Forwarded-For', `${forged}, ${real}`)
      .send({ server_id: t.server.id, name: 'x' });
    expect(created.status).toBe(201);
    const row = await api.prisma.auditEvent.findFirstOrThrow({
      where: { requestId: created.headers['x-request-id'] as string },
    });
    expect(row.ip).toBe(real);
  });
});
