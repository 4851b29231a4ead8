import { Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { QUEUE_BOARD_PATH } from './queue-board';
import { MetricsService } from './metrics.service';

/**
 * Times every HTTP request and records it by route *template* (`/api/v1/snapshots/:id`), never the raw
 * URL, so ids and query strings cannot blow up the label set. Requests that matched no route (or only
 * a catch-all) are `unmatched`; the queue dashboard's many paths are one label.
 */
@Injectable()
export class HttpMetricsMiddleware implements NestMiddleware {
  constructor(private readonly metrics: MetricsService) {}

  use(req: Request, res: Response, next: NextFunction): void {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.httpDuration.observe(
        { method: req.method, route: routeTemplate(req), status: String(res.statusCode) },
        seconds,
      );
    });
    next();
  }
}

export function routeTemplate(req: Request): string {
  const original = req.originalUrl ?? req.url;
  if (original === QUEUE_BOARD_PATH || original.startsWith(`${QUEUE_BOARD_PATH}/`)) {
    return `${QUEUE_BOARD_PATH}/*`;
  }
  const route = (req as { route?: { path?: unknown } }).route;
  // A catch-all route (`/{*path}`, the API's own 404/405 answer) is no resource either.
  if (route && typeof route.path === 'string' && !route.path.includes('*')) {
    return `${req.baseUrl ?? ''}${route.path}` || '/';
  }
  return 'unmatched';
}
