import { Injectable, Logger } from '@nestjs/common';
import type { Request } from 'express';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { PinoLogger } from 'nestjs-pino';
import { ApiTokenService, AuthenticatedToken } from '../auth/api-token.service';
import { bearerTokenOf, hasTokenParameter, redactTokenParameter } from '../auth/bearer-token';
import { hashToken, looksLikeToken } from '../auth/token-codec';
import { hasScope, isAdmin, isReadMethod, Principal } from '../auth/principal';
import { AnswerCache } from './answer-cache';
import { ifNoneMatchHits } from '../common/etag';
import { MAX_QUERY_KEYS, queryOf } from '../common/query-string';
import { requestIdFor } from '../common/request-context';
import { urlTooLong } from '../common/url-limit';
import { AppConfig } from '../config/app-config';
import { routeTemplate } from '../metrics/http-metrics.middleware';
import { MetricsService } from '../metrics/metrics.service';
import { RateLimiter, RateSubject, RateVerdict } from '../rate-limit/rate-limiter';
import { CapturedAnswer, HeaderPart, HotReadState, setHotReadState } from './hot-read-state';
import { MicroBatcher } from '../common/micro-batcher';
import { Route, RouteTable } from '../common/route-table';

/** How long a token counts as a recent reader, and how many are remembered. */
const RECENT_READER_MS = 60_000;
const RECENT_READERS_MAX = 10_000;

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Headers a replayed answer gets from its own request, not from the answer it shares. */
const PER_REQUEST = new Set<HeaderPart>([
  'x-request-id',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
]);

interface Flight {
  answer: Promise<CapturedAnswer | null>;
}

/**
 * The hot read path: sits in front of the Nest pipeline for `GET /api/v1/snapshots/` and
 * `GET /api/v1/snapshots/:id/`, the endpoints automation polls, and does three things:
 *
 * 1. **Batches token lookups**: the tokens of all requests that arrived together are looked up in one
 *    statement (ApiTokenService.authenticateMany). Every request is still checked against Postgres after
 *    it arrived, so a revocation is refused at once on every replica.
 * 2. **Batches rate-limit counting**: one Redis call per token and batch, counting the token's and its
 *    account's limits; each request gets its own count, headers and 429 exactly as one by one.
 * 3. **Collapses identical requests** (same account, scopes, URL, host and language): one of them (the
 *    leader) goes through the full Nest pipeline; the others wait for its answer and get the same bytes
 *    with their own request id, rate-limit headers and conditional (304) handling. A request only joins
 *    a group whose leader has not yet been handed to the pipeline, i.e. before the leader reads anything:
 *    every answer reflects the database as it was after its request arrived (read-your-writes holds).
 *
 * Snapshot creates, restores and deletes get only (1) and (2), with the write limit, and then go through
 * the whole pipeline (see authenticateWrite).
 *
 * Anything else — other routes, HEAD, bodies, unusual or invalid credentials, admin tokens, a leader
 * that did not answer 200 — goes through the Nest pipeline unchanged. Off with `HOT_READ_PATH=false`.
 */
@Injectable()
export class HotReadPath {
  private readonly logger = new Logger(HotReadPath.name);
  private readonly tokens: MicroBatcher<string, AuthenticatedToken | null>;
  private readonly limits: MicroBatcher<RateSubject, RateVerdict | null>;
  private readonly writeLimits: MicroBatcher<RateSubject, RateVerdict | null>;
  private readonly flights = new Map<string, Flight>();
  private readonly cache: AnswerCache | null;
  /** Tokens (by hash) that took this path within the last minute: their counting need not wait for the lookup. */
  private readonly recentReaders = new Map<string, RateSubject & { at: number }>();

  constructor(
    tokens: ApiTokenService,
    limiter: RateLimiter,
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
    private readonly routes: RouteTable,
  ) {
    this.cache = config.readCacheMaxBytes > 0 ? new AnswerCache(config.readCacheMaxBytes) : null;
    this.tokens = new MicroBatcher(async (keys) => {
      const found = await tokens.authenticateHashes(keys, { listingVersion: this.cache !== null });
      return keys.map((k) => found.get(k) ?? null);
    });
    this.limits = new MicroBatcher((subjects) => this.count(limiter, subjects, false));
    this.writeLimits = new MicroBatcher((subjects) => this.count(limiter, subjects, true));
  }

