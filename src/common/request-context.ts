import { randomFillSync } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { IncomingMessage } from 'node:http';

const ACCEPTABLE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts a well-formed `X-Request-Id` from the caller or makes one; echoes it on every response. */
export function requestIdMiddleware(req: Request, res: Response, next: NextFunction): void {
  res.setHeader('X-Request-Id', assignRequestId(req));
  next();
}

/** Gives the request its id (see requestIdFor), read back by requestIdOf (logs, problems, audit). */
export function assignRequestId(req: IncomingMessage): string {
  const id = requestIdFor(req);
  (req as { id?: unknown }).id = id;
  return id;
}

/** The caller's well-formed `X-Request-Id`, or a new one. */
function requestIdFor(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && ACCEPTABLE_REQUEST_ID.test(given) ? given : newRequestId();
}

/** Random bytes for ID_BATCH request ids, refilled when used up (as crypto.randomUUID keeps its own). */
const ID_BATCH = 128;
const idEntropy = Buffer.alloc(16 * ID_BATCH);
let idsLeft = 0;
const idText = Buffer.alloc(36);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/**
 * A random (version 4) UUID, as crypto.randomUUID makes them, written as text into a scratch buffer and
 * read out as one string: randomUUID's serialisation builds it from some twenty partial strings, and
 * every request without an id of its own needs one.
 */
export function newRequestId(): string {
  if (idsLeft === 0) {
    randomFillSync(idEntropy);
    idsLeft = ID_BATCH;
  }
  const from = 16 * --idsLeft;
  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) idText[at++] = 0x2d; // '-'
    let byte = idEntropy[from + i];
    if (i === 6)
      byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // RFC 4122 variant
    idText[at++] = HEX_DIGITS[byte >> 4];
    idText[at++] = HEX_DIGITS[byte & 0x0f];
  }
  return idText.toString('latin1', 0, 36);
}

export function requestIdOf(req: Request): string {
  const id = (req as { id?: unknown }).id;
  return typeof id === 'string' ? id : 'unknown';
}

/**
 * Published paths end with a slash; the same path without it works too. Routes are declared without
 * it, and this strips the trailing slashes before routing (`req.originalUrl` keeps what the client sent).
 */
export function trailingSlashMiddleware(req: Request, _res: Response, next: NextFunction): void {
  const q = req.url.indexOf('?');
  const path = q === -1 ? req.url : req.url.slice(0, q);
  const stripped = withoutTrailingSlashes(path);
  if (stripped !== path) req.url = stripped + (q === -1 ? '' : req.url.slice(q));
  next();
}

/**
 * A path without its trailing slashes (a lone `/` stays), by a scan from the end: linear in the run
 * of slashes, where a `/\/+$/` replace costs the square of it.
 */
export function withoutTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path.charCodeAt(end - 1) === 0x2f) end--;
  return end === path.length ? path : path.slice(0, end);
}
