import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';

/**
 * Which proxies' `X-Forwarded-*` headers are believed (express 'trust proxy'): none, the nearest
 * `hops` (the client IP is then the hops-th address from the right of X-Forwarded-For), or those whose
 * address is in one of the CIDRs. Never "all": the left-most X-Forwarded-For is whatever the client wrote.
 */
export type TrustProxy = false | number | string[];

/** express's names for the private ranges, accepted besides CIDRs. */
const NAMED_RANGES = ['loopback', 'linklocal', 'uniquelocal'];
const MAX_HOPS = 16;

function validCidr(entry: string): boolean {
  if (NAMED_RANGES.includes(entry)) return true;
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return false;
  if (slash === -1) return true;
  const prefix = entry.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= max;
}

/** TRUST_PROXY's value, or the sentence saying why it is refused. */
export function parseTrustProxy(raw: string | undefined): { value: TrustProxy } | { problem: string } {
  const v = raw?.trim() ?? '';
  if (v === '' || ['false', 'no', '0'].includes(v.toLowerCase())) return { value: false };
  if (['true', 'yes'].includes(v.toLowerCase())) {
    return {
      problem:
        'TRUST_PROXY=true would take the client IP from the left-most X-Forwarded-For, which any client can forge; ' +
        'set the number of proxies in front of the API (e.g. 1 behind one ingress) or their CIDRs',
    };
  }
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    return hops <= MAX_HOPS
      ? { value: hops }
      : { problem: `TRUST_PROXY must be a hop count from 0 to ${MAX_HOPS}, got "${v}"` };
  }
  const entries = v.split(',').map((e) => e.trim());
  const bad = entries.filter((e) => !validCidr(e));
  if (bad.length)
    return {
      problem: `TRUST_PROXY must be false, a hop count, or a comma-separated list of CIDRs; not a CIDR: "${bad.join('", "')}"`,
    };
  return { value: entries };
}

/**
 * TRUST_PROXY as the function express and proxy-addr take (`app.set('trust proxy', fn)`): the one
 * definition of which X-Forwarded-For hops are believed, for `req.ip` and for clientAddressOf alike.
 */
export function trustFunctionOf(trust: TrustProxy): (address: string, hop: number) => boolean {
  if (trust === false) return () => false;
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return proxyaddr.compile(trust);
}

/** The client address of a request (what express's `req.ip` gives), also for a bare IncomingMessage. */
export function clientAddressOf(
  req: IncomingMessage,
  trust: (address: string, hop: number) => boolean,
): string {
  return proxyaddr(req, trust);
}
