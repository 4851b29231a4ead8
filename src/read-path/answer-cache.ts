import type { CapturedAnswer } from './hot-read-state';

interface Entry {
  version: string;
  answer: CapturedAnswer;
  bytes: number;
}

/**
 * Keys longer than this are not cached. A real poll's key (account, scopes, host, language, a URL with
 * the list's few parameters) is well under it; a longer one is padding, which would otherwise hold
 * up to a request line's 16 kB per entry.
 */
export const MAX_KEY_CHARS = 512;

/**
 * What V8 and Node spend around the data of an entry (64-bit, no pointer compression, as Node ships):
 * a string's header, a header's slots in the 200's and the 304's header lists, and the fixed part of an
 * entry — the Map's slot, the Entry and CapturedAnswer objects, the two header lists and their slots of
 * own values, the Buffer and ArrayBuffer objects of the body and its malloc'd store, the ETag and route
 * strings. Measured against the retained heap and Buffer memory in
 * test/e2e/answer-cache-memory.e2e-spec.ts; rounded up.
 */
const STRING_OVERHEAD_BYTES = 24;
const HEADER_OVERHEAD_BYTES = 64;
const ENTRY_OVERHEAD_BYTES = 768;

/** Bytes a string holds; two per character unless every one fits in Latin-1 (V8's one-byte strings). */
function stringBytes(s: string): number {
  // eslint-disable-next-line no-control-regex
  return STRING_OVERHEAD_BYTES + (/^[\u0000-\u00ff]*$/.test(s) ? s.length : 2 * s.length);
}

/** What an entry costs in memory: its key and version, every header name and value, the body. */
export function entryBytes(key: string, version: string, answer: CapturedAnswer): number {
  let bytes = ENTRY_OVERHEAD_BYTES + stringBytes(key) + stringBytes(version);
  bytes += stringBytes(answer.etag ?? '') + stringBytes(answer.route) + answer.body.length;
  // The 304's list holds the same strings as the 200's (less two headers): they are counted once.
  const flat = answer.ok.flat;
  for (let i = 0; i < flat.length; i += 2)
    bytes += HEADER_OVERHEAD_BYTES + stringBytes(flat[i]) + stringBytes(flat[i + 1]);
  return bytes;
}

/**
 * Answers of the polled GET endpoints, each stored with the listing version of its account at the
 * moment the answer was computed (read before the data). An answer is served again only to a request
 * that sees the very same version, i.e. when nothing it shows has changed since. Bounded by the bytes
 * it holds (keys, headers and bodies: `entryBytes`); least recently used entries go first.
 */
export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** The entry last in the Map's order (the most recently used), if any. */
  private newest: Entry | null = null;

  constructor(private readonly maxBytes: number) {}

  get(key: string, version: string): CapturedAnswer | null {
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.version !== version) {
      this.remove(key, e);
      return null;
    }
    // Most recently used last; a poll repeating the last answer finds it there already (no Map churn).
    if (e !== this.newest) {
      this.entries.delete(key);
      this.entries.set(key, e);
      this.newest = e;
    }
    return e.answer;
  }

  set(key: string, version: string, answer: CapturedAnswer): void {
    if (key.length > MAX_KEY_CHARS) return;
    const bytes = entryBytes(key, version, answer);
    if (bytes > this.maxBytes / 4) return; // one huge page must not flush everything else
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    // A body made by Buffer.from(string) is a slice of an 8 kB pool shared with other allocations;
    // kept, the slice would keep the whole pool alive. The cache keeps a copy of exactly its size.
    const body = ownCopy(answer.body);
    const stored = body === answer.body ? answer : { ...answer, body };
    const entry = { version, answer: stored, bytes };
    this.entries.set(key, entry);
    this.newest = entry;
    this.bytes += bytes;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.remove(k, e);
    }
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    if (e === this.newest) this.newest = null;
    this.bytes -= e.bytes;
  }
}

function ownCopy(body: Buffer): Buffer {
  if (body.byteOffset === 0 && body.buffer.byteLength === body.length) return body;
  const copy = Buffer.allocUnsafeSlow(body.length);
  body.copy(copy);
  return copy;
}
