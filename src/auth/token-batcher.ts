import { Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { MicroBatcher } from '../common/micro-batcher';
import { AppConfig } from '../config/app-config';
import { ApiTokenService, AuthenticatedToken } from './api-token.service';
import { hashToken, looksLikeToken } from './token-codec';

/**
 * Where a request keeps its lookup: on the request itself, which it lives and dies with (a WeakMap
 * keyed by requests measured slower: an entry per request for the garbage collector to clear).
 */
const LOOKUP = Symbol('tokenLookup');

/**
 * The token lookup of every authenticated request: the tokens of all requests that arrived in one turn
 * of the event loop are looked up in one statement (ApiTokenService.authenticateHashes), each after its
 * request arrived, so a revocation is refused at once on every replica. Once per request: the front of
 * the pipeline (src/read-path) and the bearer strategy share the lookup.
 */
@Injectable()
export class TokenBatcher {
  private readonly batcher: MicroBatcher<string, AuthenticatedToken | null>;

  constructor(tokens: ApiTokenService, config: AppConfig) {
    // The account's listing version comes with the token only where answers are cached against it.
    const listingVersion = config.hotReadPath && config.readCacheMaxBytes > 0;
    this.batcher = new MicroBatcher(async (hashes) => {
      const found = await tokens.authenticateHashes(hashes, { listingVersion });
      return hashes.map((h) => found.get(h) ?? null);
    });
  }

  /** The principal of `token` (null: malformed, unknown, expired or revoked), looked up once per request. */
  principalOf(req: IncomingMessage, token: string): Promise<AuthenticatedToken | null> {
    const memo = req as IncomingMessage & { [LOOKUP]?: Promise<AuthenticatedToken | null> };
    const known = memo[LOOKUP];
    if (known) return known;
    const found = looksLikeToken(token) ? this.batcher.load(hashToken(token)) : Promise.resolve(null);
    memo[LOOKUP] = found;
    // A failed lookup (database down) is not remembered: the pipeline's own attempt answers it.
    found.catch(() => (memo[LOOKUP] = undefined));
    return found;
  }
}
