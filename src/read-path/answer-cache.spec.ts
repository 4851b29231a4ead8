import { AnswerCache } from './answer-cache';
import type { CapturedAnswer } from './hot-read-state';

const answer = (bytes: number): CapturedAnswer => ({
  headers: [{ name: 'Content-Type', value: 'application/json', part: 'content-type' }],
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
});
