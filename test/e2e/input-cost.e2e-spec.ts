import http from 'node:http';
import { createNode, createTenant } from '../factories';
import { MAX_URL_BYTES } from '../../src/common/url-limit';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

/**
 * What a request's bytes cost the API: every place they meet a regex, a loop or a parser (path, query,
 * headers, body) must take time bounded and flat in their size. Each worst case is sent at 1 kB and at
 * 16 kB (URLs also at the 4 kB bound, past which they are 414; headers at 14 kB, under Node's 16 kB for
 * all of them), and the median time per request compared as a ratio.
 */
const KB = 1024;
const ROUNDS = 25;

interface Shot {
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function send(base: string, shot: Shot, via = agent): Promise<{ status: number; ms: number }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request(
      {
        agent: via,
        host: url.hostname,
        port: url.port,
        method: shot.method ?? 'GET',
        path: shot.path,
        headers: {
          ...(shot.body !== undefined
            ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(shot.body) }
            : {}),
          ...shot.headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - started) / 1e6 }),
        );
      },
    );
    req.on('error', reject);
    req.end(shot.body);
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median time of each shot, sent in turn round after round (so a busy machine slows them alike). */
async function sideBySide(base: string, shots: Shot[]): Promise<{ ms: number; status: number }[]> {
  const times = shots.map(() => [] as number[]);
  const statuses = shots.map(() => 0);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, shot] of shots.entries()) {
      const r = await send(base, shot);
      times[k].push(r.ms);
      statuses[k] = r.status;
    }
  }
  return times.map((t, k) => ({ ms: median(t), status: statuses[k] }));
}

