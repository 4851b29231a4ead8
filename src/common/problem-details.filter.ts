import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { languageOf } from './messages';
import { ProblemCode, ProblemException } from './problem';
import { requestIdOf } from './request-context';

const CODE_BY_STATUS: Record<number, ProblemCode> = {
  400: 'validation_failed',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'service_unavailable',
};

const DB_UNREACHABLE_CODES = new Set([
  'P1001',
  'P1002',
  'P1008',
  'P1017',
  'P2024',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  '57P01',
  '57P03',
]);
const DB_UNREACHABLE_TEXT =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|Can't reach database|Connection terminated|connection timeout|timeout exceeded when trying to connect|the database system is (starting up|shutting down)|terminating connection|Client has encountered a connection error|DatabaseNotReachable/i;

/** Whether an error means PostgreSQL could not be reached (then the answer is 503, not 500). */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const x = e as { name?: string; code?: unknown; message?: unknown; cause?: unknown };
    if (typeof x.code === 'string' && DB_UNREACHABLE_CODES.has(x.code)) return true;
    if (x.name === 'PrismaClientInitializationError') return true;
    if (typeof x.message === 'string' && DB_UNREACHABLE_TEXT.test(x.message)) return true;
    e = x.cause;
  }
  return false;
}

/**
 * Prisma's transaction manager (code P2028) when an interactive transaction got no pool connection within
 * `maxWait` ("Unable to start a transaction in the given time", `PrismaClientKnownRequestError`, thrown
 * once the connection finally arrives, then rolled back), or was rolled back at its `timeout` and its next
 * query refused ("… cannot be executed on an expired transaction"). Other P2028 errors (a transaction not
 * found, already closed) are bugs and stay 500.
 */
const TX_TIMEOUT_TEXT =
  /Unable to start a transaction in the given time|cannot be executed on an expired transaction/;
/**
 * Waiting for a pool connection timed out: node-postgres' pool (`connectionTimeoutMillis`, the error
 * reaches us as a plain `Error`, also from Prisma's adapter) or the Rust engine's pool (P2024).
 */
const POOL_TIMEOUT_TEXT = /timeout exceeded when trying to connect|Timed out fetching a new connection/i;

/**
 * Whether an error means the database had no connection for us in time: the pool is saturated (load),
 * not broken. Nothing was done (the transaction never started or was rolled back), so a retry is safe.
 */
export function isDatabaseBusy(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const x = e as { code?: unknown; message?: unknown; cause?: unknown };
    const message = typeof x.message === 'string' ? x.message : '';
    if (x.code === 'P2028' && TX_TIMEOUT_TEXT.test(message)) return true;
    if (x.code === 'P2024' || POOL_TIMEOUT_TEXT.test(message)) return true;
    e = x.cause;
  }
  return false;
}

/** Turns any error into an RFC 9457 problem-details problem with a stable `code`. */
export function toProblem(err: unknown, bodyLimitBytes?: number): ProblemException | null {
  if (err instanceof ProblemException) return err;
  // Saturated pool first: its pg-pool message also matches the "unreachable" patterns.
  if (isDatabaseBusy(err)) {
    return new ProblemException({
      status: 503,
      code: 'service_unavailable',
      params: { what: 'The database' },
      headers: { 'Retry-After': '1' },
    });
  }
  if (isDatabaseUnavailable(err)) {
    return new ProblemException({
      status: 503,
      code: 'service_unavailable',
      params: { what: 'The database' },
      headers: { 'Retry-After': '5' },
    });
  }
  const bodyErrorType = (err as { type?: unknown } | null)?.type;
  if (bodyErrorType === 'entity.parse.failed')
    return new ProblemException({ status: 400, code: 'malformed_json' });
  if (bodyErrorType === 'entity.too.large') {
    return new ProblemException({
      status: 413,
      code: 'payload_too_large',
      params: { limit: bodyLimitBytes },
    });
  }
  if (bodyErrorType === 'encoding.unsupported' || bodyErrorType === 'charset.unsupported') {
    return new ProblemException({ status: 415, code: 'unsupported_media_type' });
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = CODE_BY_STATUS[status];
    if (code) return new ProblemException({ status, code });
  }
  return null;
}

export function sendProblem(req: Request, res: Response, problem: ProblemException): void {
  const body = problem.render(languageOf(req.headers['accept-language']), requestIdOf(req));
  for (const [k, v] of Object.entries(problem.spec.headers ?? {})) res.setHeader(k, v);
  res.status(body.status).type('application/problem+json').send(JSON.stringify(body));
}

@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemDetails');

  constructor(private readonly bodyLimitBytes?: number) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    let problem = toProblem(exception, this.bodyLimitBytes);
    if (!problem) {
      this.logger.error(
        { err: exception, requestId: requestIdOf(req) },
        exception instanceof Error ? exception.stack : String(exception),
      );
      problem = new ProblemException({ status: 500, code: 'internal_error' });
    }
    if (res.headersSent) return;
    sendProblem(req, res, problem);
  }
}
