import helmet from 'helmet';
import type { IncomingMessage, ServerResponse } from 'node:http';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/**
 * The headers a helmet middleware sets, captured once. Our helmet options hold no per-request value
 * (no nonces, no functions), so every answer gets the same names and values in the same order; setting
 * them from this list costs about half of running helmet's twelve middlewares on every request
 * (bench/helmet-once.mjs).
 */
export function helmetHeaders(options?: Parameters<typeof helmet>[0]): [string, string][] {
  const headers: [string, string][] = [];
  const recorder = {
    setHeader: (name: string, value: unknown) => headers.push([name, String(value)]),
    removeHeader: () => undefined,
    getHeader: () => undefined,
  };
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err instanceof Error ? err : new Error(String(err));
  });
  return headers;
}

/** helmet's headers; the interactive API docs page needs its own scripts, so it gets no CSP. */
export function securityHeaders(): Middleware {
  const api = helmetHeaders();
  const docs = helmetHeaders({ contentSecurityPolicy: false });
  return (req, res, next) => {
    for (const [name, value] of (req.url ?? '').startsWith('/api/docs') ? docs : api)
      res.setHeader(name, value);
    next();
  };
}
