import helmet from 'helmet';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { securityHeaders } from './security-headers';

/** The raw header names and values a middleware leaves on a real response to `url`. */
function headersAfter(
  mw: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
  url: string,
): [string, string][] {
  const req = new IncomingMessage(new Socket());
  req.url = url;
  req.method = 'GET';
  const res = new ServerResponse(req);
  let called = false;
  mw(req, res, () => (called = true));
  expect(called).toBe(true);
  return res.getHeaderNames().map((n) => [n, String(res.getHeader(n))]);
}

describe('security headers computed once', () => {
  it.each(['/api/v1/snapshots/', '/healthz'])('%s: the names, values and order helmet() sets', (url) => {
    const ours = headersAfter(securityHeaders(), url);
    const theirs = headersAfter(helmet(), url);
    expect(ours).toEqual(theirs);
    expect(ours.length).toBeGreaterThan(10);
  });

  it('the API docs page: the same without a Content-Security-Policy', () => {
    const ours = headersAfter(securityHeaders(), '/api/docs');
    const theirs = headersAfter(helmet({ contentSecurityPolicy: false }), '/api/docs');
    expect(ours).toEqual(theirs);
    expect(ours.map(([n]) => n)).not.toContain('content-security-policy');
  });
});
