import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ValidateIf } from 'class-validator';
import { SatisfiesRule } from '../common/rule-validator';

/**
 * Labels: a map of string keys to string values on snapshots, backups and servers, under Kubernetes'
 * rules, so selectors written for one tool read the same here. A key is an optional DNS-subdomain
 * prefix and `/`, then a name; a value is empty or a name. Count and total size are bounded, so a
 * resource's labels and any check of them stay small.
 */
export type Labels = Record<string, string>;

export const LABELS_MAX = 64;
/** Keys and values together, in characters (every allowed character is one byte). */
export const LABELS_MAX_CHARS = 8192;
export const LABEL_NAME_MAX = 63;
export const LABEL_PREFIX_MAX = 253;

/** A name (a key's name part, or a non-empty value). */
const NAME = /^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$/;
/** A DNS subdomain: dot-separated lower-case labels. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const KEY_RULE = `an optional DNS subdomain prefix of at most ${LABEL_PREFIX_MAX} characters and "/", then a name of 1-${LABEL_NAME_MAX} letters, digits, "-", "_" or "." beginning and ending with a letter or digit`;
const VALUE_RULE = `empty, or 1-${LABEL_NAME_MAX} letters, digits, "-", "_" or "." beginning and ending with a letter or digit`;

/** What is wrong with a label key, or null. Lengths are checked before any pattern: the cost stays linear. */
export function labelKeyProblem(key: string): string | null {
  const slash = key.indexOf('/');
  const prefix = slash === -1 ? null : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  const ok =
    (prefix === null || (prefix.length <= LABEL_PREFIX_MAX && DNS_SUBDOMAIN.test(prefix))) &&
    name.length <= LABEL_NAME_MAX &&
    NAME.test(name);
  return ok ? null : `label key "${key.slice(0, 80)}" must be ${KEY_RULE}`;
}

/** What is wrong with a label value, or null. */
export function labelValueProblem(key: string, value: string): string | null {
  const ok = value === '' || (value.length <= LABEL_NAME_MAX && NAME.test(value));
  return ok ? null : `label "${key.slice(0, 80)}" has a value that is not ${VALUE_RULE}`;
}

/** What is wrong with a `labels` member, or null: an object of at most LABELS_MAX string values. */
export function labelsProblem(labels: unknown): string | null {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels))
    return 'labels must be an object of string keys and string values';
  const entries = Object.entries(labels);
  if (entries.length > LABELS_MAX) return `labels must have at most ${LABELS_MAX} entries`;
  let chars = 0;
  for (const [key, value] of entries) {
    if (typeof value !== 'string') return `label "${key.slice(0, 80)}" must have a string value`;
    chars += key.length + value.length;
    if (chars > LABELS_MAX_CHARS) return `labels must total at most ${LABELS_MAX_CHARS} characters`;
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) return problem;
  }
  return null;
}

const LABELS_DOC = {
  type: 'object',
  additionalProperties: { type: 'string', maxLength: LABEL_NAME_MAX },
  maxProperties: LABELS_MAX,
  example: { env: 'prod', 'team.example.com/owner': 'db-team' },
} as const;

/** The `labels` body member of a create (optional: omitted = none) or of a PATCH (required). */
export function LabelsField(o: { optional: boolean; description: string }) {
  const doc = { ...LABELS_DOC, description: `${o.description} ${LABELS_DESCRIPTION}` };
  return applyDecorators(
    ...(o.optional ? [ValidateIf((x: { labels?: unknown }) => x.labels !== undefined)] : []),
    SatisfiesRule(labelsProblem),
    o.optional ? ApiPropertyOptional(doc) : ApiProperty(doc),
  );
}

/** The rules, as the OpenAPI document states them. */
const LABELS_DESCRIPTION = `Keys: ${KEY_RULE}. Values: ${VALUE_RULE}. At most ${LABELS_MAX} labels of at most ${LABELS_MAX_CHARS} characters in all.`;

/** The response member `labels`. */
export function LabelsProperty() {
  return ApiPropertyOptional({
    ...LABELS_DOC,
    description: 'Labels (key → value); filter lists with `label_selector`.',
  });
}

/** Labels as stored (jsonb) to a response's map. */
export function labelsOf(stored: unknown): Labels {
  return (stored ?? {}) as Labels;
}

/** What the audit log records of an accepted PATCH of labels: the labels it set. */
export const labelsAuditDetail = (b: { labels?: Labels }) => ({ labels: b.labels });
