import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { IS_PUBLIC } from '../auth/decorators';
import { isReadMethod, Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { RateLimitCounter } from './rate-limit-counter';
import { RateVerdict } from './rate-limiter';

/**
 * Per-token and per-account rate limits (see RateLimiter). Answers carry `RateLimit-Limit`,
 * `RateLimit-Remaining`, `RateLimit-Reset` (seconds) of the tightest limit; over a limit is 429
 * `rate_limited` with `Retry-After`, naming the limit (`limit_scope`, `limit_kind`). If Redis cannot
 * be reached the request is let through (reads keep working while Redis is down) and the lapse is
 * logged. Counted once per request, batched (RateLimitCounter).
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly counter: RateLimitCounter,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()]))
      return true;
    const req = context.switchToHttp().getRequest<Request & { user?: Principal }>();
    const res = context.switchToHttp().getResponse<Response>();
    if (!req.user) return true;
    const verdict = await this.counter.verdictOf(req, req.user, !isReadMethod(req.method));
    if (!verdict) return true; // Redis unreachable: let through (the counter logged it)
    applyRateLimitHeaders(res, verdict);
    if (verdict.exceeded !== null) {
      const { limit, scope, kind } = verdict.exceeded;
      const named = { limit, retry_after: verdict.reset, limit_scope: scope, limit_kind: kind };
      throw new ProblemException({
        status: 429,
        code: 'rate_limited',
        params: named,
        extra: named,
        headers: { 'Retry-After': String(verdict.reset) },
      });
    }
    return true;
  }
}

export function applyRateLimitHeaders(res: Response, v: RateVerdict): void {
  res.setHeader('RateLimit-Limit', String(v.limit));
  res.setHeader('RateLimit-Remaining', String(Math.max(0, v.limit - v.used)));
  res.setHeader('RateLimit-Reset', String(v.reset));
}
