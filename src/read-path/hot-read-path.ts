import { Injectable, Logger } from '@nestjs/common';
import type { Request } from 'express';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { AuthenticatedToken } from '../auth/api-token.service';
import { TokenBatcher } from '../auth/token-batcher';
import { RateLimitCounter } from '../rate-limit/rate-limit-counter';
import { bearerTokenOf, hasTokenParameter } from '../auth/bearer-token';
import { hashToken, looksLikeToken } from '../auth/token-codec';
import { hasScope, isAdmin, isReadMethod, Principal } from '../auth/principal';
import { AnswerCache } from './answer-cache';
import { ifNoneMatchHits } from '../common/etag';
import { MAX_QUERY_KEYS, queryOf } from '../common/query-string';
import { assignRequestId } from '../common/request-context';
import { urlTooLong } from '../common/url-limit';
import { AppConfig } from '../config/app-config';
import { markReplayed, routeTemplate } from '../metrics/request-recorder';
import { RateSubject, RateVerdict } from '../rate-limit/rate-limiter';
import { CapturedAnswer, OwnHeader, ReplayHead, setHotReadState } from './hot-read-state';
import { Route, RouteTable } from '../common/route-table';

/** How long a token counts as a recent reader, and how many are remembered. */
const RECENT_READER_MS = 60_000;
const RECENT_READERS_MAX = 10_000;

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Headers a replayed answer gets from its own request, not from the answer it shares. */
const PER_REQUEST = new Set<string>([
  'x-request-id',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
]);

interface Flight {
  answer: Promise<CapturedAnswer | null>;
}

/**
 * The front of the pipeline, for every route of the route table (RouteTable: the controllers' own
 * declarations) that needs a token: before the request enters Express and Nest, it
 *
 * 1. **looks the token up** with the tokens of the requests that arrived together (TokenBatcher, the
 *    lookup the bearer strategy then reuses). Every request is still checked against Postgres after it
 *    arrived, so a revocation is refused at once on every replica;
 * 2. **counts the request** against its rate limits with the others of its token (RateLimitCounter, the
 *    count the rate-limit guard then reuses): each request gets its own count, headers and 429;
 * 3. for a GET that needs the `read` scope, **answers identical requests once** (same account, scopes,
 *    URL, host and language): one of them (the leader) goes through the full pipeline; the others wait
 *    for its answer and get the same bytes with their own request id, rate-limit headers and conditional
 *    (304) handling. A request only joins a group whose leader has not yet been handed to the pipeline,
 *    i.e. before the leader reads anything: every answer reflects the database as it was after its
 *    request arrived (read-your-writes holds). Answers of @ListingRead routes are also cached against
 *    the account's listing version (AnswerCache).
 *
 * Changes (routes needing the `write` scope) get only (1) and (2) and then go through the whole pipeline.
 * Anything else — public or admin routes, HEAD, GETs with bodies, unusual or invalid credentials, admin
 * tokens, a leader that did not answer 200 — goes through the pipeline unchanged, whose guards do (1) and
 * (2) themselves. Off with `HOT_READ_PATH=false`.
 */
@Injectable()
export class HotReadPath {
  private readonly logger = new Logger(HotReadPath.name);
  private readonly flights = new Map<string, Flight>();
  private readonly cache: AnswerCache | null;
  /** Tokens (by hash) that took this path within the last minute: their counting need not wait for the lookup. */
  private readonly recentReaders = new Map<string, RateSubject & { at: number }>();

  constructor(
    private readonly tokens: TokenBatcher,
    private readonly counter: RateLimitCounter,
    private readonly config: AppConfig,
    private readonly routes: RouteTable,
  ) {
    this.cache = config.readCacheMaxBytes > 0 ? new AnswerCache(config.readCacheMaxBytes) : null;
  }

  /** Entries and bytes of the answer cache (null when it is off). */
  get cacheSize(): { entries: number; bytes: number } | null {
    return this.cache?.size ?? null;
  }

