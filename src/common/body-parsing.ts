import express, { NextFunction, Request, RequestHandler, Response } from 'express';
import { toProblem, sendProblem } from './problem-details.filter';
import { ProblemException } from './problem';

const JSON_TYPES = ['application/json', 'application/*+json'];

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
      next();
    });
  };
}
