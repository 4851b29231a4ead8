import { applyDecorators } from '@nestjs/common';
import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional } from 'class-validator';
import { ProblemException } from '../common/problem';
import { Prisma } from '../generated/prisma/client';
import { labelKeyProblem, labelValueProblem } from './labels';

/**
 * `label_selector`: the Kubernetes equality- and set-based grammar (`k=v`, `k==v`, `k!=v`,
 * `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; a comma between requirements means "and"), read in one
 * pass over at most LABEL_SELECTOR_MAX characters, and turned into one SQL/JSON path predicate on the
 * `labels` jsonb column (`labels @@ $n::jsonpath`). One bound parameter whatever the selector: the
 * statement's text never changes, and equality terms are what a GIN index on `labels` answers.
 */

export const LABEL_SELECTOR_MAX = 1024;

export type Requirement =
  { key: string; op: 'in' | 'notin'; values: string[] } | { key: string; op: 'exists' | '!exists' };

class SelectorError extends Error {
  constructor(
    readonly position: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

const WORD = /[-_./A-Za-z0-9]/;

/** A one-pass reader of the selector's characters. */
class Reader {
  pos = 0;
  constructor(readonly text: string) {}

  skipSpaces(): void {
    while (this.text[this.pos] === ' ') this.pos++;
  }

  atEnd(): boolean {
    this.skipSpaces();
    return this.pos >= this.text.length;
  }

  /** Consumes `s` (after spaces) if it comes next. */
  take(s: string): boolean {
    this.skipSpaces();
    if (!this.text.startsWith(s, this.pos)) return false;
    this.pos += s.length;
    return true;
  }

  expect(s: string, what: string): void {
    if (!this.take(s)) throw new SelectorError(this.pos, `expected ${what}`);
  }

  /** A run of key/value characters (possibly empty). */
  word(): string {
    this.skipSpaces();
    const start = this.pos;
    while (this.pos < this.text.length && WORD.test(this.text[this.pos])) this.pos++;
    return this.text.slice(start, this.pos);
  }
}

function key(r: Reader): string {
  const at = r.pos;
  const k = r.word();
  if (k === '') throw new SelectorError(at, 'expected a label key');
  if (labelKeyProblem(k)) throw new SelectorError(at, `"${k.slice(0, 80)}" is not a valid label key`);
  return k;
}

function value(r: Reader, k: string): string {
  const at = r.pos;
  const v = r.word();
  if (labelValueProblem(k, v)) throw new SelectorError(at, `"${v.slice(0, 80)}" is not a valid label value`);
  return v;
}

function requirement(r: Reader): Requirement {
  if (r.take('!')) return { key: key(r), op: '!exists' };
  const k = key(r);
  if (r.take('==') || r.take('=')) return { key: k, op: 'in', values: [value(r, k)] };
  if (r.take('!=')) return { key: k, op: 'notin', values: [value(r, k)] };
  const at = r.pos;
  const word = r.word();
  if (word === 'in' || word === 'notin') {
    r.expect('(', '"(" after ' + word);
    const values = [value(r, k)];
    while (r.take(',')) values.push(value(r, k));
    r.expect(')', '"," or ")"');
    return { key: k, op: word, values };
  }
  if (word !== '') throw new SelectorError(at, `unexpected "${word.slice(0, 80)}"`);
  return { key: k, op: 'exists' };
}

/** The requirements of a selector; SelectorError where it stops making sense. */
export function parseLabelSelector(text: string): Requirement[] {
  if (text.length > LABEL_SELECTOR_MAX)
    throw new SelectorError(LABEL_SELECTOR_MAX, `longer than ${LABEL_SELECTOR_MAX} characters`);
  const r = new Reader(text);
  const out: Requirement[] = [];
  if (r.atEnd()) return out;
  do out.push(requirement(r));
  while (r.take(','));
  if (!r.atEnd()) throw new SelectorError(r.pos, 'expected "," or the end');
  return out;
}

/** A JSON string literal is a jsonpath string literal; keys and values hold no quote anyway. */
const str = (s: string) => JSON.stringify(s);

function pathOf(q: Requirement): string {
  const member = `$.${str(q.key)}`;
  switch (q.op) {
    case 'exists':
      return `exists(${member})`;
    case '!exists':
      return `!exists(${member})`;
    case 'in':
      return `(${q.values.map((v) => `${member} == ${str(v)}`).join(' || ')})`;
    case 'notin':
      // A missing key compares to nothing and is false, so the negation keeps resources without it.
      return `!(${q.values.map((v) => `${member} == ${str(v)}`).join(' || ')})`;
  }
}

/** The jsonpath predicate of the requirements (all must hold); null when there are none. */
export function labelSelectorPath(requirements: Requirement[]): string | null {
  return requirements.length ? requirements.map(pathOf).join(' && ') : null;
}

/**
 * The jsonpath of a list's `label_selector` (null: absent or empty, no filter); 400
 * `invalid_label_selector` saying where and why when it is not one.
 */
export function labelFilterOf(selector: unknown): string | null {
  if (selector === undefined) return null;
  try {
    if (typeof selector !== 'string') throw new SelectorError(0, 'give label_selector once');
    return labelSelectorPath(parseLabelSelector(selector));
  } catch (e) {
    if (!(e instanceof SelectorError)) throw e;
    throw new ProblemException({
      status: 400,
      code: 'invalid_label_selector',
      params: { position: e.position, reason: e.reason },
      extra: { label_selector: { position: e.position, error: e.reason } },
    });
  }
}

/** The condition "the labels of the rows of `alias` match the jsonpath `path`" (labelFilterOf's). */
export function labelsMatchSql(alias: string, path: string): Prisma.Sql {
  return Prisma.sql`${Prisma.raw(alias)}.labels @@ ${path}::jsonpath`;
}

/** The `label_selector` query parameter of a list (text; read by labelFilterOf). */
export function QueryLabelSelector(what: string): PropertyDecorator {
  return applyDecorators(
    IsOptional(),
    ApiPropertyOptional({
      type: String,
      maxLength: LABEL_SELECTOR_MAX,
      example: 'env=prod,tier in (db,cache),!temp',
      description:
        `Only ${what} whose labels match: \`k=v\` (or \`k==v\`), \`k!=v\`, \`k in (a,b)\`, \`k notin (a,b)\`, ` +
        '`k` (has the label), `!k` (has not); a comma means "and". `!=` and `notin` also match those ' +
        'without the label. A malformed selector is 400 `invalid_label_selector`.',
    }),
  );
}
