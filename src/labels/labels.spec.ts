import { LABELS_MAX, LABELS_MAX_CHARS, labelsProblem } from './labels';

describe('labels', () => {
  it.each([
    [{}],
    [{ env: 'prod', 'example.com/owner': 'db-team', empty: '' }],
    [{ ['k'.repeat(63)]: 'v'.repeat(63) }],
    [{ [`${'a'.repeat(253)}/x`]: 'y' }],
    [{ 'a.b_c-d': 'A.b_9' }],
  ])('accepts %j', (labels) => {
    expect(labelsProblem(labels)).toBeNull();
  });

  it.each([
    [null, /object/],
    [[], /object/],
    ['env=prod', /object/],
    [{ env: 1 }, /string value/],
    [{ '': 'x' }, /label key/],
    [{ '-env': 'x' }, /label key/],
    [{ ['k'.repeat(64)]: 'x' }, /label key/],
    [{ 'Example.com/x': 'y' }, /label key/],
    [{ [`${'a'.repeat(254)}/x`]: 'y' }, /label key/],
    [{ 'a/b/c': 'y' }, /label key/],
    [{ env: 'pr od' }, /value/],
    [{ env: 'v'.repeat(64) }, /value/],
    [{ env: '_x' }, /value/],
    [Object.fromEntries(Array.from({ length: LABELS_MAX + 1 }, (_, i) => [`k${i}`, 'v'])), /at most 64/],
  ])('refuses %j', (labels, problem) => {
    expect(labelsProblem(labels)).toMatch(problem);
  });

  it('bounds the total size', () => {
    const many = Object.fromEntries(
      Array.from({ length: LABELS_MAX }, (_, i) => [
        `${'p'.repeat(200)}/k${String(i).padStart(59, '0')}`,
        'v',
      ]),
    );
    expect(labelsProblem(many)).toBe(`labels must total at most ${LABELS_MAX_CHARS} characters`);
  });
});
