import { Injectable, Module, RequestMethod, SetMetadata } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryModule, DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { IS_PUBLIC, REQUIRED_SCOPE } from '../auth/decorators';
import { requiredScope, Scope } from '../auth/principal';
import { withoutTrailingSlashes } from './request-context';

const LISTING_READ = 'routes:listingRead';

/** What a @ListingRead() route declares. */
export interface ListingReadOptions {
  /** The query parameters the handler reads (it ignores any other). */
  params: readonly string[];
}

/**
 * The handler's answer is a read of the account's listing (its snapshots and their servers' names), the
 * data the listing version follows (prisma/migrations/20261128020000_listing_versions): the answer
 * carries an ETag (conditional GET), and may be cached against the account's listing version when its
 * URL has no query parameter but `params`.
 */
export const ListingRead = (params: readonly string[] = []) =>
  SetMetadata(LISTING_READ, { params } satisfies ListingReadOptions);

/** One route of the API as its controller declares it. */
export interface Route {
  method: string;
  /** The route template, e.g. `/api/v1/snapshots/:id` (also the metrics label). */
  template: string;
  isPublic: boolean;
  /** The scope a token needs (see requiredScope). */
  scope: Scope;
  listing: ListingReadOptions | null;
}

interface CompiledRoute extends Route {
  /** Lower-cased literal segments; null for a `:param` segment. */
  segments: (string | null)[];
}

interface CompiledRoutes {
  all: CompiledRoute[];
  /** Method → number of segments → the routes of that shape, in declaration order. */
  byMethodAndLength: Map<string, CompiledRoute[][]>;
}

/**
 * The routes of the controllers, read from their decorators once (the same metadata Nest registers
 * the router from), for what must know a request's route before the router has run: the front of the
 * pipeline (src/read-path) and the conditional answers (etag.ts). Templates made of literal and
 * `:param` segments are matched as Express matches them (case-insensitive, a param is one non-empty
 * segment); a template with wildcards or optional parts is never matched here, so such a request just
 * goes through the whole pipeline.
 */
@Injectable()
export class RouteTable {
  private compiled: CompiledRoutes | null = null;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
  ) {}

  /** The route of `method` and a URL (query string and trailing slashes ignored); null if none or not simple. */
  match(method: string, url: string): Route | null {
    const q = url.indexOf('?');
    const path = withoutTrailingSlashes(q === -1 ? url : url.slice(0, q)).toLowerCase();
    const parts = path.split('/');
    // Every request asks: only the routes of this method and number of segments are compared, in a
    // plain loop (no closure per route).
    const candidates = this.routes.byMethodAndLength.get(method)?.[parts.length];
    if (!candidates) return null;
    for (const route of candidates) {
      let i = 0;
      for (; i < parts.length; i++) {
        const s = route.segments[i];
        if (s === null ? parts[i] === '' : s !== parts[i]) break;
      }
      if (i === parts.length) return route;
    }
    return null;
  }

  /** Every route (tests and documentation). */
  get all(): Route[] {
    return this.routes.all;
  }

  private get routes(): CompiledRoutes {
    // Built on first use: controllers are only known once the application's modules are initialised.
    if (!this.compiled) {
      const all = this.build();
      const byMethodAndLength = new Map<string, CompiledRoute[][]>();
      for (const route of all) {
        const byLength = byMethodAndLength.get(route.method) ?? [];
        byMethodAndLength.set(route.method, byLength);
        (byLength[route.segments.length] ??= []).push(route); // declaration order kept: first match wins
      }
      this.compiled = { all, byMethodAndLength };
    }
    return this.compiled;
  }

  private build(): CompiledRoute[] {
    const out: CompiledRoute[] = [];
    for (const wrapper of this.discovery.getControllers()) {
      const type = wrapper.metatype as (new (...args: never[]) => unknown) | null;
      if (!type) continue;
      const prototype = type.prototype as Record<string, unknown>;
      for (const prefix of pathsOf(Reflect.getMetadata(PATH_METADATA, type))) {
        for (const name of this.scanner.getAllMethodNames(prototype)) {
          const handler = prototype[name] as (...args: unknown[]) => unknown;
          const methodCode = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
          if (methodCode === undefined || methodCode === RequestMethod.ALL) continue;
          const method = RequestMethod[methodCode];
          const targets = [handler, type];
          const declared = this.reflector.getAllAndOverride<Scope | undefined>(REQUIRED_SCOPE, targets);
          for (const path of pathsOf(Reflect.getMetadata(PATH_METADATA, handler))) {
            const template = joinPaths(prefix, path);
            if (/[*?{}()]/.test(template)) continue;
            out.push({
              method,
              template,
              isPublic: this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets) === true,
              scope: requiredScope(method, declared),
              listing: this.reflector.get<ListingReadOptions | undefined>(LISTING_READ, handler) ?? null,
              segments: template
                .toLowerCase()
                .split('/')
                .map((s) => (s.startsWith(':') ? null : s)),
            });
          }
        }
      }
    }
    return out;
  }
}

function pathsOf(meta: unknown): string[] {
  if (Array.isArray(meta)) return meta.map(String);
  return [typeof meta === 'string' ? meta : '/'];
}

/** Nest's joining of a controller's and a handler's paths: one leading slash, no trailing one. */
function joinPaths(prefix: string, path: string): string {
  const joined = `/${prefix}/${path}`.replace(/\/+/g, '/');
  return withoutTrailingSlashes(joined);
}

@Module({ imports: [DiscoveryModule], providers: [RouteTable], exports: [RouteTable] })
export class RouteTableModule {}
