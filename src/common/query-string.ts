import { parse } from 'node:querystring';

/**
 * Query parameters a request may carry; the rest are dropped (no endpoint reads more than five).
 * node:querystring reads a query in one linear pass into flat string values (a repeated name gives
 * an array): unlike `qs`, `a[b][c]=1` is the key `a[b][c]`, never a nested object.
 */
export const MAX_QUERY_KEYS = 64;

export type ParsedQuery = Record<string, string | string[] | undefined>;

/** The query string (after `?`) as flat parameters; both pipelines read queries through this. */
export function parseQuery(search: string): ParsedQuery {
  return parse(search, '&', '=', { maxKeys: MAX_QUERY_KEYS }) as ParsedQuery;
}

/** The parameters of a request target (`/path?query`); none when it has no `?`. */
export function queryOf(url: string): ParsedQuery {
  const q = url.indexOf('?');
  return q === -1 ? {} : parseQuery(url.slice(q + 1));
}
