import { ProblemException } from '../common/problem';
import { LABEL_SELECTOR_MAX, labelFilterOf, labelSelectorPath, parseLabelSelector } from './label-selector';

describe('label_selector', () => {
  it.each([
    ['env=prod', [{ key: 'env', op: 'in', values: ['prod'] }]],
    ['env==prod', [{ key: 'env', op: 'in', values: ['prod'] }]],
    [' env != dev ', [{ key: 'env', op: 'notin', values: ['dev'] }]],
    ['tier in (db, cache)', [{ key: 'tier', op: 'in', values: ['db', 'cache'] }]],
    ['tier notin (db)', [{ key: 'tier', op: 'notin', values: ['db'] }]],
    ['!temp', [{ key: 'temp', op: '!exists' }]],
    ['example.com/owner', [{ key: 'example.com/owner', op: 'exists' }]],
    ['a=', [{ key: 'a', op: 'in', values: [''] }]],
    [
      'env=prod,tier in (db,cache),!temp,x',
      [
        { key: 'env', op: 'in', values: ['prod'] },
        { key: 'tier', op: 'in', values: ['db', 'cache'] },
        { key: 'temp', op: '!exists' },
        { key: 'x', op: 'exists' },
      ],
    ],
    ['', []],
  ])('reads %j', (text, expected) => {
    expect(parseLabelSelector(text)).toEqual(expected);
  });

  it.each([
    ['env=prod,', 9],
    ['env=pr od', 7],
    ['tier in (db,cache', 17],
    ['tier in db', 8],
    ['=prod', 0],
    ['env=-prod', 4],
    ['Bad_Prefix/x=1', 0],
    ['env=prod;x', 8],
    ['!', 1],
    ['a in (b) c', 9],
  ])('refuses %j at %d with 400 invalid_label_selector', (text, position) => {
    let caught: unknown;
    try {
      labelFilterOf(text);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ProblemException);
    const body = (caught as ProblemException).render('en', 'r');
    expect(body).toMatchObject({ status: 400, code: 'invalid_label_selector', label_selector: { position } });
  });

  it('refuses a repeated parameter and a selector over the length bound', () => {
    expect(() => labelFilterOf(['a', 'b'])).toThrow(ProblemException);
    expect(() => labelFilterOf('a,'.repeat(LABEL_SELECTOR_MAX))).toThrow(ProblemException);
    expect(labelFilterOf(undefined)).toBeNull();
  });

  it('stays linear on adversarial input', () => {
    const long = 'a'.repeat(LABEL_SELECTOR_MAX - 2) + '=(';
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 200; i++) expect(() => labelFilterOf(long)).toThrow(ProblemException);
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(2000);
  });

  it('compiles to one jsonpath predicate; != and notin keep resources without the key', () => {
    expect(labelSelectorPath(parseLabelSelector('env=prod,tier notin (db,cache),!temp,owner'))).toBe(
      '($."env" == "prod") && !($."tier" == "db" || $."tier" == "cache") && !exists($."temp") && exists($."owner")',
    );
    expect(labelSelectorPath([])).toBeNull();
  });
});
