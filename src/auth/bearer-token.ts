import { unescape } from 'node:querystring';
import type { IncomingMessage } from 'node:http';

/**
 * Where a bearer token may travel: the `Authorization: Bearer <token>` header only. RFC 6750 §2.2 and
 * §2.3 also allow a form field or a URI query parameter named `access_token`; both are refused here,
 * because a URL lands in logs, proxies, browser history and links.
 */
export const ACCESS_TOKEN_PARAMETER = 'access_token';
const SCHEME = 'bearer ';
const REDACTED = '[redacted]';

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive); null for anything else. */
export function bearerTokenOf(header: string | undefined): string | null {
  if (!header || header.length <= SCHEME.length) return null;
  if (header.slice(0, SCHEME.length).toLowerCase() !== SCHEME) return null;
  const token = header.slice(SCHEME.length);
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return null; // one token68, nothing around or inside it
  }
  return token;
}

/** Calls `each(start, end)` for every `name=value` part of the query of a request target. */
function forEachParameter(url: string, each: (start: number, end: number) => boolean | void): void {
  const q = url.indexOf('?');
  if (q === -1) return;
  let start = q + 1;
  while (start <= url.length) {
    let end = url.indexOf('&', start);
    if (end === -1) end = url.length;
    if (each(start, end) === true) return;
    start = end + 1;
  }
}

function isTokenParameter(url: string, start: number, end: number): boolean {
  const eq = url.indexOf('=', start);
  const nameEnd = eq === -1 || eq > end ? end : eq;
  // Cheap length check first: encoded, `access_token` is at most three bytes per character.
  const length = nameEnd - start;
  if (length < ACCESS_TOKEN_PARAMETER.length || length > 3 * ACCESS_TOKEN_PARAMETER.length) return false;
  return unescape(url.slice(start, nameEnd).replace(/\+/g, ' ')) === ACCESS_TOKEN_PARAMETER;
}

/** Whether a request target's query carries `access_token` (however encoded, wherever among the parameters). */
export function hasTokenParameter(url: string): boolean {
  let found = false;
  forEachParameter(url, (start, end) => (found = isTokenParameter(url, start, end)));
  return found;
}

/**
 * The request target with the value of every `access_token` parameter replaced: what goes into logs,
 * the audit log and page links. Linear in the URL's length.
 */
export function redactTokenParameter(url: string): string {
  if (!hasTokenParameter(url)) return url;
  const parts: string[] = [];
  forEachParameter(url, (start, end) => {
    if (!isTokenParameter(url, start, end)) parts.push(url.slice(start, end));
    else {
      const eq = url.indexOf('=', start);
      parts.push(`${url.slice(start, eq === -1 || eq > end ? end : eq)}=${REDACTED}`);
    }
  });
  return `${url.slice(0, url.indexOf('?') + 1)}${parts.join('&')}`;
}

/** Where a request put an `access_token` other than the Authorization header: `query`, `body`, or null. */
export function tokenOutsideHeader(req: IncomingMessage & { body?: unknown }): 'query' | 'body' | null {
  if (hasTokenParameter((req as { originalUrl?: string }).originalUrl ?? req.url ?? '')) return 'query';
  const body = req.body;
  if (
    body !== null &&
    typeof body === 'object' &&
    Object.prototype.hasOwnProperty.call(body, ACCESS_TOKEN_PARAMETER)
  )
    return 'body';
  return null;
}
