import type { AppConfig } from '../config/app-config';
import type { RedisService } from '../redis/redis.service';
import { RateLimiter } from './rate-limiter';

/** A limiter whose Redis answers the counts given (token's, account's, then the writes' counters). */
function limiter(totals: number[], limits: Partial<AppConfig>): RateLimiter {
  const client = { rateLimitCount: () => Promise.resolve(totals.map(String)) };
  const config = {
    queuePrefix: 't',
    rateLimitPerMinute: 10,
    rateLimitAccountPerMinute: 100,
    rateLimitWritesPerMinute: 5,
    rateLimitAccountWritesPerMinute: 50,
    ...limits,
  } as AppConfig;
  return new RateLimiter({ client } as unknown as RedisService, config);
}

describe('RateLimiter.consume', () => {
  const who = { tokenId: 1, accountId: 2 };
  const at = 90_000; // 30 s into a window

  it('gives each request of a batch the tightest limit as its own increment left it', async () => {
    // 3 requests: the token's counter went 7 → 10 of 20, the account's 97 → 100 of 101.
    const v = await limiter([10, 100], { rateLimitPerMinute: 20, rateLimitAccountPerMinute: 101 }).consume(
      who,
      false,
      3,
      at,
    );
    expect(v).toEqual([
      { limit: 101, used: 98, reset: 30, exceeded: null },
      { limit: 101, used: 99, reset: 30, exceeded: null },
      { limit: 101, used: 100, reset: 30, exceeded: null },
    ]);
  });

  it('takes the first of equally tight limits', async () => {
    const v = await limiter([4, 94], {}).consume(who, false, 1, at);
    expect(v).toEqual([{ limit: 10, used: 4, reset: 30, exceeded: null }]);
  });

  it('names the limit a request went furthest over, the first of equals', async () => {
    // Token 11 of 10 (1 over), account 12 of 10 (2 over), writes 6 of 5 (1 over), account writes 7 of 5.
    const v = await limiter([11, 12, 6, 7], {
      rateLimitAccountPerMinute: 10,
      rateLimitAccountWritesPerMinute: 5,
    }).consume(who, true, 2, at);
    expect(v).toEqual([
      // Counts one less: token 10 of 10, account 11 of 10, writes 5 of 5, account writes 6 of 5.
      { limit: 10, used: 11, reset: 30, exceeded: { limit: 10, scope: 'account', kind: 'requests' } },
      { limit: 10, used: 12, reset: 30, exceeded: { limit: 10, scope: 'account', kind: 'requests' } },
    ]);
  });
});
