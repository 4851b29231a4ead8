import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { IS_PUBLIC } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { RedisService } from '../redis/redis.service';

const WINDOW_SECONDS = 60;

/**
 * Per-token rate limits, counted in Redis so every API replica shares them (fixed one-minute windows).
 * Every request counts toward `RATE_LIMIT_PER_MINUTE`; writes also toward `RATE_LIMIT_WRITES_PER_MINUTE`.
 * Answers carry `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds); over the limit is
 * 429 `rate_limited` with `Retry-After`. If Redis cannot be reached the request is let through (reads
 * keep working while Redis is down) and the lapse is logged.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  private readonly logger = new Logger(RateLimitGuard.name);

  constructor(
    private readonly reflector: Reflector,
    private readonly redis: RedisService,
    private readonly config: AppConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()]))
      return true;
    const req = context.switchToHttp().getRequest<Request & { user?: Principal }>();
    const res = context.switchToHttp().getResponse<Response>();
    if (!req.user) return true;
    const nowSec = Date.now() / 1000;
    const window = Math.floor(nowSec / WINDOW_SECONDS);
    const reset = Math.max(1, Math.ceil((window + 1) * WINDOW_SECONDS - nowSec));
    const isWrite = !['GET', 'HEAD', 'OPTIONS'].includes(req.method);
    const prefix = `${this.config.queuePrefix}:ratelimit`;
    const allKey = `${prefix}:all:${req.user.tokenId}:${window}`;
    const writeKey = `${prefix}:write:${req.user.tokenId}:${window}`;
    let counts: number[];
    try {
      const multi = this.redis.client
        .multi()
        .incr(allKey)
        .expire(allKey, WINDOW_SECONDS * 2);
      if (isWrite) multi.incr(writeKey).expire(writeKey, WINDOW_SECONDS * 2);
      const results = (await multi.exec()) ?? [];
      counts = results.filter((_, i) => i % 2 === 0).map(([err, v]) => (err ? 0 : Number(v)));
    } catch (err) {
      this.logger.warn({ err }, 'rate limit store unreachable; request let through');
      return true;
    }
    const checks = [{ used: counts[0], limit: this.config.rateLimitPerMinute }];
    if (isWrite) checks.push({ used: counts[1], limit: this.config.rateLimitWritesPerMinute });
    // Report the tightest limit that applies to this request.
    const tight = checks.reduce((a, b) => (b.limit - b.used < a.limit - a.used ? b : a));
    res.setHeader('RateLimit-Limit', String(tight.limit));
    res.setHeader('RateLimit-Remaining', String(Math.max(0, tight.limit - tight.used)));
    res.setHeader('RateLimit-Reset', String(reset));
    const over = checks.find((c) => c.used > c.limit);
    if (over) {
      throw new ProblemException({
        status: 429,
        code: 'rate_limited',
        params: { limit: over.limit, retry_after: reset },
        extra: { limit: over.limit, retry_after: reset },
        headers: { 'Retry-After': String(reset) },
      });
    }
    return true;
  }
}
