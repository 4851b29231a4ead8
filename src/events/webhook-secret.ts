/**
 * Webhook signing secrets and signatures (Standard Webhooks). A secret is `whsec_` and the base64 of 32
 * random bytes; it is shown once, when the endpoint is created, and kept only sealed (AES-256-GCM, see
 * sealed-box.ts) under a key derived from WEBHOOK_SECRET_KEY (HKDF-SHA256), bound
 * to its account: a database dump alone cannot sign, and an envelope copied to another account's
 * endpoint does not open.
 */
import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { KEY_ID_BYTES, open, seal, sealedKeyId, SealingKey } from '../backups/data/sealed-box';

const SECRET_BYTES = 32;
export const SECRET_PREFIX = 'whsec_';
/** What the endpoint shows to recognise its secret: `whsec_` and the first 6 characters. */
export const SECRET_HINT_LENGTH = SECRET_PREFIX.length + 6;

export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** The key that seals webhook secrets, derived from WEBHOOK_SECRET_KEY (never that key itself). */
export function webhookSealingKey(secretKey: Buffer): SealingKey {
  const key = Buffer.from(hkdfSync('sha256', secretKey, Buffer.alloc(0), 'admin-vps webhook secrets', 32));
  const id = createHash('sha256').update('admin-vps webhook secrets key id\0').update(key).digest();
  return { id: id.subarray(0, KEY_ID_BYTES), key };
}

const aad = (accountId: number) => `webhook-secret:${accountId}`;

export function sealSecret(key: SealingKey, accountId: number, secret: string): Buffer {
  return seal(key, Buffer.from(secret, 'utf8'), aad(accountId));
}

/** The secret, or null when the envelope does not open with this key for this account. */
export function openSecret(key: SealingKey, accountId: number, sealed: Buffer): string | null {
  return open(key, sealed, aad(accountId))?.toString('utf8') ?? null;
}

/**
 * The configured sealing keys: the current one (WEBHOOK_SECRET_KEY) seals and opens; the one being
 * rotated away from (WEBHOOK_SECRET_KEY_PREVIOUS) only opens, until `webhooks rotate-secret-key`
 * has re-sealed every secret.
 */
export interface WebhookSealingKeys {
  current: SealingKey | null;
  previous: SealingKey | null;
}

export function webhookSealingKeys(current: Buffer | null, previous: Buffer | null): WebhookSealingKeys {
  return {
    current: current ? webhookSealingKey(current) : null,
    previous: previous ? webhookSealingKey(previous) : null,
  };
}

/** The configured key that sealed `sealed` (the envelope names its key), or null. */
export function sealingKeyOf(keys: WebhookSealingKeys, sealed: Buffer): SealingKey | null {
  const id = sealedKeyId(sealed);
  if (!id) return null;
  for (const k of [keys.current, keys.previous]) if (k?.id.equals(id)) return k;
  return null;
}

/** The secret, opened with whichever configured key sealed it, or null. */
export function openSecretWith(keys: WebhookSealingKeys, accountId: number, sealed: Buffer): string | null {
  const key = sealingKeyOf(keys, sealed);
  return key && openSecret(key, accountId, sealed);
}

/** The three Standard Webhooks headers of one message. */
export function signatureHeaders(secret: string, msgId: string, timestamp: Date, body: string) {
  const seconds = Math.floor(timestamp.getTime() / 1000);
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  const signature = createHmac('sha256', key).update(`${msgId}.${seconds}.${body}`).digest('base64');
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(seconds),
    'webhook-signature': `v1,${signature}`,
  };
}
