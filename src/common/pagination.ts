import type { Request } from 'express';
import { redactTokenParameter } from '../auth/bearer-token';
import { FieldError, ProblemException, problems } from './problem';
import { parseId } from './ids';

export interface PageRequest {
  page: number;
  pageSize: number;
}

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

/** The paging query parameters, read by readPageRequest. */
export const PAGE_PARAMS = ['page', 'page_size'] as const;

/** DRF-style `page` / `page_size` query parameters. Malformed values are 400 with field errors. */
export function readPageRequest(
  query: Record<string, unknown>,
  defaults: { defaultPageSize: number; maxPageSize: number },
): PageRequest {
  const errors: FieldError[] = [];
  let page = 1;
  let pageSize = defaults.defaultPageSize;
  if (query.page !== undefined) {
    const p = parseId(query.page);
    if (p === null) errors.push({ field: 'page', message: 'page must be a positive integer' });
    else page = p;
  }
  if (query.page_size !== undefined) {
    const s = parseId(query.page_size);
    if (s === null || s > defaults.maxPageSize) {
      errors.push({
        field: 'page_size',
        message: `page_size must be an integer from 1 to ${defaults.maxPageSize}`,
      });
    } else pageSize = s;
  }
  if (errors.length) throw problems.validation(errors);
  return { page, pageSize };
}

function pageUrl(req: Request, page: number): string {
  const url = new URL(
    redactTokenParameter(req.originalUrl),
    `${req.protocol}://${req.get('host') ?? 'localhost'}`,
  );
  if (page === 1) url.searchParams.delete('page');
  else url.searchParams.set('page', String(page));
  return url.toString();
}

/** Builds `{count, next, previous, results}`; a page past the last one (other than page 1) is 404, as in DRF. */
export function buildPage<T>(req: Request, request: PageRequest, count: number, results: T[]): Page<T> {
  const lastPage = Math.max(1, Math.ceil(count / request.pageSize));
  if (request.page > lastPage) throw new ProblemException({ status: 404, code: 'page_not_found' });
  return {
    count,
    next: request.page < lastPage ? pageUrl(req, request.page + 1) : null,
    previous: request.page > 1 ? pageUrl(req, request.page - 1) : null,
    results,
  };
}

export function skipTake(request: PageRequest): { skip: number; take: number } {
  return { skip: (request.page - 1) * request.pageSize, take: request.pageSize };
}
