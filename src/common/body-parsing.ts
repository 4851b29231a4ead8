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

/** Most values one array or object of a body may hold (no endpoint reads more than a handful). */
export const MAX_JSON_VALUES_PER_CONTAINER = 256;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPENERS = new Set([0x5b, 0x7b]); // [ {
const CLOSERS = new Set([0x5d, 0x7d]); // ] }

/**
 * Why a JSON text is too deep or too wide, or null: one pass over its bytes before JSON.parse builds
 * anything, so a body's cost stays linear in its size and bounded in what it makes. Malformed text
 * is left to JSON.parse. (`"`, `\`, brackets and commas are ASCII: never inside a UTF-8 sequence.)
 */
export function jsonShapeProblem(text: Uint8Array): string | null {
  const commas: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (OPENERS.has(c)) {
      if (commas.length === MAX_JSON_DEPTH) return `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
      commas.push(0);
    } else if (CLOSERS.has(c)) commas.pop();
    else if (c === COMMA && commas.length > 0) {
      if (++commas[commas.length - 1] >= MAX_JSON_VALUES_PER_CONTAINER)
        return `JSON array or object with more than ${MAX_JSON_VALUES_PER_CONTAINER} values`;
    }
  }
  return null;
}

/** Longest Content-Type header read (a JSON one is under 40 characters). */
export const MAX_CONTENT_TYPE_LENGTH = 256;

/** Whether a Content-Type may be read as JSON text: short, and UTF-8 (RFC 8259 §8.1) if it names a charset. */
function acceptableContentType(header: string | undefined): boolean {
  if (header === undefined) return true;
  if (header.length > MAX_CONTENT_TYPE_LENGTH) return false;
  const lower = header.toLowerCase();
  const at = lower.indexOf('charset=');
  if (at === -1) return true;
  const end = lower.indexOf(';', at);
  const charset = lower
    .slice(at + 'charset='.length, end === -1 ? undefined : end)
    .trim()
    .replace(/^"(.*)"$/, '$1');
  return charset === 'utf-8' || charset === 'utf8';
}

function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * JSON bodies only, bounded in size. Errors become problem details here, because body parsing runs
 * before Nest's exception filters can see a request.
 * - a non-empty body that is not JSON, not UTF-8, or whose Content-Type is over
 *   MAX_CONTENT_TYPE_LENGTH → 415 `unsupported_media_type`
 * - deeper than MAX_JSON_DEPTH or wider than MAX_JSON_VALUES_PER_CONTAINER → 400 (checked on the bytes)
 * - malformed JSON → 400 `malformed_json`; too large → 413 `payload_too_large`
 * Requests without a body (the published restore and delete examples send none) pass whatever their
 * Content-Type.
 */
export function jsonBodyParser(limitBytes: number): RequestHandler {
  const parse = express.json({
    limit: limitBytes,
    strict: true,
    type: JSON_TYPES,
    verify: (_req, _res, raw) => {
      const problem = jsonShapeProblem(raw);
      if (problem) throw problems.validation([{ field: 'body', message: problem }]);
    },
  });
  return (req: Request, res: Response, next: NextFunction) => {
    if (hasBody(req)) {
      const readable =
        acceptableContentType(req.headers['content-type']) &&
        (['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(req.method) || req.is(JSON_TYPES));
      if (!readable) {
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
      next();
    });
  };
}
