import { BackupStoreError } from './backup-store';

/** The key rule of backup-store.ts, in one place for every store (and the store prefixes of configuration). */
export const MAX_KEY_BYTES = 512;
const SEGMENT = /^[a-z0-9._-]+$/;

/** Why `key` is not a valid store key, or null. */
export function keyProblem(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'a key must be a non-empty string';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `a key is at most ${MAX_KEY_BYTES} bytes`;
  for (const segment of key.split('/')) {
    if (!SEGMENT.test(segment)) return 'a key is "/"-separated segments of a-z, 0-9, ".", "_" and "-"';
    if (segment === '.' || segment === '..') return 'a key segment may not be "." or ".."';
  }
  return null;
}

/** A list prefix: empty, or a key, or a key followed by "/" (its last segment may be partial). */
export function prefixProblem(prefix: string): string | null {
  if (prefix === '') return null;
  return keyProblem(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

export function assertValidKey(key: string): void {
  const problem = keyProblem(key);
  if (problem) throw new BackupStoreError('invalid_key', problem);
}

export function assertValidPrefix(prefix: string): void {
  const problem = prefixProblem(prefix);
  if (problem) throw new BackupStoreError('invalid_key', problem);
}

/** A name that can be no key's segment (keys have no "~"): the stores' own files never show as keys. */
export const isKeySegment = (name: string): boolean => SEGMENT.test(name) && name !== '.' && name !== '..';

/** Reject with `cancelled` when the caller's signal has fired. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BackupStoreError('cancelled');
}
