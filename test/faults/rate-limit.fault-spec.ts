/**
 * Rate limits per token stored in Redis, against two real API processes sharing one
 * Redis (`RATE_LIMIT_PER_MINUTE=5`).
 *
 * - Normal responses carry `RateLimit-Limit`, `RateLimit-Remaining` (counting down across both
 *   replicas) and `RateLimit-Reset`.
 * - The 6th request of the minute, on either replica, is 429 `rate_limited` problem details with
 *   `Retry-After`, and a limited write writes nothing.
 * - The limit is per token: another token is unaffected.
 */
import { createToken } from '../factories';
import {
  AppProcess,
  createSnapshot,
  FaultLab,
  HttpResult,
  listSnapshots,
  recordFigures,
  shown,
  sleep,
} from './support/fault-env';

const FILE = 'test/faults/rate-limit.fault-spec.ts';
const LIMIT = 5;

const header = (r: HttpResult, name: string) => r.headers.get(name);

describe('rate limits (two real API processes, one Redis)', () => {
  let lab: FaultLab;
  let a: AppProcess;
  let b: AppProcess;

  beforeAll(async () => {
    lab = await FaultLab.create();
    const env = { RATE_LIMIT_PER_MINUTE: String(LIMIT) };
    [a, b] = await Promise.all([lab.startApi(env), lab.startApi(env)]);
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('the 6th request in a minute, on either replica, is 429 rate_limited with Retry-After; headers count down across replicas; other tokens unaffected', async () => {
    const started = Date.now();
    // A fixed-window limiter resets on the minute: keep the whole sequence inside one window.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 50_000) await sleep(60_000 - intoMinute + 200);

    const t = await lab.tenant();
    const remaining: number[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const res = await listSnapshots(i % 2 ? b : a, t);
      expect(shown(res)).toMatchObject({ status: 200 });
      expect(header(res, 'ratelimit-limit')).toBe(String(LIMIT));
      expect(header(res, 'ratelimit-reset')).toMatch(/^\d+$/);
      expect(Number(header(res, 'ratelimit-reset'))).toBeLessThanOrEqual(60);
      remaining.push(Number(header(res, 'ratelimit-remaining')));
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);

    const limited: HttpResult[] = [
      await createSnapshot(a, t, t.serverId, { name: 'over-the-limit' }),
      await listSnapshots(b, t),
      await listSnapshots(a, t),
    ];
    for (const res of limited) {
      expect(shown(res)).toMatchObject({ status: 429, body: { status: 429, code: 'rate_limited' } });
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(header(res, 'retry-after')).toMatch(/^\d+$/);
      expect(Number(header(res, 'retry-after'))).toBeGreaterThanOrEqual(1);
      expect(Number(header(res, 'retry-after'))).toBeLessThanOrEqual(60);
    }
    // The refused write wrote nothing.
    expect(await lab.prisma.snapshot.count({ where: { serverId: t.serverId } })).toBe(0);

    // Per token: a second token of the same account still has its whole allowance.
    const { token } = await createToken(lab.prisma, t.accountId);
    const fresh = await listSnapshots(a, { ...t, token, auth: { Authorization: `Bearer ${token}` } });
    expect(shown(fresh)).toMatchObject({ status: 200 });
    expect(header(fresh, 'ratelimit-remaining')).toBe(String(LIMIT - 1));

    recordFigures({
      guarantee: 'Rate limit shared by replicas',
      file: FILE,
      test: 'the 6th request in a minute, on either replica, is 429 …',
      faults: limited.length,
      checked: LIMIT + limited.length + 1,
      lost: 0,
      ms: Date.now() - started,
      note: `${LIMIT} allowed over 2 replicas, ${limited.length} refused (1 write, nothing written), another token unaffected`,
    });
  });
});
