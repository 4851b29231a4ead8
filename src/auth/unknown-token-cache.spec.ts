import { UnknownTokenCache } from './unknown-token-cache';

describe('UnknownTokenCache', () => {
  it('remembers a hash for its TTL, then forgets it', () => {
    const c = new UnknownTokenCache(5000, 10);
    c.add('a', 1000);
    expect(c.has('a', 1000)).toBe(true);
    expect(c.has('a', 5999)).toBe(true);
    expect(c.has('a', 6000)).toBe(false);
    expect(c.size).toBe(0); // the expired entry went when it was asked for
  });

  it('never holds more than its maximum: the oldest go first, expired ones on the way', () => {
    const c = new UnknownTokenCache(5000, 3);
    for (let i = 0; i < 10; i++) c.add(`h${i}`, 1000 + i);
    expect(c.size).toBe(3);
    expect(['h7', 'h8', 'h9'].every((h) => c.has(h, 1010))).toBe(true);
    expect(c.has('h6', 1010)).toBe(false);
    // Adding after the others expired sweeps them out.
    c.add('late', 7000);
    expect(c.size).toBe(1);
  });

  it('moves a hash added again to the back with a new expiry, unless it was added within a tenth of the TTL', () => {
    const kept = new UnknownTokenCache(5000, 2);
    kept.add('a', 1000);
    kept.add('b', 1100);
    kept.add('a', 1400); // 400 ms later: left first in the order, still expiring at 6000
    expect(kept.has('a', 5999)).toBe(true);
    kept.add('c', 5999); // full: the oldest in the Map's order goes
    expect([kept.has('a', 5999), kept.has('b', 5999), kept.has('c', 5999)]).toEqual([false, true, true]);

    const moved = new UnknownTokenCache(5000, 2);
    moved.add('a', 1000);
    moved.add('b', 1100);
    moved.add('a', 1600); // 600 ms later: to the back, expiring at 6600
    moved.add('c', 1700);
    expect([moved.has('a', 6599), moved.has('b', 1700), moved.has('c', 1700)]).toEqual([true, false, true]);
  });

  it('forgets a hash on demand (a token just created under it)', () => {
    const c = new UnknownTokenCache(5000, 10);
    c.add('a', 0);
    c.forget('a');
    expect(c.has('a', 1)).toBe(false);
  });
});
