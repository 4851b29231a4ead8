/**
 * The driver adapter the Prisma CLI's WASM schema engine uses for migrations (see prisma.config.ts).
 *
 * It mends three upstream problems of `@prisma/adapter-pg` 6.19 on this path:
 * - prisma/orm#27403: Postgres catalog columns of type `name` (oid 19) and `"char"` (oid 18) are
 *   rejected ("Column type 'name' could not be deserialized"). Their text-format values are plain
 *   strings, so we present those columns to the adapter as `text` (oid 25).
 * - `connectToShadowDb` drops the shadow database while its own pool still holds connections to it.
 *   We close the shadow pool first, then drop the database.
 * - `executeScript` splits a migration on every ";" and runs the pieces one by one, which breaks any
 *   migration with a function body (PL/pgSQL `$$ … ; … $$`). We send the whole script as one simple
 *   query instead: Postgres runs its statements in order as one implicit transaction, so a migration
 *   that fails leaves nothing half-applied (none of ours uses CREATE INDEX CONCURRENTLY, which could
 *   not run inside one).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';

const TEXT_OID = 25;
const CATALOG_OIDS = new Set([18, 19]);
const WRAPPED = Symbol('catalogTextWrapped');

type QueryFn = (...args: unknown[]) => unknown;

function retypeCatalogColumns<T>(result: T): T {
  const fields = (result as { fields?: { dataTypeID: number }[] } | undefined)?.fields;
  for (const field of fields ?? []) {
    if (CATALOG_OIDS.has(field.dataTypeID)) field.dataTypeID = TEXT_OID;
  }
  return result;
}

function wrapQuery(target: { query: QueryFn } & { [WRAPPED]?: boolean }): void {
  if (target[WRAPPED]) return;
  const original = target.query.bind(target);
  target.query = (...args: unknown[]) => {
    const out = original(...args);
    return out instanceof Promise ? out.then(retypeCatalogColumns) : out;
  };
  target[WRAPPED] = true;
}

class CatalogAsTextPool extends pg.Pool {
  constructor(config: pg.PoolConfig) {
    super(config);
    wrapQuery(this as unknown as { query: QueryFn });
    this.on('connect', (client) => wrapQuery(client as unknown as { query: QueryFn }));
  }
}

type Connected = Awaited<ReturnType<PrismaPg['connect']>>;

/** Runs a migration script as one multi-statement simple query (see the note at the top). */
function wholeScripts(adapter: Connected, pool: pg.Pool): Connected {
  const asDriverError = adapter as unknown as { onError(e: unknown): never };
  adapter.executeScript = async (script: string) => {
    try {
      await pool.query(script);
    } catch (e) {
      asDriverError.onError(e);
    }
  };
  return adapter;
}

type AdapterFactory = ReturnType<typeof makeMigrationAdapterFactory>;

export function makeMigrationAdapterFactory(connectionString: string) {
  const mainPool = new CatalogAsTextPool({ connectionString, max: 4 });
  const main = new PrismaPg(mainPool);
  return {
    // The literal type survives only when restated (an object literal widens it to string).
    provider: main.provider as PrismaPg['provider'],
    adapterName: main.adapterName,
    connect: async () => wholeScripts(await main.connect(), mainPool),
    async connectToShadowDb() {
      const database = `prisma_shadow_${randomUUID().replace(/-/g, '')}`;
      const admin = new pg.Client({ connectionString });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${database}"`);
      } finally {
        await admin.end();
      }
      const url = new URL(connectionString);
      url.pathname = `/${database}`;
      const shadowPool = new CatalogAsTextPool({ connectionString: url.toString(), max: 2 });
      const adapter = wholeScripts(await new PrismaPg(shadowPool).connect(), shadowPool);
      const dispose = adapter.dispose.bind(adapter);
      adapter.dispose = async () => {
        await dispose();
        await shadowPool.end().catch(() => undefined);
        const dropper = new pg.Client({ connectionString });
        await dropper.connect();
        try {
          await dropper.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
        } finally {
          await dropper.end();
        }
      };
      return adapter;
    },
  } satisfies Partial<Record<keyof PrismaPg, unknown>> & { connect: unknown };
}

export type MigrationAdapterFactory = AdapterFactory;
