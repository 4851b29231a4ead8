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

/**
 * The cipher is fed this much at a time and each piece's output copied into the one envelope. Node's
 * cipher allocates a fresh buffer per `update`: for a whole 4 MiB chunk that is memory the allocator
 * maps, the kernel zeroes and the process faults in on every call (then copied once more into the
 * envelope), which cost 3–5× the cipher itself. Pieces below glibc's default mmap threshold (128 KiB)
 * come from reused heap memory instead.
 */
const PIECE_BYTES = 64 * 1024;

/**
 * Copies a cipher's output piece into `out` at `at` and frees the piece's memory at once: left to the
 * garbage collector, the dead pieces of the chunks sealed between two collections (V8 waits for tens
 * of MiB of such memory) grew a backup's RSS by ~90 MB, measured sealing 2 GiB. Detaching the piece's
 * own ArrayBuffer (`transfer(0)`) releases its memory now; a piece that shares memory is left alone.
 */
function copyAndFree(piece: Buffer, out: Buffer, at: number): number {
  const n = piece.copy(out, at);
  const memory = piece.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (piece.byteOffset === 0 && memory.byteLength === piece.length && memory.transfer) memory.transfer(0);
  return n;
}

/**
 * The envelope of `plaintext`. With `into` (at least `plaintext.length + SEAL_OVERHEAD_BYTES` long)
 * it is written there and the start of `into` that holds it returned: a caller sealing many chunks
 * reuses one buffer.
 */
export function seal(key: SealingKey, plaintext: Buffer, aad: string, into?: Buffer): Buffer {
  const length = plaintext.length + SEAL_OVERHEAD_BYTES;
  if (into && into.length < length) throw new RangeError(`seal: ${into.length} bytes, ${length} needed`);
  const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  MAGIC.copy(out, 0);
  key.id.copy(out, MAGIC.length);
  nonce.copy(out, MAGIC.length + KEY_ID_BYTES);
  let at = HEADER_BYTES;
  for (let from = 0; from < plaintext.length; from += PIECE_BYTES) {
    at += copyAndFree(cipher.update(plaintext.subarray(from, from + PIECE_BYTES)), out, at);
  }
  at += copyAndFree(cipher.final(), out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/**
 * `seal` of the first `length` bytes of `buffer` into `buffer` itself (at least `length +
 * SEAL_OVERHEAD_BYTES` long): the envelope replaces the plaintext from the buffer's start, and the start
 * of `buffer` that holds it is returned. A writer then needs one chunk-sized buffer per chunk in flight,
 * not two. Each ciphertext byte lands HEADER_BYTES after its plaintext byte, so the plaintext bytes a
 * piece's output is about to cover are set aside first and fed from there.
 */
export function sealInPlace(key: SealingKey, buffer: Buffer, length: number, aad: string): Buffer {
  const total = length + SEAL_OVERHEAD_BYTES;
  if (buffer.length < total) throw new RangeError(`sealInPlace: ${buffer.length} bytes, ${total} needed`);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  let ahead = Buffer.from(buffer.subarray(0, Math.min(HEADER_BYTES, length)));
  MAGIC.copy(buffer, 0);
  key.id.copy(buffer, MAGIC.length);
  nonce.copy(buffer, MAGIC.length + KEY_ID_BYTES);
  let at = HEADER_BYTES;
  for (let from = 0; from < length; from += PIECE_BYTES) {
    const to = Math.min(length, from + PIECE_BYTES);
    // The piece's first bytes were set aside (their place may hold ciphertext already), the rest is
    // still in place; both are encrypted before anything of this piece is written.
    const head = cipher.update(ahead);
    const rest = cipher.update(buffer.subarray(from + ahead.length, to));
    // Output so far is at most the input so far: these writes end by `to + HEADER_BYTES`.
    ahead = Buffer.from(buffer.subarray(to, Math.min(length, to + HEADER_BYTES)));
    at += copyAndFree(head, buffer, at);
    at += copyAndFree(rest, buffer, at);
  }
  at += copyAndFree(cipher.final(), buffer, at);
  cipher.getAuthTag().copy(buffer, at);
  return buffer.subarray(0, total);
}

/** The key id an envelope names, or null when it is not an envelope at all. */
export function sealedKeyId(envelope: Buffer): Buffer | null {
  if (envelope.length < SEAL_OVERHEAD_BYTES || !envelope.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  return envelope.subarray(MAGIC.length, MAGIC.length + KEY_ID_BYTES);
}

/**
 * The plaintext, or null when the envelope is damaged, not sealed by `key`, or sealed for other AAD.
 * With `into` (at least the plaintext's length) it is written there and the start of `into` that holds
 * it returned, as `seal` does; `into` may be the memory the envelope itself starts in (each plaintext
 * byte lands before its ciphertext byte, which was decrypted already). After a null, what `into` holds
 * is not to be used.
 */
export function open(key: SealingKey, envelope: Buffer, aad: string, into?: Buffer): Buffer | null {
  const id = sealedKeyId(envelope);
  if (!id || !id.equals(key.id)) return null;
  const nonce = envelope.subarray(MAGIC.length + KEY_ID_BYTES, HEADER_BYTES);
  const tag = envelope.subarray(envelope.length - TAG_BYTES);
  const length = envelope.length - SEAL_OVERHEAD_BYTES;
  if (into && into.length < length) throw new RangeError(`open: ${into.length} bytes, ${length} needed`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(tag);
    // In pieces into one buffer, as `seal` does, for the same reason.
    const body = envelope.subarray(HEADER_BYTES, envelope.length - TAG_BYTES);
    const out = into ?? Buffer.allocUnsafe(body.length);
    let at = 0;
    for (let from = 0; from < body.length; from += PIECE_BYTES) {
      at += copyAndFree(decipher.update(body.subarray(from, from + PIECE_BYTES)), out, at);
    }
    at += copyAndFree(decipher.final(), out, at);
    return out.subarray(0, at);
  } catch {
    return null;
  }
}
