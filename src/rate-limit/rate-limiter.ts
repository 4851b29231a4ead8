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

/** Whose requests a limit counts: one token's, or all the tokens of its account together. */
export const RATE_LIMIT_SCOPES = ['token', 'account'] as const;
/** What a limit counts: every request, or writes only. */
export const RATE_LIMIT_KINDS = ['requests', 'writes'] as const;

/** One limit that applies to a request. */
export interface RateLimit {
  limit: number;
  scope: (typeof RATE_LIMIT_SCOPES)[number];
  kind: (typeof RATE_LIMIT_KINDS)[number];
}

/** The token a request carries, and its account. */
export interface RateSubject {
  tokenId: number;
  accountId: number;
}

/** What one request's count says: the tightest limit that applies, how much of it is used, and when it resets. */
export interface RateVerdict {
  limit: number;
  used: number;
  /** Seconds until the window resets (≥ 1). */
  reset: number;
  /** The limit this request went over, if any (the 429 names it). */
  exceeded: RateLimit | null;
}

/**
 * Request counters in Redis (fixed one-minute windows), shared by every API replica, per token and per
 * account: every request counts toward `RATE_LIMIT_PER_MINUTE` of its token and
 * `RATE_LIMIT_ACCOUNT_PER_MINUTE` of its account; writes also toward `RATE_LIMIT_WRITES_PER_MINUTE` and
 * `RATE_LIMIT_ACCOUNT_WRITES_PER_MINUTE`. The account's counters make N tokens of one account share one
 * allowance instead of getting N of them. Refused requests count too.
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

  /** The limits a request of this kind counts toward, each with its Redis key in this window. */
  private limitsOf(who: RateSubject, isWrite: boolean, window: number): (RateLimit & { key: string })[] {
    const prefix = `${this.config.queuePrefix}:ratelimit`;
    const c = this.config;
    const limits: (RateLimit & { key: string })[] = [
      {
        key: `${prefix}:all:${who.tokenId}:${window}`,
        limit: c.rateLimitPerMinute,
        scope: 'token',
        kind: 'requests',
      },
      {
        key: `${prefix}:account-all:${who.accountId}:${window}`,
        limit: c.rateLimitAccountPerMinute,
        scope: 'account',
        kind: 'requests',
      },
    ];
    if (isWrite) {
      limits.push(
        {
          key: `${prefix}:write:${who.tokenId}:${window}`,
          limit: c.rateLimitWritesPerMinute,
          scope: 'token',
          kind: 'writes',
        },
        {
          key: `${prefix}:account-write:${who.accountId}:${window}`,
          limit: c.rateLimitAccountWritesPerMinute,
          scope: 'account',
          kind: 'writes',
        },
      );
    }
    return limits;
  }

  /**
   * Counts `n` requests of one token at once, on the token's and its account's counters in one round
   * trip, and returns each request's verdict, in order: request i of n sees every counter as it stood
   * after its own increment. Null when Redis could not be reached (the caller lets the requests through).
   */
  async consume(
    who: RateSubject,
    isWrite: boolean,
    n = 1,
    nowMs = Date.now(),
  ): Promise<RateVerdict[] | null> {
    const nowSec = nowMs / 1000;
    const window = Math.floor(nowSec / RATE_LIMIT_WINDOW_SECONDS);
    const reset = Math.max(1, Math.ceil((window + 1) * RATE_LIMIT_WINDOW_SECONDS - nowSec));
    const limits = this.limitsOf(who, isWrite, window);
    let totals: number[];
    try {
      const keys = limits.map((l) => l.key);
      totals = (await this.client.rateLimitCount(keys.length, ...keys, n, RATE_LIMIT_WINDOW_SECONDS * 2)).map(
        Number,
      );
    } catch {
      return null;
    }
    const verdicts: RateVerdict[] = [];
    // Per request, the tightest limit that applies and the one it went furthest over (the first of
    // equals): by index, without arrays or closures per request (this runs for every request).
    for (let i = 0; i < n; i++) {
      const back = n - 1 - i;
      let tight = 0;
      let over = -1;
      for (let k = 0; k < limits.length; k++) {
        const room = limits[k].limit - (totals[k] - back);
        if (room < limits[tight].limit - (totals[tight] - back)) tight = k;
        if (room < 0 && (over < 0 || room < limits[over].limit - (totals[over] - back))) over = k;
      }
      const exceeded = over < 0 ? null : limits[over];
      verdicts.push({
        limit: limits[tight].limit,
        used: totals[tight] - back,
        reset,
        exceeded: exceeded && { limit: exceeded.limit, scope: exceeded.scope, kind: exceeded.kind },
      });
    }
    return verdicts;
  }
}
