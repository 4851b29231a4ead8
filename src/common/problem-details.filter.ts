import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { databaseErrorKind } from '../prisma/database-errors';
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

/** Turns any error into an RFC 9457 problem-details problem with a stable `code`. */
export function toProblem(err: unknown, bodyLimitBytes?: number): ProblemException | null {
  if (err instanceof ProblemException) return err;
  const database = databaseErrorKind(err);
  if (database === 'busy' || database === 'unavailable') {
    // Busy (no pool connection in time): retry soon; unreachable: a little later.
    return new ProblemException({
      status: 503,
      code: 'service_unavailable',
      params: { what: 'The database' },
      headers: { 'Retry-After': database === 'busy' ? '1' : '5' },
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
