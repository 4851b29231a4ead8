import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import type { Redis } from 'ioredis';
import { RedisService } from '../redis/redis.service';

export const RATE_LIMIT_WINDOW_SECONDS = 60;

/**
 * INCRBY ARGV[1] on every key, each (re)set to expire after ARGV[2] seconds; returns the new counts in
 * key order. One EVALSHA instead of MULTI/INCRBY/EXPIRE/EXEC: one command for Redis to parse and one
 * reply for the client (docs/benchmarks.md, target 1).
 */
const COUNT_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCRBY', key, ARGV[1])
  redis.call('EXPIRE', key, ARGV[2])
end
return out`;

type CountingClient = Redis & {
  rateLimitCount(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
};

/** What one request's count says: the tightest limit that applies, how much of it is used, and when it resets. */
export interface RateVerdict {
  limit: number;
  used: number;
  /** Seconds until the window resets (≥ 1). */
  reset: number;
  /** The limit this request went over, if any (the 429's `limit`). */
  exceeded: number | null;
}

/**
 * Per-token request counters in Redis (fixed one-minute windows), shared by every API replica.
 * Every request counts toward `RATE_LIMIT_PER_MINUTE`; writes also toward `RATE_LIMIT_WRITES_PER_MINUTE`.
 */
@Injectable()
export class RateLimiter {
  private readonly client: CountingClient;

  constructor(
    redis: RedisService,
    private readonly config: AppConfig,
  ) {
    // ioredis sends EVALSHA and falls back to EVAL when Redis does not know the script (NOSCRIPT).
    if (!('rateLimitCount' in redis.client))
      redis.client.defineCommand('rateLimitCount', { lua: COUNT_SCRIPT });
    this.client = redis.client as CountingClient;
  }

  /**
   * Counts `n` requests of one token at once (one round trip) and returns each request's verdict, in
   * order: request i of n sees the counter as it stood after its own increment. Null when Redis could
   * not be reached (the caller lets the requests through).
   */
  async consume(tokenId: number, isWrite: boolean, n = 1, nowMs = Date.now()): Promise<RateVerdict[] | null> {
    const nowSec = nowMs / 1000;
    const window = Math.floor(nowSec / RATE_LIMIT_WINDOW_SECONDS);
    const reset = Math.max(1, Math.ceil((window + 1) * RATE_LIMIT_WINDOW_SECONDS - nowSec));
    const prefix = `${this.config.queuePrefix}:ratelimit`;
    const allKey = `${prefix}:all:${tokenId}:${window}`;
    const writeKey = `${prefix}:write:${tokenId}:${window}`;
    let totals: number[];
    try {
      const keys = isWrite ? [allKey, writeKey] : [allKey];
      totals = (await this.client.rateLimitCount(keys.length, ...keys, n, RATE_LIMIT_WINDOW_SECONDS * 2)).map(
        Number,
      );
    } catch {
      return null;
    }
    const verdicts: RateVerdict[] = [];
    for (let i = 0; i < n; i++) {
      const back = n - 1 - i;
      const checks = [{ used: totals[0] - back, limit: this.config.rateLimitPerMinute }];
      if (isWrite) checks.push({ used: totals[1] - back, limit: this.config.rateLimitWritesPerMinute });
      // Report the tightest limit that applies to this request.
      const tight = checks.reduce((a, b) => (b.limit - b.used < a.limit - a.used ? b : a));
      const over = checks.find((c) => c.used > c.limit);
      verdicts.push({ limit: tight.limit, used: tight.used, reset, exceeded: over ? over.limit : null });
    }
    return verdicts;
  }
}