  /** Entries and bytes of the answer cache (null when it is off). */
  get cacheSize(): { entries: number; bytes: number } | null {
    return this.cache?.size ?? null;
  }

  /**
   * One count per token of the batch (INCRBY on the token's and its account's counters in one call);
   * each request gets the verdict of its own position in the count.
   */
  private async count(
    limiter: RateLimiter,
    subjects: RateSubject[],
    isWrite: boolean,
  ): Promise<(RateVerdict | null)[]> {
    const now = Date.now();
    const positions = new Map<number, { who: RateSubject; at: number[] }>();
    subjects.forEach((who, i) => {
      const seen = positions.get(who.tokenId);
      if (seen) seen.at.push(i);
      else positions.set(who.tokenId, { who, at: [i] });
    });
    const out: (RateVerdict | null)[] = new Array<RateVerdict | null>(subjects.length).fill(null);
    await Promise.all(
      [...positions.values()].map(async ({ who, at }) => {
        const verdicts = await limiter.consume(who, isWrite, at.length, now);
        if (!verdicts) this.logger.warn('rate limit store unreachable; request let through');
        at.forEach((pos, j) => (out[pos] = verdicts ? verdicts[j] : null));
      }),
    );
    return out;
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
      this.handle(req, res, read.token, read.route, pipeline).catch((e: unknown) => {
        this.logger.error({ err: e }, 'hot read path failed; request handed to the pipeline');
        if (!res.headersSent) pipeline(req, res);
      });
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
      principal = await this.tokens.load(hashToken(token));
    } catch {
      pipeline(req, res);
      return;
    }
    if (!principal || isAdmin(principal) || !hasScope(principal, 'write')) {
      pipeline(req, res);
      return;
    }
    const rateVerdict = await this.writeLimits.load(principal);
    this.handOn(req, res, pipeline, { principal, rateVerdict });
  }

  private async handle(
    req: IncomingMessage,
    res: ServerResponse,
    token: string,
    route: Route,
    pipeline: Listener,
  ): Promise<void> {
    const started = process.hrtime.bigint();
    // A token that was a valid reader a moment ago is counted while it is being looked up, not after
    // (the two round trips overlap). Should it have been revoked since, the lookup refuses it all the
    // same; the one extra count lands on a dead token.
    const hash = hashToken(token); // eligibleToken checked its shape
    const recent = this.recentReaders.get(hash);
    const now = Date.now();
    const early =
      recent && now - recent.at < RECENT_READER_MS ? this.limits.load(recent).catch(() => null) : null;
    let principal: AuthenticatedToken | null;
    try {
      principal = await this.tokens.load(hash);
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
    const rateVerdict =
      early && recent?.tokenId === principal.tokenId ? await early : await this.limits.load(principal);
    if (!recent || recent.tokenId !== principal.tokenId || now - recent.at >= RECENT_READER_MS / 2) {
      if (this.recentReaders.size >= RECENT_READERS_MAX) this.recentReaders.clear();
      this.recentReaders.set(hash, { tokenId: principal.tokenId, accountId: principal.accountId, at: now });
    }
    if (rateVerdict?.exceeded != null) {
      this.handOn(req, res, pipeline, { principal, rateVerdict }); // the pipeline's 429
      return;
    }
    const key = this.groupKey(req, principal);
    const version = this.cacheable(req, route) ? principal.listingVersion : undefined;
    const cached = version !== undefined ? (this.cache?.get(key, version) ?? null) : null;
    if (cached && this.replayable(cached, rateVerdict)) {
      this.replay(req, res, cached, rateVerdict, started, 'cached');
      return;
    }
    const open = this.flights.get(key);
    if (!open) {
      this.lead(req, res, pipeline, key, { principal, rateVerdict }, version);
      return;
    }
    const answer = await open.answer;
    if (!answer || !this.replayable(answer, rateVerdict)) {
      this.handOn(req, res, pipeline, { principal, rateVerdict });
      return;
    }
    this.replay(req, res, answer, rateVerdict, started, 'shared');
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
    state: HotReadState,
    version: string | undefined,
  ): void {
    let deliver!: (a: CapturedAnswer | null) => void;
    const flight: Flight = { answer: new Promise((r) => (deliver = r)) };
    this.flights.set(key, flight);
    res.once('close', () => deliver(null)); // no capture (not a 200, error, client gone): waiters go on their own
    setImmediate(() => {
      // Closed to newcomers before the leader reads anything.
      if (this.flights.get(key) === flight) this.flights.delete(key);
      this.handOn(req, res, pipeline, {
        ...state,
        capture: (response, body, etag) => {
          const answer = this.capture(req, response, body, etag);
          if (version !== undefined) this.cache?.set(key, version, answer);
          deliver(answer);
        },
      });
    });
  }

  private handOn(req: IncomingMessage, res: ServerResponse, pipeline: Listener, state: HotReadState): void {
    setHotReadState(req, state);
    pipeline(req, res);
  }

  private capture(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    etag: string | null,
  ): CapturedAnswer {
    const headers: CapturedAnswer['headers'] = [];
    // Node ≥ 15.13 keeps the names as they were set (its type definitions here predate that).
    const raw = (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames();
    for (const name of raw) {
      const value = res.getHeader(name);
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      const part: HeaderPart =
        PER_REQUEST.has(lower as HeaderPart) || lower === 'content-type' ? (lower as HeaderPart) : 'as-is';
      for (const v of Array.isArray(value) ? value : [String(value)]) headers.push({ name, value: v, part });
    }
    const rateHeaders = headers.some((h) => h.part === 'ratelimit-limit');
    return { headers, rateHeaders, body, etag, route: routeTemplate(req as Request) };
  }

  /** The leader's answer with this request's own request id, rate-limit headers and 304 decision. */
  private replay(
    req: IncomingMessage,
    res: ServerResponse,
    answer: CapturedAnswer,
    verdict: RateVerdict | null,
    started: bigint,
    how: 'shared' | 'cached',
  ): void {
    const requestId = requestIdFor(req);
    const notModified = answer.etag !== null && ifNoneMatchHits(req.headers['if-none-match'], answer.etag);
    const out: string[] = [];
    for (const { name, value, part } of answer.headers) {
      switch (part) {
        case 'as-is':
          out.push(name, value);
          break;
        case 'content-type':
          if (!notModified) out.push(name, value);
          break;
        case 'x-request-id':
          out.push(name, requestId);
          break;
        case 'ratelimit-limit':
          if (verdict) out.push(name, String(verdict.limit));
          break;
        case 'ratelimit-remaining':
          if (verdict) out.push(name, String(Math.max(0, verdict.limit - verdict.used)));
          break;
        case 'ratelimit-reset':
          if (verdict) out.push(name, String(verdict.reset));
          break;
      }
    }
    const status = notModified ? 304 : 200;
    if (!notModified) out.push('Content-Length', String(answer.body.length));
    res.writeHead(status, out);
    res.end(notModified ? undefined : answer.body);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.httpDuration.observe(
      { method: 'GET', route: answer.route, status: String(status) },
      seconds,
    );
    const log = PinoLogger.root;
    if (log?.isLevelEnabled('info')) {
      log.info(
        {
          req: { id: requestId, method: req.method, url: redactTokenParameter(req.url ?? '') },
          res: { statusCode: status },
          responseTime: Math.round(seconds * 1000),
          requestId,
          hotRead: how,
        },
        'request completed',
      );
    }
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
    return [
      p.accountId,
      p.scopes.join(','),
      h.host ?? '',
      this.config.trustProxy !== false
        ? `${String(h['x-forwarded-proto'] ?? '')};${String(h['x-forwarded-host'] ?? '')}`
        : '',
      h['accept-language'] ?? '',
      req.url,
    ].join('\n');
  }
}
