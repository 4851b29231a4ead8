import { parseId } from './ids';
import { FieldError, problems } from './problem';
import { Prisma } from '../generated/prisma/client';

/** The orderings of the snapshot and backup lists (`-` = descending). */
export const LIST_ORDERINGS = ['created_at', '-created_at', 'id', '-id', 'name', '-name'] as const;
export type ListOrdering = (typeof LIST_ORDERINGS)[number];

/**
 * The `server_id` filter and `ordering` of a list query, plus the caller's own filters (`more` pushes
 * its field errors): every problem is one 400 naming its fields.
 */
export function readListQuery<T extends object>(
  query: Record<string, unknown>,
  more: (errors: FieldError[]) => T = () => ({}) as T,
): { serverId?: number; ordering: ListOrdering } & T {
  const errors: FieldError[] = [];
  let serverId: number | undefined;
  if (query.server_id !== undefined) {
    const id = parseId(query.server_id);
    if (id === null) errors.push({ field: 'server_id', message: 'server_id must be a positive integer' });
    else serverId = id;
  }
  const ordering = (query.ordering ?? '-created_at') as ListOrdering;
  if (!LIST_ORDERINGS.includes(ordering)) {
    errors.push({ field: 'ordering', message: `ordering must be one of ${LIST_ORDERINGS.join(', ')}` });
  }
  const extra = more(errors);
  if (errors.length) throw problems.validation(errors);
  return { serverId, ordering, ...extra };
}

/**
 * ORDER BY keys for an ordering: `inner` over the table's alias (served by its `(…, created_at DESC,
 * id DESC)` indexes), `outer` over the page's alias `p`. Ties are broken by id.
 */
export function orderingSql(ordering: ListOrdering, alias: string): { inner: Prisma.Sql; outer: Prisma.Sql } {
  const dir = ordering.startsWith('-') ? 'DESC' : 'ASC';
  const field = ordering.replace('-', '');
  const keys = (a: string) =>
    Prisma.raw(field === 'id' ? `${a}.id ${dir}` : `${a}.${field} ${dir}, ${a}.id ${dir}`);
  return { inner: keys(alias), outer: keys('p') };
}
