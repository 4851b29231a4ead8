import http from 'node:http';
import { PinoLogger } from 'nestjs-pino';
import { MAX_URL_BYTES } from '../../src/common/url-limit';
import { createNode, createTenant } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const METRICS_TOKEN = 'metrics-secret-0123456789abcdef';

interface Line {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function get(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; id: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, id: String(res.headers['x-request-id']), body }),
        );
      })
      .on('error', reject);
  });
}

/**
 * Every request is recorded once, by one recorder (src/metrics/request-recorder.ts), whichever part of
 * the pipeline answered it: the same log fields and the same metric label for an answer of the Nest
 * pipeline and for one the front shared or replayed from its cache, and requests refused before any
 * route (414) counted too.
 */
describe('request record: one log line and one metric sample per request, whoever answered (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  const lines: Line[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { LOG_LEVEL: 'warn', METRICS_TOKEN, METRICS_CACHE_MS: '0' }));
    // Started quietly, then at `info`; the log's sink (not the recorder) keeps the lines here instead
    // of printing them among the test output.
    const root = PinoLogger.root;
    root.level = 'info';
    for (const level of ['info', 'warn', 'error'] as const) {
      jest.spyOn(root, level).mockImplementation(((fields: Record<string, unknown>, msg: string) => {
        lines.push({ level, fields, msg });
      }) as never);
    }
  });
  afterAll(async () => {
    jest.restoreAllMocks();
    agent.destroy();
    await api?.close();
    await db?.drop();
  });

  const metricCount = async (route: string, status: string): Promise<number> => {
    const r = await get(`${api.url}/metrics`, { Authorization: `Bearer ${METRICS_TOKEN}` });
    const line = r.body
      .split('\n')
      .find(
        (l) =>
          l.startsWith('http_request_duration_seconds_count{') &&
          l.includes(`route="${route}"`) &&
          l.includes(`status="${status}"`) &&
          l.includes('method="GET"'),
      );
    return line ? Number(line.split(' ').pop()) : 0;
  };

  it('pipeline, shared and cached answers: the same log fields and one sample each under the route', async () => {
    const node = await createNode(api.prisma);
    const t = await createTenant(api.prisma, node.id);
    const path = `/api/v1/snapshots/?server_id=${t.server.id}`;
    const before = await metricCount('/api/v1/snapshots', '200');
    // Sent together: one leader through the pipeline, the others share its answer; then one from the cache.
    const answers = await Promise.all(Array.from({ length: 12 }, () => get(api.url + path, t.auth)));
    answers.push(await get(api.url + path, t.auth));
    expect(answers.map((a) => a.status)).toEqual(Array(13).fill(200));

    const mine = lines.filter((l) => (l.fields.req as { url?: string } | undefined)?.url === path);
    expect(mine).toHaveLength(13);
    const how = mine.map((l) => l.fields.hotRead ?? 'pipeline');
    expect(how).toContain('pipeline');
    expect(how.filter((h) => h !== 'pipeline').length).toBeGreaterThanOrEqual(1);
    for (const l of mine) {
      expect(l).toMatchObject({ level: 'info', msg: 'request completed' });
      const keys = Object.keys(l.fields).filter((k) => k !== 'hotRead');
      expect(keys.sort()).toEqual(['req', 'requestId', 'res', 'responseTime']);
      expect(l.fields.res).toEqual({ statusCode: 200 });
      expect(l.fields.req).toEqual({ id: l.fields.requestId, method: 'GET', url: path });
      expect(typeof l.fields.responseTime).toBe('number');
    }
    // Each line carries the id its answer was sent with.
    expect(mine.map((l) => l.fields.requestId).sort()).toEqual(answers.map((a) => a.id).sort());
    expect((await metricCount('/api/v1/snapshots', '200')) - before).toBe(13);
  });

  it('a request refused before any route is counted and logged too', async () => {
    const before = await metricCount('unmatched', '414');
    const long = `/api/v1/snapshots/?q=${'x'.repeat(MAX_URL_BYTES)}`;
    expect((await get(api.url + long, {})).status).toBe(414);
    expect((await metricCount('unmatched', '414')) - before).toBe(1);
    const line = lines.find((l) => (l.fields.res as { statusCode?: number } | undefined)?.statusCode === 414);
    expect((line?.fields.req as { url: string }).url).toBe(`${long.slice(0, MAX_URL_BYTES)}…`);
  });
});
