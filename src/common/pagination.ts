import { Type } from '@nestjs/common';
import type { Request } from 'express';
import { redactTokenParameter } from '../auth/bearer-token';
import { ApiProperty, ApiPropertyOptional, ApiSchema, getSchemaPath } from '@nestjs/swagger';
import { MAX_ID } from './ids';
import { ProblemException } from './problem';
import { QueryInteger, queryParamsOf } from './query-params';

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

/** Results per page when `page_size` is not given, and the most a page may hold. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 100;
export const PAGE_SIZE_MESSAGE = `page_size must be an integer from 1 to ${MAX_PAGE_SIZE}`;

/** DRF-style `page` / `page_size` query parameters; a list's own query DTO extends this. */
export class PageQuery {
  @QueryInteger({
    max: MAX_ID,
    message: 'page must be a positive integer',
    description: 'Page number (1-based). A page past the last one is 404 `page_not_found`.',
    default: 1,
  })
  page: number = 1;

  @QueryInteger({
    max: MAX_PAGE_SIZE,
    message: PAGE_SIZE_MESSAGE,
    description: `Results per page: ${DEFAULT_PAGE_SIZE} by default, at most ${MAX_PAGE_SIZE}.`,
    default: DEFAULT_PAGE_SIZE,
  })
  page_size: number = DEFAULT_PAGE_SIZE;
}

/** The paging query parameters (PageQuery's). */
export const PAGE_PARAMS = queryParamsOf(PageQuery);

export function pageRequestOf(q: PageQuery): PageRequest {
  return { page: q.page, pageSize: q.page_size };
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

const pageClasses = new Map<Type<unknown>, Type<Page<unknown>>>();

/**
 * The response class of a page of `item`s, named `<Item>List` in the OpenAPI document. Every list
 * answers with this shape (buildPage). `linksRequired: false` leaves `next` and `previous` out of
 * `required` where a published example of the list omits them.
 */
export function PageOf<T>(item: Type<T>, o: { description: string; linksRequired?: boolean }): Type<Page<T>> {
  const known = pageClasses.get(item);
  if (known) return known as Type<Page<T>>;
  const Link = o.linksRequired === false ? ApiPropertyOptional : ApiProperty;
  const link = (description: string) =>
    Link({ type: String, format: 'uri', nullable: true, example: null, description });

  @ApiSchema({ name: `${getSchemaPath(item).split('/').pop()}List`, description: o.description })
  class PageOfItem implements Page<T> {
    @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1, description: 'Total matching.' })
    count!: number;

    @link('URL of the next page.')
    next!: string | null;

    @link('URL of the previous page.')
    previous!: string | null;

    @ApiProperty({ type: [item] })
    results!: T[];
  }
  pageClasses.set(item, PageOfItem);
  return PageOfItem;
}

/** A list short enough to be always one page (an account's tokens, the nodes). */
export function wholePage<T>(results: T[]): Page<T> {
  return { count: results.length, next: null, previous: null, results };
}
