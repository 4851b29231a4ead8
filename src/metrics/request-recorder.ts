import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PinoLogger } from 'nestjs-pino';
import { redactTokenParameter } from '../auth/bearer-token';
import { requestIdOf } from '../common/request-context';
import { MAX_URL_BYTES } from '../common/url-limit';
import { QUEUE_BOARD_PATH } from './queue-board';
import { MetricsService } from './metrics.service';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** How the front of the pipeline answered a request itself (src/read-path), and under which route. */
interface Replayed {
  route: string;
  how: 'shared' | 'cached';
}

const REPLAYED = Symbol('replayed');
/** When the request arrived (performance.now()), kept on its response. */
const STARTED = Symbol('started');
type Timed = ServerResponse & { [STARTED]: number };

/** Marks a request the front answered with another request's answer (its route label and how). */
export function markReplayed(req: IncomingMessage, replayed: Replayed): void {
  (req as unknown as Record<symbol, Replayed>)[REPLAYED] = replayed;
}

function replayedOf(req: IncomingMessage): Replayed | undefined {
  return (req as unknown as Record<symbol, Replayed | undefined>)[REPLAYED];
}

/** Paths polled by orchestrators: timed, but not logged. */
const UNLOGGED = new Set(['/healthz', '/readyz']);

/**
 * Records every HTTP request once, whichever part answered it (the Nest pipeline, or the front of the
 * pipeline replaying an answer): its duration in `http_request_duration_seconds` by route *template*
 * (`/api/v1/snapshots/:id`, never the raw URL, so ids and query strings cannot blow up the label set)
 * and its `request completed` log line. Installed in front of the server's request listener, so a log
 * field or a metric label is written in this one place.
 */
@Injectable()
export class RequestRecorder {
  constructor(private readonly metrics: MetricsService) {}

  /** Puts the recorder in front of the server's request listener (the Express app, or the front). */
  install(server: Server): void {
    const [next] = server.listeners('request') as Listener[];
    if (!next) throw new Error('the HTTP server has no request listener to record');
    server.removeListener('request', next);
    const record = (req: IncomingMessage, res: ServerResponse, started: number) =>
      this.record(req, res, started);
    // One listener, the same function for every response (no closure per request): 'close' follows
    // 'finish' when the answer was sent, and comes alone when it was not; it is emitted once.
    function onClose(this: Timed): void {
      record(this.req, this, this[STARTED]);
    }
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      (res as Timed)[STARTED] = performance.now();
      res.on('close', onClose);
      next(req, res);
    });
  }

  private record(req: IncomingMessage, res: ServerResponse, started: number): void {
    const seconds = (performance.now() - started) / 1e3;
    const replayed = replayedOf(req);
    const status = res.statusCode;
    if (res.writableFinished) {
      this.metrics.httpDuration.observe(
        {
          method: req.method,
          route: replayed?.route ?? routeTemplate(req as Request),
          status: String(status),
        },
        seconds,
      );
    }
    const log = PinoLogger.root;
    const url = (req as Request).originalUrl ?? req.url ?? '';
    const level = !res.writableFinished ? 'warn' : status >= 500 ? 'error' : 'info';
    if (!log?.isLevelEnabled(level) || UNLOGGED.has(url)) return;
    const id = requestIdOf(req as Request);
    log[level](
      {
        req: { id, method: req.method, url: loggedUrl(url) },
        res: { statusCode: status },
        responseTime: Math.round(seconds * 1000),
        requestId: id,
        ...(replayed ? { hotRead: replayed.how } : {}),
      },
      !res.writableFinished ? 'request aborted' : status >= 500 ? 'request errored' : 'request completed',
    );
  }
}

/** The route label of a request the pipeline answered; requests that matched no route are `unmatched`. */
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

/** The URL as logged: a token parameter's value redacted, and at most MAX_URL_BYTES of it (a 414's can be longer). */
function loggedUrl(url: string): string {
  const redacted = redactTokenParameter(url);
  return redacted.length > MAX_URL_BYTES ? `${redacted.slice(0, MAX_URL_BYTES)}…` : redacted;
}