  /** Puts the hot read path in front of the server's request listener (the Express app). */
  install(server: Server): void {
    const [pipeline] = server.listeners('request') as Listener[];
    if (!pipeline)
      throw new Error('the HTTP server has no request listener to put the hot read path in front of');
    server.removeListener('request', pipeline);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      // The pipeline refuses what is too long to read, and a token put in the URL (never served here).
      if (urlTooLong(req.url) || hasTokenParameter(req.url ?? '')) {
        pipeline(req, res);
        return;
      }
      const write = this.eligibleWrite(req);
      if (write !== null) {
        this.authenticateWrite(req, res, write, pipeline).catch((e: unknown) => {
          this.logger.error({ err: e }, 'write front failed; request handed to the pipeline');
          if (!res.headersSent) pipeline(req, res);
        });
        return;
      }
      const read = this.eligibleRead(req);
      if (read === null) {
        pipeline(req, res);
        return;
      }
      void this.handle(req, res, read.token, read.route, pipeline); // never rejects
    });
  }

  /** A GET of a route that needs the `read` scope, without a body, with a well-formed bearer token. */
  private eligibleRead(req: IncomingMessage): { token: string; route: Route } | null {
    if (req.method !== 'GET') return null;
    const route = this.routes.match('GET', req.url ?? '');
    if (!route || route.isPublic || route.scope !== 'read') return null;
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)
      return null;
    const token = this.wellFormedToken(req);
    return token === null ? null : { token, route };
  }

  private wellFormedToken(req: IncomingMessage): string | null {
    const token = bearerTokenOf(req.headers.authorization);
    return token !== null && looksLikeToken(token) ? token : null;
  }

  /** The bearer token of a change to a route that needs the `write` scope; null for anything else. */
  private eligibleWrite(req: IncomingMessage): string | null {
    const method = req.method ?? '';
    if (isReadMethod(method)) return null;
    const route = this.routes.match(method, req.url ?? '');
    if (!route || route.isPublic || route.scope !== 'write') return null;
    return this.wellFormedToken(req);
  }

  /**
   * A write goes through the whole pipeline (validation, idempotency, audit, the service's rules); only
   * its token lookup and rate-limit count are batched with the requests that arrived with it, exactly
   * as the pipeline's guards would do them one by one: unknown, revoked, expired or read-only tokens and
   * admins are left to the pipeline, which answers and counts them itself.
   */
  private async authenticateWrite(
    req: IncomingMessage,
    res: ServerResponse,
    token: string,
    pipeline: Listener,
  ): Promise<void> {
    let principal: AuthenticatedToken | null;
    try {
      principal = await this.tokens.principalOf(req, token);
    } catch {
      pipeline(req, res);
      return;
    }
    if (principal && !isAdmin(principal) && hasScope(principal, 'write'))
      await this.counter.verdictOf(req, principal, true);
    pipeline(req, res);
  }

  private async handle(
    req: IncomingMessage,
    res: ServerResponse,
    token: string,
    route: Route,
    pipeline: Listener,
  ): Promise<void> {
    // Failures are caught here, not by a catch() on the returned promise: one promise less per request.
    try {
      // A token that was a valid reader a moment ago is counted while it is being looked up, not after
      // (the two round trips overlap). Should it have been revoked since, the lookup refuses it all the
      // same; the one extra count lands on a dead token.
      const hash = hashToken(token); // eligibleRead checked its shape
      const recent = this.recentReaders.get(hash);
      const now = Date.now();
      const early =
        recent && now - recent.at < RECENT_READER_MS
          ? this.counter.count(recent, false).catch(() => null)
          : null;
      let principal: AuthenticatedToken | null;
      try {
        principal = await this.tokens.principalOf(req, token, hash);
      } catch {
        pipeline(req, res); // the pipeline answers (e.g. 503 while the database is down)
        return;
      }
      // Unknown, expired, revoked, admin (acts across accounts), or not allowed to read: the pipeline
      // answers, counting the request itself as it always does.
      if (!principal || isAdmin(principal) || !hasScope(principal, 'read')) {
        this.recentReaders.delete(hash);
        pipeline(req, res);
        return;
      }
      const counted =
        early && recent?.tokenId === principal.tokenId ? early : this.counter.count(principal, false);
      this.counter.remember(req, counted);
      const rateVerdict = await counted;
      if (!recent || recent.tokenId !== principal.tokenId || now - recent.at >= RECENT_READER_MS / 2) {
        if (this.recentReaders.size >= RECENT_READERS_MAX) this.recentReaders.clear();
        this.recentReaders.set(hash, { tokenId: principal.tokenId, accountId: principal.accountId, at: now });
      }
      if (rateVerdict?.exceeded != null) {
        pipeline(req, res); // the pipeline's 429
        return;
      }
      const key = this.groupKey(req, principal);
      // Only answers of cacheable URLs are ever stored, and the key holds the URL: a hit needs no check.
      const version = route.listing !== null ? principal.listingVersion : undefined;
      const cached = version !== undefined ? (this.cache?.get(key, version) ?? null) : null;
      if (cached && this.replayable(cached, rateVerdict)) {
        this.replay(req, res, cached, rateVerdict, 'cached');
        return;
      }
      const open = this.flights.get(key);
      if (!open) {
        this.lead(
          req,
          res,
          pipeline,
          key,
          version !== undefined && this.cacheable(req, route) ? version : undefined,
        );
        return;
      }
      const answer = await open.answer;
      if (!answer || !this.replayable(answer, rateVerdict)) {
        pipeline(req, res);
        return;
      }
      this.replay(req, res, answer, rateVerdict, 'shared');
    } catch (e) {
      this.logger.error({ err: e }, 'hot read path failed; request handed to the pipeline');
      if (!res.headersSent) pipeline(req, res);
    }
  }

  /** Rate-limit headers are replaced, never added or dropped: the answer must have them iff this request has. */
  private replayable(answer: CapturedAnswer, verdict: RateVerdict | null): boolean {
    return (verdict !== null) === answer.rateHeaders;
  }

  /**
   * Starts a group: its leader goes through the pipeline once every request of this turn has joined.
   * Its answer is cached under `version`, the listing version read before the pipeline reads any data.
   */
  private lead(
    req: IncomingMessage,
    res: ServerResponse,
    pipeline: Listener,
    key: string,
    version: string | undefined,
  ): void {
    let deliver!: (a: CapturedAnswer | null) => void;
    const flight: Flight = { answer: new Promise((r) => (deliver = r)) };
    this.flights.set(key, flight);
    res.once('close', () => deliver(null)); // no capture (not a 200, error, client gone): waiters go on their own
    setImmediate(() => {
      // Closed to newcomers before the leader reads anything.
      if (this.flights.get(key) === flight) this.flights.delete(key);
      setHotReadState(req, {
        capture: (response, body, etag) => {
          const answer = this.capture(req, response, body, etag);
          if (version !== undefined) this.cache?.set(key, version, answer);
          deliver(answer);
        },
      });
      pipeline(req, res);
    });
  }

  private capture(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    etag: string | null,
  ): CapturedAnswer {
    const ok: ReplayHead = { flat: [], own: [] };
    const notModified: ReplayHead = { flat: [], own: [] };
    // Node ≥ 15.13 keeps the names as they were set (its type definitions here predate that).
    const raw = (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames();
    for (const name of raw) {
      const value = res.getHeader(name);
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      const own = PER_REQUEST.has(lower) ? (lower as OwnHeader) : null;
      for (const v of Array.isArray(value) ? value : [String(value)]) {
        for (const head of lower === 'content-type' ? [ok] : [ok, notModified]) {
          if (own) head.own.push({ at: head.flat.length + 1, header: own });
          head.flat.push(name, own ? '' : v);
        }
      }
    }
    ok.flat.push('Content-Length', String(body.length));
    const rateHeaders = ok.own.some((o) => o.header !== 'x-request-id');
    return { ok, notModified, rateHeaders, body, etag, route: routeTemplate(req as Request) };
  }

  /** The leader's answer with this request's own request id, rate-limit headers and 304 decision. */
  private replay(
    req: IncomingMessage,
    res: ServerResponse,
    answer: CapturedAnswer,
    verdict: RateVerdict | null,
    how: 'shared' | 'cached',
  ): void {
    const requestId = assignRequestId(req);
    const notModified = answer.etag !== null && ifNoneMatchHits(req.headers['if-none-match'], answer.etag);
    const head = notModified ? answer.notModified : answer.ok;
    const { flat, own } = head;
    for (let i = 0; i < own.length; i++) {
      const { at, header } = own[i];
      flat[at] = header === 'x-request-id' ? requestId : rateHeaderValue(header, verdict);
    }
    markReplayed(req, { route: answer.route, how });
    try {
      res.writeHead(notModified ? 304 : 200, flat);
    } finally {
      // writeHead has serialised the list; the answer keeps no request's own values.
      for (let i = 0; i < own.length; i++) flat[own[i].at] = '';
    }
    res.end(notModified ? undefined : answer.body);
  }

  /**
   * Whether this request's answer may be cached: only if its URL has no query parameter but those the
   * endpoint reads. The endpoint ignores any other, so each new value of one would add an entry that
   * shows nothing new. (The cache itself refuses long keys: padding with headers or empty `&&&`.)
   */
  private cacheable(req: IncomingMessage, route: Route): boolean {
    if (route.listing === null) return false;
    const url = req.url ?? '';
    if (!url.includes('?')) return true;
    const known = route.listing.params;
    const names = Object.keys(queryOf(url));
    // At the parser's bound, further parameters went unread: not cacheable, they could vary freely.
    return names.length < MAX_QUERY_KEYS && names.every((name) => known.includes(name));
  }

  private groupKey(req: IncomingMessage, p: Principal): string {
    const h = req.headers;
    const forwarded =
      this.config.trustProxy !== false
        ? `${String(h['x-forwarded-proto'] ?? '')};${String(h['x-forwarded-host'] ?? '')}`
        : '';
    return `${p.accountId}\n${p.scopes.join(',')}\n${h.host ?? ''}\n${forwarded}\n${h['accept-language'] ?? ''}\n${req.url ?? ''}`;
  }
}

/** A rate-limit header's value for this request (replayable() ensured there is a verdict). */
function rateHeaderValue(header: Exclude<OwnHeader, 'x-request-id'>, verdict: RateVerdict | null): string {
  if (!verdict) return '';
  if (header === 'ratelimit-limit') return String(verdict.limit);
  if (header === 'ratelimit-remaining') return String(Math.max(0, verdict.limit - verdict.used));
  return String(verdict.reset);
}
