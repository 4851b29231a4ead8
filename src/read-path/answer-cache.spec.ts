import { AnswerCache, entryBytes, MAX_KEY_CHARS } from './answer-cache';
import type { CapturedAnswer } from './hot-read-state';

const answer = (bytes: number): CapturedAnswer => ({
  ok: { flat: ['Content-Type', 'application/json', 'Content-Length', String(bytes)], own: [] },
  notModified: { flat: [], own: [] },
  rateHeaders: false,
  body: Buffer.alloc(bytes, 'x'),
  etag: 'W/"1"',
  route: '/api/v1/snapshots',
});

describe('AnswerCache', () => {
  it('serves an answer only for the version it was stored with', () => {
    const c = new AnswerCache(1024 * 1024);
    const a = answer(10);
    c.set('k', '1:5', a);
    expect(c.get('k', '1:5')).toBe(a);
    expect(c.get('k', '1:6')).toBeNull();
    expect(c.get('k', '1:5')).toBeNull(); // a stale entry is dropped, not kept for an old version
  });

  it('stays within its byte budget, dropping the least recently used first', () => {
    const c = new AnswerCache(16 * 1024);
    c.set('a', 'v', answer(2000));
    c.set('b', 'v', answer(2000));
    c.get('a', 'v'); // now b is the least recently used
    // Five entries of ~3 KiB fit in 16 KiB; the sixth pushes out exactly one: b.
    for (let i = 0; i < 4; i++) c.set(`n${i}`, 'v', answer(2000));
    expect(c.size.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(c.get('a', 'v')).not.toBeNull();
    expect(c.get('b', 'v')).toBeNull();
  });

  it('does not let one huge answer push everything else out', () => {
    const c = new AnswerCache(16 * 1024);
    c.set('a', 'v', answer(100));
    c.set('huge', 'v', answer(8 * 1024));
    expect(c.get('huge', 'v')).toBeNull();
    expect(c.get('a', 'v')).not.toBeNull();
  });

  it('counts the key, the version and every header, not only the body', () => {
    const a = answer(100);
    const small = entryBytes('k', 'v', a);
    expect(entryBytes('k'.repeat(400), 'v', a) - small).toBe(399);
    const more = {
      ...a,
      ok: { ...a.ok, flat: [...a.ok.flat, 'X-Pad', 'p'.repeat(1000)] },
    };
    expect(entryBytes('k', 'v', more) - small).toBeGreaterThan(1000);
    // A character beyond Latin-1 makes V8 store the whole string with two bytes a character.
    expect(entryBytes('ŵ'.repeat(100), 'v', a) - entryBytes('w'.repeat(100), 'v', a)).toBe(100);
  });

  it('does not cache under a key longer than MAX_KEY_CHARS', () => {
    const c = new AnswerCache(1024 * 1024);
    c.set('k'.repeat(MAX_KEY_CHARS + 1), 'v', answer(10));
    expect(c.size.entries).toBe(0);
    c.set('k'.repeat(MAX_KEY_CHARS), 'v', answer(10));
    expect(c.size.entries).toBe(1);
  });

  it('keeps a pooled body as a copy of its own, not the 8 kB pool it is a slice of', () => {
    const c = new AnswerCache(1024 * 1024);
    const pooled = Buffer.from('{"count":0}', 'utf8');
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length); // Node's allocation pool
    c.set('k', 'v', { ...answer(0), body: pooled });
    const kept = c.get('k', 'v')!.body;
    expect(kept.equals(pooled)).toBe(true);
    expect(kept.buffer.byteLength).toBe(pooled.length);
  });
});
