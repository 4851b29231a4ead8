import { Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { MicroBatcher } from '../common/micro-batcher';
import { AppConfig } from '../config/app-config';
import { clientAddressOf, trustFunctionOf } from '../config/trust-proxy';
import { ApiTokenService, AuthenticatedToken } from './api-token.service';
import { AuthFailureBudget } from './auth-failure-budget';
import { hashToken, looksLikeToken } from './token-codec';
import { UnknownTokenCache } from './unknown-token-cache';

/**
 * Where a request keeps its lookup: on the request itself, which it lives and dies with (a WeakMap
 * keyed by requests measured slower: an entry per request for the garbage collector to clear).
 */
const LOOKUP = Symbol('tokenLookup');
type Memo = IncomingMessage & { [LOOKUP]?: Promise<AuthenticatedToken | null> };

/** One request's lookup: its token's hash, and its client address when it was read (null: not read). */
interface Lookup {
  hash: string;
  req: Memo;
  source: string | null;
}

/** How long a token that was valid keeps being looked up from a source past its failure budget. */
export const SEEN_VALID_TTL_MS = 10 * 60_000;
const SEEN_VALID_MAX = 10_000;

/**
 * The token lookup of every authenticated request: the tokens of all requests that arrived in one turn
 * of the event loop are looked up in one statement (ApiTokenService.authenticateHashes), each after its
 * request arrived, so a revocation is refused at once on every replica. Once per request: the front of
 * the pipeline (src/read-path) and the bearer strategy share the lookup.
 *
 * A client address that caused AUTH_FAILURES_PER_SOURCE_PER_MINUTE lookups finding no valid token
 * in the current minute gets no more lookups (401 at once) until the minute ends, except for tokens
 * this replica found valid within SEEN_VALID_TTL_MS (at least nine tenths of it: UnknownTokenCache notes a
 * success again only after a tenth of its TTL): those are still looked up on every request, so a
 * revocation is refused at once and the clients already working behind that address keep working.
 */
@Injectable()
export class TokenBatcher {
  private readonly batcher: MicroBatcher<Lookup, AuthenticatedToken | null>;
  private readonly failures: AuthFailureBudget;
  /** Hashes that matched a valid token lately (an expiring set, as the unknown ones are kept). */
  private readonly seenValid = new UnknownTokenCache(SEEN_VALID_TTL_MS, SEEN_VALID_MAX);
  private readonly trust: (address: string, hop: number) => boolean;

  constructor(tokens: ApiTokenService, config: AppConfig) {
    this.failures = new AuthFailureBudget(config.authFailuresPerSourcePerMinute);
    this.trust = trustFunctionOf(config.trustProxy);
    // The account's listing version comes with the token only where answers are cached against it.
    const listingVersion = config.hotReadPath && config.readCacheMaxBytes > 0;
    // What each lookup found is booked here, once per batch, rather than in a callback per request.
    this.batcher = new MicroBatcher(async (asked) => {
      let found: Map<string, AuthenticatedToken | null>;
      try {
        found = await tokens.authenticateHashes(
          asked.map((a) => a.hash),
          { listingVersion },
        );
      } catch (e) {
        // A failed lookup (database down) is not remembered: the pipeline's own attempt answers it.
        for (const a of asked) a.req[LOOKUP] = undefined;
        throw e;
      }
      const now = Date.now();
      return asked.map(({ hash, req, source }) => {
        const principal = found.get(hash) ?? null;
        if (principal) this.seenValid.add(hash, now);
        else this.failures.fail(source ?? clientAddressOf(req, this.trust), now);
        return principal;
      });
    });
  }

  /**
   * The principal of `token` (null: malformed, unknown, expired or revoked), looked up once per request.
   * `hash`: the token's hashToken, when the caller has computed it already (a well-formed token only).
   */
  principalOf(req: IncomingMessage, token: string, hash?: string): Promise<AuthenticatedToken | null> {
    const memo = req as Memo;
    const known = memo[LOOKUP];
    if (known) return known;
    const found =
      hash !== undefined || looksLikeToken(token)
        ? this.lookUp(memo, hash ?? hashToken(token))
        : Promise.resolve(null);
    memo[LOOKUP] = found;
    return found;
  }

  private lookUp(req: Memo, hash: string): Promise<AuthenticatedToken | null> {
    const now = Date.now();
    // The source is read only when it may matter (X-Forwarded-For parsed at most once per request).
    const seen = this.seenValid.has(hash, now);
    const source = seen ? null : clientAddressOf(req, this.trust);
    if (source !== null && this.failures.exhausted(source, now)) return Promise.resolve(null);
    return this.batcher.load({ hash, req, source });
  }
}
