import express, { NextFunction, Request, RequestHandler, Response } from 'express';
import { toProblem, sendProblem } from './problem-details.filter';
import { ProblemException, problems } from './problem';

const JSON_TYPES = ['application/json', 'application/*+json'];
/** Deepest nesting of objects/arrays accepted in a body (no endpoint needs more than 2). */
export const MAX_JSON_DEPTH = 16;

/** Whether a parsed body carries a `__proto__` member anywhere (refused: never a prototype to merge). */
export function hasProtoKey(value: unknown, budget = MAX_JSON_DEPTH + 1): boolean {
  if (value === null || typeof value !== 'object' || budget <= 0) return false;
  if (Object.prototype.hasOwnProperty.call(value, '__proto__')) return true;
  return Object.values(value as Record<string, unknown>).some((v) => hasProtoKey(v, budget - 1));
}

export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH + 1): number {
  if (value === null || typeof value !== 'object') return 0;
  if (limit <= 0) return 1;
  let deepest = 0;
  for (const v of Object.values(value as Record<string, unknown>)) {
    deepest = Math.max(deepest, jsonDepth(v, limit - 1));
    if (deepest >= limit) break;
  }
  return 1 + deepest;
}

function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * JSON bodies only, bounded in size. Errors become problem details here, because body parsing runs
 * before Nest's exception filters can see a request.
 * - a non-empty body that is not JSON → 415 `unsupported_media_type`
 * - malformed JSON → 400 `malformed_json`; too large → 413 `payload_too_large`
 * Requests without a body (the published restore and delete examples send none) pass whatever their
 * Content-Type.
 */
export function jsonBodyParser(limitBytes: number): RequestHandler {
  const parse = express.json({ limit: limitBytes, strict: true, type: JSON_TYPES });
  return (req: Request, res: Response, next: NextFunction) => {
    if (hasBody(req) && !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(req.method)) {
      if (!req.is(JSON_TYPES)) {
        sendProblem(req, res, new ProblemException({ status: 415, code: 'unsupported_media_type' }));
        return;
      }
    }
    parse(req, res, (err?: unknown) => {
      if (err) {
        const problem =
          toProblem(err, limitBytes) ?? new ProblemException({ status: 400, code: 'malformed_json' });
        sendProblem(req, res, problem);
        return;
      }
      if (hasProtoKey(req.body)) {
        sendProblem(
          req,
          res,
          problems.validation([{ field: '__proto__', message: 'property __proto__ should not exist' }]),
        );
        return;
      }
      if (jsonDepth(req.body) > MAX_JSON_DEPTH) {
        sendProblem(
          req,
          res,
          problems.validation([
            { field: 'body', message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` },
          ]),
        );
        return;
      }
      next();
    });
  };
}
