import { createHash } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { hotReadStateOf } from '../read-path/hot-read-state';

/** The snapshot list and detail (after the trailing-slash middleware has removed the slash). */
const CONDITIONAL_PATHS = /^\/api\/v1\/snapshots(?:\/[^/?]+)?(?:\?|$)/;

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
 * ETag / If-None-Match for GET (and HEAD) of the snapshot list and detail: pollers that send back the
 * tag get `304 Not Modified` with no body when nothing they would see has changed. The tag is computed
 * over the body the handler produced (so it changes with any field, the count or the links), only for
 * 200 answers; errors and every other route are untouched.
 */
export function etagMiddleware(req: Request, res: Response, next: NextFunction): void {
  if ((req.method !== 'GET' && req.method !== 'HEAD') || !CONDITIONAL_PATHS.test(req.url)) {
    next();
    return;
  }
  const send = res.send;
  res.send = function sendWithEtag(this: Response, body?: unknown) {
    if (this.statusCode === 200 && (typeof body === 'string' || Buffer.isBuffer(body))) {
      const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
      const tag = weakEtag(buf);
      setEtagHeaders(this, tag);
      // The hot read path shares this answer with identical requests that waited for it.
      hotReadStateOf(req)?.capture?.(this, buf, tag);
      if (ifNoneMatchHits(req.headers['if-none-match'], tag)) {
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
}
