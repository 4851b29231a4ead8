import { AuthFailureBudget } from './auth-failure-budget';

describe('AuthFailureBudget', () => {
  const MINUTE = 60_000;
  const t0 = 10 * MINUTE;

  it('a source is exhausted after its budget of failures, until the minute ends', () => {
    const b = new AuthFailureBudget(3);
    for (let i = 0; i < 3; i++) {
      expect(b.exhausted('a', t0 + i)).toBe(false);
      b.fail('a', t0 + i);
    }
    expect(b.exhausted('a', t0 + 10)).toBe(true);
    expect(b.exhausted('b', t0 + 10)).toBe(false); // each source its own
    expect(b.exhausted('a', t0 + MINUTE)).toBe(false); // the next minute starts empty
  });

  it('0 is no bound', () => {
    const b = new AuthFailureBudget(0);
    for (let i = 0; i < 100; i++) b.fail('a', t0);
    expect(b.exhausted('a', t0)).toBe(false);
  });

  it('past the sources it follows, new sources share one budget (memory stays bounded)', () => {
    const b = new AuthFailureBudget(2, 3);
    b.fail('a', t0);
    b.fail('b', t0);
    b.fail('x', t0); // the third source: the map is full afterwards (a, b, x)
    b.fail('y', t0); // shared
    b.fail('z', t0); // shared
    expect(b.exhausted('y', t0)).toBe(true);
    expect(b.exhausted('w', t0)).toBe(true); // any other new source shares it
    expect(b.exhausted('a', t0)).toBe(false); // followed sources keep their own
  });
});
