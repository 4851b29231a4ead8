import http from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createNode, createTenant } from '../factories';
import { HotReadPath } from '../../src/read-path/hot-read-path';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';
import { MAX_URL_BYTES } from '../../src/common/url-limit';

/**
 * The hot read path's answer cache stays within READ_CACHE_MAX_BYTES, measured as what the process
 * really retains (V8 heap and Buffer memory after a full collection), whatever the URLs and headers of
 * the requests that fill it: padded with unknown query parameters, with empty ones, with long headers,
 * or many small distinct answers.
 */

// A full collection on demand, without starting jest under `node --expose-gc`.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const BUDGET = 2 * 1024 * 1024;
/** What else a few thousand requests leave behind in this process (sockets, metrics, V8's own caches). */
const MARGIN = 3 * 1024 * 1024;

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function get(base: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}${path}`,
      { headers: { Host: 'api.test', ...headers }, agent },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      // A kept-alive socket the server closed as idle (keepAliveTimeout) just as it was reused: the
      // request never reached the server, so it is sent again (Node's documented pattern).
      if (req.reusedSocket && e.code === 'ECONNRESET') get(base, path, headers).then(resolve, reject);
      else reject(e);
    });
    req.end();
  });
}

/** Heap and Buffer memory still reachable after a full collection. */
function retained(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** `n` requests, `parallel` at a time, each with the path and headers of its index. */
async function flood(
  base: string,
  auth: Record<string, string>,
  n: number,
  request: (i: number) => { path: string; headers?: Record<string, string> },
): Promise<void> {
  const parallel = 16;
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const { path, headers } = request(next++);
        const status = await get(base, path, { ...auth, ...headers });
        if (status !== 200) throw new Error(`${path.slice(0, 80)}…: ${status}`);
      }
    }),
  );
}

describe('answer cache memory (real Postgres + Redis, the API in this process)', () => {
  let db: TestDatabase;
  let api: TestApi | undefined;
  let auth: Record<string, string>;
  let serverId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    agent.destroy();
    await db?.drop();
  });
  // Each test measures an API of its own, warmed up, from an empty cache.
  beforeEach(async () => {
    api = await startApi(testConfig(db, 'api', { READ_CACHE_MAX_BYTES: String(BUDGET) }));
    const node = await createNode(api.prisma);
    const t = await createTenant(api.prisma, node.id);
    auth = { Authorization: `Bearer ${t.token}` };
    serverId = t.server.id;
    await flood(api.url, auth, 200, (i) => ({ path: `/api/v1/snapshots/?page_size=${(i % 100) + 1}` }));
  });
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  const cacheSize = () => api!.app.get(HotReadPath).cacheSize!;

  it('thousands of padded URLs and headers keep the retained memory within the budget', async () => {
    const before = retained();
    const pad = (i: number, n: number) => `${i}-`.padEnd(n, 'x');
    const n = 1500;
    // As long as a URL may be (longer ones are 414 before the cache sees them).
    const long = MAX_URL_BYTES - 100;
    // Unknown parameters: every URL a new entry on the old code, each holding a ~4 kB key.
    await flood(api!.url, auth, n, (i) => ({
      path: `/api/v1/snapshots/?server_id=${serverId}&pad=${pad(i, long - 40)}`,
    }));
    // Only known parameters, padded with empty ones.
    await flood(api!.url, auth, n, (i) => ({
      path: `/api/v1/snapshots/?${'&'.repeat(long - 1040 + (i % 1000))}page=1`,
    }));
    // Long request headers that are part of the key.
    await flood(api!.url, auth, n, (i) => ({
      path: '/api/v1/snapshots/',
      headers: { 'Accept-Language': pad(i, 8000) },
    }));
    const grown = retained() - before;
    const size = cacheSize();
    console.log(
      `answer cache: ${size.entries} entries, ${size.bytes} B accounted; retained growth ${grown} B ` +
        `after ${3 * n} padded requests (budget ${BUDGET} B)`,
    );
    expect(size.bytes).toBeLessThanOrEqual(BUDGET);
    expect(grown).toBeLessThan(BUDGET + MARGIN);
  });

  it('what the cache accounts for is what it retains (many small distinct answers)', async () => {
    const before = retained();
    const bytesBefore = cacheSize().bytes;
    const n = 3000;
    // Short, distinct keys: each answer is cached; the budget evicts the oldest.
    await flood(api!.url, auth, n, (i) => ({
      path: `/api/v1/snapshots/?page_size=${(i % 100) + 1}`,
      headers: { 'Accept-Language': `x-${i}` },
    }));
    const grown = retained() - before;
    const size = cacheSize();
    console.log(
      `answer cache: ${size.entries} entries, ${size.bytes} B accounted (${size.bytes - bytesBefore} B more); ` +
        `retained growth ${grown} B after ${n} small distinct answers`,
    );
    expect(size.bytes).toBeLessThanOrEqual(BUDGET);
    expect(size.entries).toBeGreaterThan(100); // the cache did cache them
    expect(grown).toBeLessThan(BUDGET + MARGIN);
  });

  it("caches URLs made of the list's own parameters, and no others", async () => {
    const entries = () => cacheSize().entries;
    const cached = async (path: string, headers: Record<string, string> = {}) => {
      const before = entries();
      await flood(api!.url, auth, 1, () => ({ path, headers }));
      return entries() - before;
    };
    expect(await cached(`/api/v1/snapshots/?server_id=${serverId}&ordering=name&page=1&page_size=7`)).toBe(1);
    expect(await cached(`/api/v1/snapshots/?server_id=${serverId}&utm=1`)).toBe(0);
    expect(await cached('/api/v1/snapshots/?page_size=3&')).toBe(1);
    expect(await cached('/api/v1/snapshots/?page_size=4&' + '&'.repeat(600))).toBe(0);
    expect(await cached('/api/v1/snapshots/?page_size=5', { 'Accept-Language': 'x'.repeat(600) })).toBe(0);
  });
});
