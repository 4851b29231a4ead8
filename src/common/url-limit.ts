import type { NextFunction, Request, Response } from 'express';
import { ProblemException } from './problem';
import { sendProblem } from './problem-details.filter';

/**
 * Longest request target (path and query, in bytes) either pipeline reads. Every URL this API
 * publishes or links to is far shorter; past this bound the answer is 414 before any router, regex
 * or parser sees the URL, so the cost of reading one stays small whatever a client sends.
 */
export const MAX_URL_BYTES = 4096;

/** Whether a raw request target is past MAX_URL_BYTES (Node keeps it as one char per byte). */
export function urlTooLong(url: string | undefined): boolean {
  return (url?.length ?? 0) > MAX_URL_BYTES;
}

export const uriTooLong = () =>
  new ProblemException({ status: 414, code: 'uri_too_long', params: { limit: MAX_URL_BYTES } });

/** The Nest pipeline's first check: a URL longer than MAX_URL_BYTES is 414 before anything reads it. */
export function urlLimitMiddleware(req: Request, res: Response, next: NextFunction): void {
  if (urlTooLong(req.url)) {
    sendProblem(req, res, uriTooLong());
    return;
  }
  next();
}
