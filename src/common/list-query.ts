import { Prisma } from '../generated/prisma/client';
import { MAX_ID } from './ids';
import { PageQuery } from './pagination';
import { ProblemException } from './problem';
import { QueryInteger, QueryOneOf } from './query-params';
import { QueryLabelSelector } from '../labels/label-selector';

/** The orderings of the snapshot and backup lists (`-` = descending). */
export const LIST_ORDERINGS = ['created_at', '-created_at', 'id', '-id', 'name', '-name'] as const;
export type ListOrdering = (typeof LIST_ORDERINGS)[number];

/**
 * The query string the snapshot and backup lists share: paging, a `server_id` filter, an ordering and a
 * `label_selector`.
 * Any other parameter is ignored.
 */
export class ServerResourceListQuery extends PageQuery {
  @QueryInteger({
    max: MAX_ID,
    message: 'server_id must be a positive integer',
    description: 'Only those of this server.',
    example: 12345,
  })
  server_id?: number;

  @QueryOneOf(LIST_ORDERINGS, {
    message: `ordering must be one of ${LIST_ORDERINGS.join(', ')}`,
    description: 'Sort order; `-` means descending.',
    default: '-created_at',
  })
  ordering: ListOrdering = '-created_at';

  @QueryLabelSelector('those')
  label_selector?: string;
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

/**
 * A list's page, unless its `server_id` filter names a server the caller cannot see (another account's,
 * or none): that is 404 `server_not_found`, as the server itself would be, never an empty page.
 */
export function pageOfVisibleServer<T>(found: { visible: boolean; count: number; rows: T[] }): {
  count: number;
  rows: T[];
} {
  if (!found.visible) throw new ProblemException({ status: 404, code: 'server_not_found' });
  return { count: found.count, rows: found.rows };
}
