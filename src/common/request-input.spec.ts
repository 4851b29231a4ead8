import { jsonShapeProblem, MAX_JSON_DEPTH, MAX_JSON_VALUES_PER_CONTAINER } from './body-parsing';
import { languageOf, MAX_LANGUAGE_RANGES } from './messages';
import { MAX_QUERY_KEYS, parseQuery, queryOf } from './query-string';
import { withoutTrailingSlashes } from './request-context';
import { MAX_URL_BYTES, urlTooLong } from './url-limit';

const bytes = (s: string) => Buffer.from(s, 'utf8');

/**
 * Nanoseconds per call of `fn(input)`, over as many calls as read about `totalBytes`: both sides of a
 * ratio then do the same work for the same time, so a busy machine is as likely to interrupt either.
 */
function nsPerCall(input: string, fn: (s: string) => unknown, totalBytes = 1 << 20): number {
  const rounds = Math.max(1, Math.round(totalBytes / input.length));
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) fn(input);
  return Number(process.hrtime.bigint() - started) / rounds;
}

/**
 * Large over small, best of nine alternated runs each: the best run of each is the one the machine did
 * not interrupt, so a busy machine does not fake a growing cost. A ratio of 2 or more is measured again
 * (up to three times, the lowest kept): a reader that really grows gives ~16 every time.
 */
function bestRatio(small: () => number, large: () => number): number {
  small(); // warm-up
  large();
  let ratio = Infinity;
  for (let attempt = 0; attempt < 3 && ratio >= 2; attempt++) {
    let s = Infinity;
    let l = Infinity;
    for (let k = 0; k < 9; k++) {
      s = Math.min(s, small());
      l = Math.min(l, large());
    }
    ratio = Math.min(ratio, l / s);
  }
  return ratio;
}

/** 1 kB against 16 kB of the same pattern: time per byte within 2x (a quadratic reader gives ~16). */
function expectLinear(make: (bytes: number) => string, fn: (s: string) => unknown): void {
  const smallInput = make(1024);
  const largeInput = make(16 * 1024);
  const perByte = (input: string) => () => nsPerCall(input, fn) / input.length;
  expect(bestRatio(perByte(smallInput), perByte(largeInput))).toBeLessThan(2);
}

describe('request input readers', () => {
  it.each([
    ['/', '/'],
    ['//', '/'],
    ['/api/v1/snapshots/', '/api/v1/snapshots'],
    ['/api/v1/snapshots////', '/api/v1/snapshots'],
    ['/api/v1/snapshots', '/api/v1/snapshots'],
  ])('withoutTrailingSlashes(%p) = %p', (path, stripped) => {
    expect(withoutTrailingSlashes(path)).toBe(stripped);
  });

  it('strips trailing slashes in time linear in their number', () => {
    expectLinear((n) => `/${'/'.repeat(n - 3)}x/`, withoutTrailingSlashes);
    expectLinear((n) => `/x${'/'.repeat(n - 2)}`, withoutTrailingSlashes);
  });

  it('bounds URLs to MAX_URL_BYTES', () => {
    expect(urlTooLong('/'.repeat(MAX_URL_BYTES))).toBe(false);
    expect(urlTooLong('/'.repeat(MAX_URL_BYTES + 1))).toBe(true);
  });

  it('reads queries flat: brackets are part of the name, repeats an array, at most MAX_QUERY_KEYS', () => {
    expect(queryOf('/x?a[b][c]=1&a=2&a=3')).toEqual({ 'a[b][c]': '1', a: ['2', '3'] });
    expect(queryOf('/x')).toEqual({});
    expect(Object.keys(parseQuery(Array.from({ length: 500 }, (_, i) => `k${i}=1`).join('&')))).toHaveLength(
      MAX_QUERY_KEYS,
    );
    expectLinear((n) => 'a[b][c][d]=1&'.repeat(Math.ceil(n / 13)), parseQuery);
  });

  it.each([
    ['{"a":1}', null],
    [`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`, null],
    [`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`, /deeper/],
    [`{"a":"${'['.repeat(100)}"}`, null],
    [`{"a":"\\"${'['.repeat(100)}"}`, null],
    [`[${Array(MAX_JSON_VALUES_PER_CONTAINER).fill(1).join(',')}]`, null],
    [
      `[${Array(MAX_JSON_VALUES_PER_CONTAINER + 1)
        .fill(1)
        .join(',')}]`,
      /more than/,
    ],
    [`{"a":"${','.repeat(1000)}"}`, null],
  ])('jsonShapeProblem(%p)', (text, problem) => {
    const found = jsonShapeProblem(bytes(text));
    if (problem === null) expect(found).toBeNull();
    else expect(found).toMatch(problem);
  });

  it('scans JSON in time linear in its size', () => {
    expectLinear(
      (n) => `{"a":"${'\\"['.repeat(Math.floor(n / 3))}"}`,
      (s) => jsonShapeProblem(bytes(s)),
    );
  });

  it('reads the first MAX_LANGUAGE_RANGES ranges of Accept-Language, in bounded time', () => {
    const filler = Array(MAX_LANGUAGE_RANGES - 1)
      .fill('de')
      .join(',');
    expect(languageOf(`${filler},cy`)).toBe('cy');
    expect(languageOf(`${filler},de,cy`)).toBe('en');
    expect(languageOf(`${'x'.repeat(100)};q=1,cy`)).toBe('cy');
    const perHeader = (input: string) => () => nsPerCall(input, languageOf);
    // Time per header, not per byte: bounded, not growing.
    expect(bestRatio(perHeader('de,'.repeat(340)), perHeader('de,'.repeat(5460)))).toBeLessThan(2);
  });
});
