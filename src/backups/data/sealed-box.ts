import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM with a random 96-bit nonce, in one self-describing envelope:
 *
 *   "VPB1" (4) | key id (16) | nonce (12) | ciphertext | tag (16)
 *
 * The key id says which key sealed it (an account's data key, or the master key for wrapped data
 * keys). The additional data (AAD) binds the envelope to what it is — a chunk to its id, a manifest to
 * its backup — so a valid envelope moved to another key fails to open.
 */
const MAGIC = Buffer.from('VPB1', 'latin1');
export const KEY_ID_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + KEY_ID_BYTES + NONCE_BYTES;
/** What sealing adds to a plaintext's length. */
export const SEAL_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES;

export interface SealingKey {
  readonly id: Buffer;
  readonly key: Buffer;
}

export function seal(key: SealingKey, plaintext: Buffer, aad: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = cipher.update(plaintext);
  const final = cipher.final();
  return Buffer.concat([MAGIC, key.id, nonce, body, final, cipher.getAuthTag()]);
}

/** The key id an envelope names, or null when it is not an envelope at all. */
export function sealedKeyId(envelope: Buffer): Buffer | null {
  if (envelope.length < SEAL_OVERHEAD_BYTES || !envelope.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  return envelope.subarray(MAGIC.length, MAGIC.length + KEY_ID_BYTES);
}

/** The plaintext, or null when the envelope is damaged, not sealed by `key`, or sealed for other AAD. */
export function open(key: SealingKey, envelope: Buffer, aad: string): Buffer | null {
  const id = sealedKeyId(envelope);
  if (!id || !id.equals(key.id)) return null;
  const nonce = envelope.subarray(MAGIC.length + KEY_ID_BYTES, HEADER_BYTES);
  const tag = envelope.subarray(envelope.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([
      decipher.update(envelope.subarray(HEADER_BYTES, envelope.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    return null;
  }
}