// Reads (GETs) are answered by the front of the pipeline unless HOT_READ_PATH=false: both are measured.
describe.each(['true', 'false'])(
  'the cost of hostile input (time per request flat in its size), HOT_READ_PATH=%s',
  (hotReadPath) => {
    let db: TestDatabase;
    let api: TestApi;
    let auth: Record<string, string>;
    let serverId: number;

    beforeAll(async () => {
      db = await createTestDatabase();
      api = await startApi(testConfig(db, 'api', { HOT_READ_PATH: hotReadPath }));
      const t = await createTenant(api.prisma, (await createNode(api.prisma)).id);
      auth = t.auth;
      serverId = t.server.id;
    });
    afterAll(async () => {
      agent.destroy();
      await api?.close();
      await db?.drop();
    });

    const fill = (unit: string, bytes: number) => unit.repeat(Math.max(1, Math.floor(bytes / unit.length)));

    /** Each case: a request made of `bytes` of the hostile pattern. */
    const cases: [string, (bytes: number) => Shot, number[]][] = [
      [
        'slashes before the end of the path',
        (n) => ({ path: `/api/v1/snapshots${fill('/', n)}x/`, headers: auth }),
        [KB, 4 * KB - 64, 16 * KB],
      ],
      [
        'trailing slashes',
        (n) => ({ path: `/api/v1/snapshots${fill('/', n)}`, headers: auth }),
        [KB, 4 * KB - 64, 16 * KB],
      ],
      [
        'nested query names a[b][c]',
        (n) => ({ path: `/api/v1/snapshots/?${fill('a[b][c][d]=1&', n)}`, headers: auth }),
        [KB, 4 * KB - 64, 16 * KB],
      ],
      [
        'many query keys',
        (n) => ({ path: `/api/v1/snapshots/?${fill('k=1&', n)}access_token`, headers: auth }),
        [KB, 4 * KB - 64, 16 * KB],
      ],
      [
        'Accept-Language ranges',
        (n) => ({
          path: '/api/v1/snapshots/',
          headers: { ...auth, 'Accept-Language': fill('de;q=0.5,', n) },
        }),
        [KB, 14 * KB],
      ],
      [
        'If-None-Match tags',
        (n) => ({ path: '/api/v1/snapshots/', headers: { ...auth, 'If-None-Match': fill('W/"x",', n) } }),
        [KB, 14 * KB],
      ],
      [
        'X-Forwarded-For hops',
        (n) => ({
          path: '/api/v1/snapshots/',
          headers: { ...auth, 'X-Forwarded-For': fill('10.0.0.1,', n) },
        }),
        [KB, 14 * KB],
      ],
      [
        'Authorization with spaces',
        (n) => ({ path: '/api/v1/snapshots/', headers: { Authorization: `Bearer ${fill('a ', n)}` } }),
        [KB, 14 * KB],
      ],
      [
        'X-Request-Id',
        (n) => ({ path: '/api/v1/snapshots/', headers: { ...auth, 'X-Request-Id': fill('a', n) } }),
        [KB, 14 * KB],
      ],
      [
        'Content-Type parameters',
        (n) => ({
          path: '/api/v1/snapshots/',
          method: 'POST',
          body: '{}',
          headers: { ...auth, 'Content-Type': `application/json${fill(';a=b', n)}` },
        }),
        [KB, 14 * KB],
      ],
      [
        'deep JSON',
        (n) => ({ path: '/api/v1/snapshots/', method: 'POST', headers: auth, body: fill('[', n) }),
        [KB, 16 * KB],
      ],
      [
        'wide JSON array',
        (n) => ({
          path: '/api/v1/snapshots/',
          method: 'POST',
          headers: auth,
          body: `{"name":[${fill('1,', n)}1]}`,
        }),
        [KB, 16 * KB],
      ],
      [
        'wide JSON object',
        (n) => ({
          path: '/api/v1/snapshots/',
          method: 'POST',
          headers: auth,
          body: `{${Array.from({ length: Math.floor(n / 12) }, (_, i) => `"k${i}":${i}`).join(',')}}`,
        }),
        [KB, 16 * KB],
      ],
      [
        'escapes in a JSON string',
        (n) => ({
          path: '/api/v1/snapshots/',
          method: 'POST',
          headers: auth,
          body: `{"server_id":${serverId},"name":"x","description":"${fill('\\"', n)}"}`,
        }),
        [KB, 16 * KB],
      ],
    ];

    // Other methods never reach the front of the pipeline: measured once.
    const measured =
      hotReadPath === 'true' ? cases : cases.filter(([, make]) => make(KB).method === undefined);

    it.each(measured)('%s', async (_name, make, sizes) => {
      await sideBySide(api.url, [make(KB)]); // warm-up
      const results = await sideBySide(
        api.url,
        sizes.map((bytes) => make(bytes)),
      );
      const measured = results.map((r, k) => ({ bytes: sizes[k], ...r }));
      const [small, ...larger] = measured;
      process.stdout.write(
        `${_name}: ${measured.map((m) => `${m.bytes} B → ${m.status} in ${m.ms.toFixed(2)} ms`).join(', ')}\n`,
      );
      for (const big of larger) {
        expect({ bytes: big.bytes, status: big.status }).not.toMatchObject({ status: 500 });
        // 0.5 ms of slack: both are around a millisecond, where the clock's own jitter is a ratio.
        expect((big.ms + 0.5) / (small.ms + 0.5)).toBeLessThanOrEqual(2);
      }
    });

    it('/healthz stays fast while 8 clients send the worst paths and bodies', async () => {
      const quiet: number[] = [];
      for (let i = 0; i < 40; i++) quiet.push((await send(api.url, { path: '/healthz' })).ms);
      let running = true;
      const hostile: Shot[] = [
        { path: `/api/v1/snapshots${'/'.repeat(MAX_URL_BYTES - 40)}x/`, headers: auth },
        { path: `/api/v1/snapshots/?${'a[b][c]=1&'.repeat(400)}`, headers: auth },
        {
          path: '/api/v1/snapshots/',
          method: 'POST',
          headers: auth,
          body: `{"name":[${'1,'.repeat(30_000)}1]}`,
        },
        { path: '/api/v1/snapshots/', headers: { ...auth, 'Accept-Language': 'de;q=0.5,'.repeat(1400) } },
      ];
      const clients = Array.from({ length: 8 }, async (_, i) => {
        const own = new http.Agent({ keepAlive: true, maxSockets: 1 });
        let sent = 0;
        while (running) {
          await send(api.url, hostile[i % hostile.length], own).catch(() => null);
          sent++;
        }
        own.destroy();
        return sent;
      });
      await new Promise((r) => setTimeout(r, 300));
      const loaded: number[] = [];
      for (let i = 0; i < 40; i++) loaded.push((await send(api.url, { path: '/healthz' })).ms);
      running = false;
      const sent = (await Promise.all(clients)).reduce((a, b) => a + b, 0);
      const p50 = median(loaded);
      process.stdout.write(
        `healthz p50 quiet ${median(quiet).toFixed(2)} ms, under 8 hostile clients ${p50.toFixed(2)} ms (${sent} hostile requests)\n`,
      );
      expect(sent).toBeGreaterThan(40);
      expect(p50).toBeLessThan(100);
    });
  },
);
