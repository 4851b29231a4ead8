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

  it('forgets a hash on demand (a token just created under it)', () => {
    const c = new UnknownTokenCache(5000, 10);
    c.add('a', 0);
    c.forget('a');
    expect(c.has('a', 1)).toBe(false);
  });
});
