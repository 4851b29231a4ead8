import { hash, randomBytes } from 'node:crypto';

/**
 * API token format: `vps_` + 40 base62 characters (≈238 bits of randomness). The first 12 characters
 * (`vps_` + 8) are its prefix, stored and shown so people can tell tokens apart; the whole token is
 * stored only as its SHA-256 (a slow hash adds nothing for random tokens of this entropy).
 */
export const TOKEN_PREFIX = 'vps_';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 40;
export const TOKEN_SHAPE = new RegExp(`^${TOKEN_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH}}$`);

export function generateToken(): string {
  let out = '';
  while (out.length < RANDOM_LENGTH) {
    for (const byte of randomBytes(64)) {
      // 248 = 4 * 62: rejection sampling keeps every character equally likely.
      if (byte < 248 && out.length < RANDOM_LENGTH) out += ALPHABET[byte % 62];
    }
  }
  return TOKEN_PREFIX + out;
}

export function looksLikeToken(token: string): boolean {
  return TOKEN_SHAPE.test(token);
}

export function hashToken(token: string): string {
  // The one-shot form: no Hash object per call (every authenticated request hashes its token).
  return hash('sha256', token, 'hex');
}

export function displayPrefix(token: string): string {
  return token.slice(0, TOKEN_PREFIX.length + 8);
}
