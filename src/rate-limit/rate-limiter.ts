import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisService } from '../redis/redis.service';

export const RATE_LIMIT_WINDOW_SECONDS = 60;

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
  constructor(
    private readonly redis: RedisService,
    private readonly config: AppConfig,
  ) {}

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
      const multi = this.redis.client
        .multi()
        .incrby(allKey, n)
        .expire(allKey, RATE_LIMIT_WINDOW_SECONDS * 2);
      if (isWrite) multi.incrby(writeKey, n).expire(writeKey, RATE_LIMIT_WINDOW_SECONDS * 2);
      const results = await multi.exec();
      if (!results) return null;
      totals = results.filter((_, i) => i % 2 === 0).map(([err, v]) => (err ? 0 : Number(v)));
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
