import { ifNoneMatchHits, weakEtag } from './etag';

describe('weak ETag', () => {
  it('depends on every byte and on the length, and is the same for string and Buffer', () => {
    const a = weakEtag('{"count":1}');
    expect(a).toMatch(/^W\/"b-[A-Za-z0-9_-]{27}"$/);
    expect(weakEtag(Buffer.from('{"count":1}'))).toBe(a);
    expect(weakEtag('{"count":2}')).not.toBe(a);
    expect(weakEtag('{"count":1} ')).not.toBe(a);
  });

  it('If-None-Match: weak comparison, lists, *, and no header', () => {
    const tag = weakEtag('x');
    expect(ifNoneMatchHits(tag, tag)).toBe(true);
    expect(ifNoneMatchHits(tag.replace(/^W\//, ''), tag)).toBe(true);
    expect(ifNoneMatchHits(`"other", ${tag}`, tag)).toBe(true);
    expect(ifNoneMatchHits('*', tag)).toBe(true);
    expect(ifNoneMatchHits('"other"', tag)).toBe(false);
    expect(ifNoneMatchHits(undefined, tag)).toBe(false);
    expect(ifNoneMatchHits('', tag)).toBe(false);
  });
});
