import { createHash } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { hotReadStateOf } from '../read-path/hot-read-state';
import type { RouteTable } from './route-table';

/** A weak validator over the exact response bytes: `W/"<length hex>-<sha1 base64url, 27 chars>"`. */
export function weakEtag(body: string | Buffer): string {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const hash = createHash('sha1').update(buf).digest('base64url').slice(0, 27);
  return `W/"${buf.length.toString(16)}-${hash}"`;
}

/**
 * The headers of an answer that carries an ETag: it is one account's (authenticated), so no shared
 * cache may keep it, and a private cache must revalidate it (If-None-Match) before reuse; it differs by
 * token and by language. One helper for both pipelines.
 */
export const CONDITIONAL_ANSWER_HEADERS = {
  'Cache-Control': 'private, no-cache',
  Vary: 'Authorization, Accept-Language',
} as const;

export function setEtagHeaders(res: { setHeader(name: string, value: string): unknown }, tag: string): void {
  res.setHeader('ETag', tag);
  for (const [name, value] of Object.entries(CONDITIONAL_ANSWER_HEADERS)) res.setHeader(name, value);
}

/** RFC 9110 weak comparison of an If-None-Match header against our tag (`*` matches any). */
export function ifNoneMatchHits(header: string | undefined, tag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const opaque = tag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === opaque);
}

/**
 * What the pipeline does with a GET (or HEAD) answer's bytes. On the routes that declare @ListingRead()
 * (the snapshot list and detail): ETag / If-None-Match, so pollers that send back the tag get `304 Not
 * Modified` with no body when nothing they would see has changed; the tag is computed over the body the
 * handler produced (so it changes with any field, the count or the links), only for 200 answers. On
 * every GET: a 200 answer the front of the pipeline asked for is handed to it (src/read-path: shared
 * with identical requests that waited for it, or cached). Errors are untouched.
 */
export function answerMiddleware(routes: RouteTable) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      next();
      return;
    }
    const conditional = routes.match('GET', req.url)?.listing != null;
    const capture = hotReadStateOf(req)?.capture;
    if (!conditional && !capture) {
      next();
      return;
    }
    const send = res.send;
    res.send = function sendAnswer(this: Response, body?: unknown) {
      if (this.statusCode === 200 && (typeof body === 'string' || Buffer.isBuffer(body))) {
        const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
        const tag = conditional ? weakEtag(buf) : null;
        if (tag !== null) setEtagHeaders(this, tag);
        capture?.(this, buf, tag);
        if (tag !== null && ifNoneMatchHits(req.headers['if-none-match'], tag)) {
          this.statusCode = 304;
          this.removeHeader('Content-Type');
          this.removeHeader('Content-Length');
          this.end();
          return this;
        }
      }
      return send.call(this, body);
    };
    next();
  };
}
