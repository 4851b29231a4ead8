import { createHash, timingSafeEqual } from 'node:crypto';

/** The credential a request carries: `Authorization: Bearer <t>`, or Basic with <t> as the password. */
export function credentialOf(authorization: string | undefined): string | null {
  if (!authorization) return null;
  const [scheme, value] = authorization.trim().split(/\s+/, 2);
  if (!value) return null;
  if (/^bearer$/i.test(scheme)) return value;
  if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? null : decoded.slice(colon + 1) || null;
  }
  return null;
}

/** Constant-time comparison of a presented secret with the configured one (via their digests). */
export function matchesSecret(presented: string | null, secret: string | null): boolean {
  if (!presented || !secret) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}
