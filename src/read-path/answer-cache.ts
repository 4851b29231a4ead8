import type { CapturedAnswer } from './hot-read-state';

interface Entry {
  version: string;
  answer: CapturedAnswer;
  bytes: number;
}

/** Header names and values, and the bookkeeping of a Map entry: a fair estimate of an entry's overhead. */
const ENTRY_OVERHEAD_BYTES = 1024;

/**
 * Answers of the polled GET endpoints, each stored with the listing version of its account at the
 * moment the answer was computed (read before the data). An answer is served again only to a request
 * that sees the very same version, i.e. when nothing it shows has changed since. Bounded by bytes;
 * least recently used entries go first.
 */
export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string, version: string): CapturedAnswer | null {
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.version !== version) {
      this.remove(key, e);
      return null;
    }
    // Most recently used last.
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.answer;
  }

  set(key: string, version: string, answer: CapturedAnswer): void {
    const bytes = answer.body.length + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.maxBytes / 4) return; // one huge page must not flush everything else
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    this.entries.set(key, { version, answer, bytes });
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
    this.bytes -= e.bytes;
  }
}
